/**
 * What the console knows from the bus, kept current: the recent stored events (FERRY_COMMANDS
 * and FERRY_EVENTS, from `sinceMs` ago) and the runs they describe — requested, moving (live
 * `transfer.progress`, core NATS), finished (the outcome events) — grouped by correlation id.
 * Listeners (the SSE endpoint) hear every change; nothing here polls.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { followBus, type BusEvent } from "../adapters/nats/mod.ts";
import { transferProgress, type TransferProgress } from "../contracts/transfer-progress.ts";

export type RunKind = "backup" | "restore";
export type RunState = "requested" | "running" | "completed" | "failed" | "rejected";

/** One disk's bar: the fields of its latest transfer.progress. */
export type DiskProgress = Pick<TransferProgress, "disk" | "alias" | "bytes" | "total" | "phase">;

export interface FeedRun {
  /** The correlation id (the command's id for commands the console or the CLI published). */
  readonly key: string;
  readonly kind: RunKind;
  vm: string;
  runId?: string | undefined;
  mode?: string | undefined;
  target?: string | undefined;
  state: RunState;
  requestedAt?: string | undefined;
  updatedAt: string;
  finishedAt?: string | undefined;
  disks: DiskProgress[];
  seconds?: number | undefined;
  bytes?: number | undefined;
  code?: string | undefined;
  message?: string | undefined;
  restorePoint?: string | undefined;
  /** The run's stored events, oldest first. */
  events: { subject: string; time: string; seq: number }[];
}

export interface FeedEvent extends Pick<BusEvent, "subject" | "stream" | "seq"> {
  readonly time: string;
  readonly vm?: string | undefined;
  readonly data: Record<string, unknown>;
}

export type FeedChange = { type: "run"; run: FeedRun } | { type: "event"; event: FeedEvent };

export interface BusFeed {
  /** Newest first. */
  events(): readonly FeedEvent[];
  /** Newest first (by last change). */
  runs(): readonly FeedRun[];
  run(key: string): FeedRun | undefined;
  /** A command the console itself published: the run shows at once, before the bus echoes it. */
  noteRequested(kind: RunKind, key: string, vm: string, detail: { mode?: string | undefined; target?: string | undefined }): void;
  subscribe(listener: (c: FeedChange) => void): () => void;
  /** Resolves once the stored events of the window are read (or after a few seconds). */
  readonly ready: Promise<void>;
  stop(): Promise<void>;
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
/** Commands and outcomes name the VM; disk.transferred and chain.updated carry {id, name}. */
const vmName = (v: unknown): string | undefined => str(v) ?? (v && typeof v === "object" ? str((v as { name?: unknown }).name) : undefined);

function kindOf(subject: string): RunKind | undefined {
  if (subject.startsWith("backup.") || subject === "disk.transferred" || subject === "chain.updated") return "backup";
  if (subject.startsWith("restore.")) return "restore";
  return undefined;
}

export function createBusFeed(o: {
  nc: NatsConnection;
  /** How far back the stored events are read at start. */
  sinceMs: number;
  maxEvents?: number;
  maxRuns?: number;
  clock?: () => Date;
  onError?: (err: unknown) => void;
}): BusFeed {
  const clock = o.clock ?? (() => new Date());
  const maxEvents = o.maxEvents ?? 5000;
  const maxRuns = o.maxRuns ?? 500;
  const events: FeedEvent[] = [];
  const runs = new Map<string, FeedRun>();
  /** runId → correlation key (progress may carry only the run id). */
  const byRunId = new Map<string, string>();
  const listeners = new Set<(c: FeedChange) => void>();
  const emit = (c: FeedChange) => {
    for (const l of listeners) {
      try {
        l(c);
      } catch (err) {
        o.onError?.(err);
      }
    }
  };

  const runFor = (kind: RunKind, key: string, vm: string, time: string): FeedRun => {
    let r = runs.get(key);
    if (!r) {
      r = { key, kind, vm, state: "requested", updatedAt: time, disks: [], events: [] };
      runs.set(key, r);
      if (runs.size > maxRuns) {
        // Forget the oldest finished run.
        for (const [k, old] of runs) {
          if (old.state !== "requested" && old.state !== "running") {
            runs.delete(k);
            break;
          }
        }
      }
    }
    return r;
  };

  const onBus = (e: BusEvent) => {
    const d = (e.data && typeof e.data === "object" && !Array.isArray(e.data) ? e.data : {}) as Record<string, unknown>;
    const time = str(d.time) ?? e.received.toISOString();
    const vm = vmName(d.vm);
    if (e.subject === "transfer.progress") {
      const v = transferProgress.validate(d);
      if (!v.ok) return;
      const t = v.value;
      const key = t.correlationId;
      const r = runFor(t.phase === "download" ? "backup" : "restore", key, t.vm, t.time);
      if (r.state === "requested") r.state = "running";
      r.runId = t.runId;
      byRunId.set(t.runId, key);
      const bar: DiskProgress = { disk: t.disk, bytes: t.bytes, total: t.total, phase: t.phase, alias: t.alias ?? r.disks.find((x) => x.disk === t.disk)?.alias };
      const at = r.disks.findIndex((x) => x.disk === t.disk);
      if (at >= 0) r.disks[at] = bar;
      else r.disks.push(bar);
      r.updatedAt = t.time;
      emit({ type: "run", run: r });
      return;
    }
    const event: FeedEvent = { subject: e.subject, stream: e.stream, seq: e.seq, time, vm, data: d };
    events.push(event);
    if (events.length > maxEvents) events.shift();
    emit({ type: "event", event });

    const kind = kindOf(e.subject);
    const key = str(d.correlationId) ?? str(d.id);
    if (!kind || !key || !vm || e.subject.endsWith(".rejected") && !runs.has(key)) return;
    const r = runFor(kind, key, vm, time);
    r.events.push({ subject: e.subject, time, seq: e.seq });
    r.updatedAt = time;
    if (str(d.runId)) {
      r.runId = str(d.runId);
      byRunId.set(r.runId!, key);
    }
    if (e.subject.endsWith(".requested")) {
      r.requestedAt ??= time;
      r.mode ??= str(d.mode);
      r.target ??= str(d.target);
    } else if (e.subject.endsWith(".rejected")) {
      r.state = "rejected";
      r.finishedAt = time;
      r.message = str(d.reason);
    } else if (e.subject.endsWith(".completed") || e.subject.endsWith(".failed")) {
      r.state = e.subject.endsWith(".completed") ? "completed" : "failed";
      r.finishedAt = time;
      r.seconds = num(d.seconds);
      r.bytes = num(d.bytes);
      r.code = str(d.code);
      r.message = str(d.message);
      r.restorePoint = str(d.restorePoint);
      r.mode ??= str(d.mode) ?? str(d.kind);
      r.target ??= str(d.target);
      // Every disk is in: the bars end at their totals.
      if (r.state === "completed") r.disks = r.disks.map((p) => ({ ...p, bytes: Math.max(p.bytes, p.total) }));
    } else if (r.state === "requested") {
      r.state = "running";
    }
    emit({ type: "run", run: r });
  };

  const ac = new AbortController();
  let caughtUp!: () => void;
  const ready = new Promise<void>((r) => (caughtUp = r));
  const following = followBus(o.nc, { subject: ">", from: { kind: "since", time: new Date(clock().getTime() - o.sinceMs) }, signal: ac.signal }, onBus).catch((err: unknown) => {
    if (!ac.signal.aborted) o.onError?.(err);
  });
  // followBus has no "caught up" signal: the stored window is small, a moment is enough.
  setTimeout(caughtUp, 1500).unref();

  return {
    events: () => events.slice().reverse(),
    runs: () => [...runs.values()].sort((a, b) => b.updatedAt.localeCompare(a.updatedAt)),
    run: (key) => runs.get(key),
    noteRequested(kind, key, vm, detail) {
      const now = clock().toISOString();
      const r = runFor(kind, key, vm, now);
      r.requestedAt ??= now;
      r.mode ??= detail.mode;
      r.target ??= detail.target;
      emit({ type: "run", run: r });
    },
    subscribe(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    ready,
    async stop() {
      ac.abort();
      await following;
    },
  };
}
