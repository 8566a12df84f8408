/**
 * What `ferry status` and the per-VM metrics of `ferry run`'s /metrics say about each VM, decided
 * in one place from what the bus knows (pure: config/status-source.ts reads the inputs).
 *
 * Sources and rules (also in `ferry status --help`):
 * - **ok / failed**: the newest outcome event of the VM on FERRY_EVENTS (`backup.completed` →
 *   ok, `backup.failed` → failed with its code, message, step and time). A run in the journal
 *   (KV ferry-runs) that ended without any outcome event counts too when it is newer: phase
 *   `failed` (its journal error) or `abandoned` (RUN_ABANDONED, the reconciler cleaned up after a
 *   dead worker), or a run nobody works on any more (RUN_STALLED: no outcome, the VM's lease is
 *   not its, and no change for STALLED_AFTER_MS). A run is finished once an outcome event carries
 *   its run id or correlation id; the journal's `transferred` alone is not the end (the
 *   restore point is recorded and retention runs after it).
 * - **running**: a journal run without an outcome event, not failed or abandoned, whose VM lease
 *   (KV ferry-leases) is held or handed off under its run id — or that changed within
 *   STALLED_AFTER_MS (the moment between steps). Shown with the step (the lease's), the phase
 *   and how many disks are in the store.
 * - **last good restore point**: the newest restore point of the VM's chain (KV ferry-chains,
 *   the same record as the store's restore-points.json) whose verification did not fail; its age
 *   is now minus its time.
 * - **never**: no restore point and no outcome yet. It does not count as a problem by itself
 *   (Ferry cannot know since when the VM is in the config); a failed first backup is 'failed'.
 * - **schedule**: the VM's slots (vms.<vm>.schedule, in `timeZone`): the next one, and the
 *   interval = the time between the two newest slots up to now.
 * - **RPO lag** = now − the last good restore point's time. **overdue** when the lag exceeds
 *   interval + grace (default OVERDUE_GRACE_MS), i.e. the newest slot is more than `grace` old
 *   and no good restore point came after the one before it. Disabled VMs and VMs outside the
 *   config (known only from KV) have no schedule and are never overdue.
 * - **problem** (exit 1, `ferry_vm_problem`): the last finished result is failed, or overdue.
 *   A run in progress does not hide a failure before it.
 */
import type { Policy } from "../contracts/config.ts";
import { pointSize, visiblePoints, type ChainRecord } from "../domain/chain/mod.ts";
import { dueSlots, type Schedule } from "../domain/schedule/mod.ts";
import type { BackupRun } from "../pipeline/run-journal.ts";
import type { RestoreRun } from "../pipeline/restore-journal.ts";
import type { LeaseRecord } from "../pipeline/vm-lease.ts";

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** How long after its newest slot a VM may go without a new good restore point before it is overdue. */
export const OVERDUE_GRACE_MS = 60 * MINUTE;
/** A run without an outcome, not holding its VM's lease, unchanged this long, is no longer running (= the lease hand-off TTL). */
export const STALLED_AFTER_MS = 15 * MINUTE;

/** One `backup.completed` or `backup.failed` from FERRY_EVENTS. */
export interface OutcomeFact {
  readonly result: "ok" | "failed";
  /** VM name (a failure may carry the id when the name was unknown). */
  readonly vm: string;
  readonly vmId?: string | undefined;
  readonly runId?: string | undefined;
  readonly correlationId: string;
  /** The event's time. */
  readonly time: string;
  /** Stream sequence. */
  readonly seq: number;
  readonly code?: string | undefined;
  readonly message?: string | undefined;
  readonly step?: string | undefined;
  readonly restorePoint?: string | undefined;
  readonly kind?: string | undefined;
  readonly bytes?: number | undefined;
  readonly seconds?: number | undefined;
}

/** Parse an event of FERRY_EVENTS into an outcome; undefined for anything that is not one. */
export function outcomeOf(subject: string, data: unknown, seq: number, storedAt: Date): OutcomeFact | undefined {
  if (subject !== "backup.completed" && subject !== "backup.failed") return undefined;
  if (!data || typeof data !== "object" || Array.isArray(data)) return undefined;
  const d = data as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === "string" && v ? v : undefined);
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  const vm = str(d.vm);
  if (!vm) return undefined;
  const time = str(d.time) && !Number.isNaN(Date.parse(d.time as string)) ? (d.time as string) : storedAt.toISOString();
  return {
    result: subject === "backup.completed" ? "ok" : "failed",
    vm,
    vmId: str(d.vmId),
    runId: str(d.runId),
    correlationId: str(d.correlationId) ?? str(d.id) ?? `FERRY_EVENTS:${seq}`,
    time,
    seq,
    code: str(d.code),
    message: str(d.message),
    step: str(d.step),
    restorePoint: str(d.restorePoint),
    kind: str(d.kind),
    bytes: num(d.bytes),
    seconds: num(d.seconds),
  };
}

/**
 * The outcomes seen so far, by VM and by run. Fed in stream order (one pass over FERRY_EVENTS
 * for `ferry status`, a live consumer for the metrics).
 */
export class OutcomeIndex {
  /** Newest outcome per VM key (the event's vm, and its vmId when present). */
  readonly last = new Map<string, OutcomeFact>();
  /** Newest backup.completed per VM key. */
  readonly lastSuccess = new Map<string, OutcomeFact>();
  /** Outcome per run id and per correlation id. */
  readonly byRun = new Map<string, OutcomeFact>();
  /** backup.failed per VM name and code, counted only for stream sequences above `countAfterSeq`. */
  readonly failures = new Map<string, Map<string, number>>();
  /** Time of the oldest event the stream still held when reading began (older runs are not judged). */
  since: Date | undefined;

  readonly countAfterSeq: number;
  constructor(countAfterSeq: number = Number.POSITIVE_INFINITY) {
    this.countAfterSeq = countAfterSeq;
  }

  add(f: OutcomeFact): void {
    for (const key of [f.vm, f.vmId]) {
      if (!key) continue;
      const cur = this.last.get(key);
      if (!cur || cur.seq < f.seq) this.last.set(key, f);
      if (f.result === "ok") {
        const s = this.lastSuccess.get(key);
        if (!s || s.seq < f.seq) this.lastSuccess.set(key, f);
      }
    }
    if (f.runId) this.byRun.set(f.runId, f);
    this.byRun.set(f.correlationId, f);
    if (f.result === "failed" && f.seq > this.countAfterSeq) {
      const codes = this.failures.get(f.vm) ?? new Map<string, number>();
      codes.set(f.code ?? "UNKNOWN", (codes.get(f.code ?? "UNKNOWN") ?? 0) + 1);
      this.failures.set(f.vm, codes);
    }
  }

  /** The newest outcome for a VM known by name and (maybe) id. */
  lastFor(name: string, id?: string): OutcomeFact | undefined {
    return newest(this.last.get(name), id ? this.last.get(id) : undefined);
  }

  lastSuccessFor(name: string, id?: string): OutcomeFact | undefined {
    return newest(this.lastSuccess.get(name), id ? this.lastSuccess.get(id) : undefined);
  }

  outcomeOfRun(run: Pick<BackupRun, "runId" | "correlationId">): OutcomeFact | undefined {
    return this.byRun.get(run.runId) ?? (run.correlationId ? this.byRun.get(run.correlationId) : undefined);
  }
}

function newest(a: OutcomeFact | undefined, b: OutcomeFact | undefined): OutcomeFact | undefined {
  if (!a) return b;
  if (!b) return a;
  return a.seq >= b.seq ? a : b;
}

// --- Schedules ------------------------------------------------------------------------------

export interface ScheduleFacts {
  readonly description: string;
  /** The newest slot at or before now. */
  readonly previous?: Date | undefined;
  /** The time between the two newest slots up to now (the RPO the schedule promises). */
  readonly intervalMs?: number | undefined;
  readonly next?: Date | undefined;
}

interface CachedSchedule {
  readonly facts: ScheduleFacts;
  readonly computedAt: number;
  /** Valid until then (the next slot, or an hour when none is in sight). */
  readonly validUntil: number;
}

const scheduleCache = new Map<string, CachedSchedule>();

/**
 * The slots around `now` of a schedule. dueSlots walks minutes, so this looks back 2, 8, 16 and
 * 64 days (forward 1, 8, 32) until it finds what it needs, and remembers the answer per schedule
 * and zone until the next slot.
 */
export function scheduleFacts(schedule: Schedule, now: Date, timeZone: string): ScheduleFacts {
  const key = `${timeZone}|${JSON.stringify(schedule)}`;
  const t = now.getTime();
  const hit = scheduleCache.get(key);
  if (hit && t >= hit.computedAt && t < hit.validUntil) return hit.facts;
  const description = "cron" in schedule ? `cron "${schedule.cron}"` : `days ${schedule.days} at ${schedule.time}`;
  let before: Date[] = [];
  for (const days of [2, 8, 16, 64]) {
    before = dueSlots(schedule, new Date(t - days * DAY), now, { timeZone, maxWindowMs: days * DAY });
    if (before.length >= 2) break;
  }
  let next: Date | undefined;
  for (const days of [1, 8, 32]) {
    next = dueSlots(schedule, now, new Date(t + days * DAY), { timeZone, maxWindowMs: days * DAY })[0];
    if (next) break;
  }
  const previous = before.at(-1);
  const earlier = before.at(-2);
  const facts: ScheduleFacts = {
    description,
    previous,
    intervalMs: previous && earlier ? previous.getTime() - earlier.getTime() : undefined,
    next,
  };
  scheduleCache.set(key, { facts, computedAt: t, validUntil: next ? next.getTime() : t + 60 * MINUTE });
  return facts;
}

// --- Status ---------------------------------------------------------------------------------

export type VmResult = "ok" | "failed" | "running" | "never";

export interface VmStatus {
  vm: string;
  vmId: string;
  /** In the config's vms section (else known only from KV). */
  configured: boolean;
  /** Scheduled backups on (vms.<vm>.enabled); undefined outside the config. */
  enabled?: boolean | undefined;
  /** running while a run is in progress, else the last finished result, else never. */
  result: VmResult;
  /** The last finished result (ok / failed), whatever runs now. */
  lastResult?: "ok" | "failed" | undefined;
  /** ok or failed: where it was decided (an outcome event, or the run journal). */
  outcome?: {
    result: "ok" | "failed";
    time: string;
    runId?: string | undefined;
    correlationId?: string | undefined;
    code?: string | undefined;
    message?: string | undefined;
    step?: string | undefined;
    restorePoint?: string | undefined;
    kind?: string | undefined;
    bytes?: number | undefined;
    seconds?: number | undefined;
    source: "event" | "journal";
  } | undefined;
  /** The newest backup.completed (for the metrics: last success, duration, bytes). */
  lastSuccess?: { time: string; seconds?: number | undefined; bytes?: number | undefined; restorePoint?: string | undefined } | undefined;
  /** A run in progress. */
  running?: {
    runId: string;
    startedAt: string;
    updatedAt: string;
    phase: string;
    /** The step working on it now, or the one it waits for (lease handed off). */
    step: string;
    waiting: boolean;
    disks: { placed: number; total: number };
  } | undefined;
  restorePoints: number;
  /** The newest restore point (number 1 = oldest kept). */
  last?: { id: string; number: number; time: string; kind: string; bytes: number; verified?: boolean | undefined } | undefined;
  /** The newest restore point whose verification did not fail. */
  lastGood?: { id: string; number: number; time: string; ageSeconds: number } | undefined;
  /** Newest journal run (compatibility with the earlier `ferry status --json`). */
  run?: { runId: string; phase: string; startedAt: string; updatedAt: string; error?: { code: string; message: string } | undefined } | undefined;
  schedule?: { description: string; next?: string | undefined; previous?: string | undefined; intervalSeconds?: number | undefined } | undefined;
  rpo?: { lagSeconds?: number | undefined; targetSeconds?: number | undefined; overdue: boolean } | undefined;
  overdue: boolean;
  /** Counts against the exit code: the last finished result failed, or overdue. */
  problem: boolean;
  /** Restores of the VM (restore journal, KV ferry-runs kind "restore"); absent when it never had one. */
  restore?: RestoreStatus | undefined;
}

/** One restore run as status shows it. */
export interface RestoreRunView {
  runId: string;
  /** restore (onto the target under a new name), replicate (the standing DR copy), test (boot, remove). */
  mode: string;
  target: string;
  /** Name of the VM on the target. */
  name: string;
  startedAt: string;
  updatedAt: string;
  phase: string;
  disks: { verified: number; total: number };
  error?: { code: string; message: string } | undefined;
}

/**
 * A VM's restores from the restore journal: the one in progress (not done or failed, changed
 * within STALLED_AFTER_MS), the newest that ended (done or failed; one without a change for
 * STALLED_AFTER_MS counts as failed, RESTORE_STALLED), and the newest that succeeded.
 */
export interface RestoreStatus {
  running?: RestoreRunView | undefined;
  last?: (RestoreRunView & { result: "ok" | "failed" }) | undefined;
  lastOk?: RestoreRunView | undefined;
}

function restoreView(r: RestoreRun): RestoreRunView {
  return {
    runId: r.runId,
    mode: r.mode,
    target: r.target,
    name: r.name,
    startedAt: r.startedAt,
    updatedAt: r.updatedAt,
    phase: r.phase,
    disks: { verified: r.disks.filter((d) => d.state === "verified").length, total: r.disks.length },
    ...(r.error ? { error: { code: r.error.code, message: r.error.message } } : {}),
  };
}

/** The restore status of each VM (by name) that has restore runs. Pure. */
export function restoreStatus(runs: readonly RestoreRun[], now: Date): Map<string, RestoreStatus> {
  const out = new Map<string, RestoreStatus>();
  const sorted = [...runs].sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  for (const r of sorted) {
    const s = out.get(r.vm.name) ?? {};
    const v = restoreView(r);
    if (r.phase === "done") {
      s.last = { ...v, result: "ok" };
      s.lastOk = v;
    } else if (r.phase === "failed") {
      s.last = { ...v, result: "failed", error: v.error ?? { code: "RESTORE_FAILED", message: `restore run ${r.runId} failed` } };
    } else if (now.getTime() - Date.parse(r.updatedAt) >= STALLED_AFTER_MS) {
      s.last = { ...v, result: "failed", error: { code: "RESTORE_STALLED", message: `restore run ${r.runId} stopped in phase ${r.phase} (last change ${r.updatedAt})` } };
    } else {
      s.running = v;
    }
    out.set(r.vm.name, s);
  }
  // A run in progress older than one that ended is not running any more (a newer run replaced it).
  for (const s of out.values()) if (s.running && s.last && s.last.startedAt > s.running.startedAt) s.running = undefined;
  return out;
}

export interface StatusInputs {
  readonly now: Date;
  /** vms of the config, effective policies, by name ({} without a config file). */
  readonly policies: Readonly<Record<string, Pick<Policy, "enabled" | "schedule">>>;
  readonly chains: readonly ChainRecord[];
  readonly runs: readonly BackupRun[];
  /** Leases by VM id. */
  readonly leases: ReadonlyMap<string, LeaseRecord>;
  readonly outcomes: OutcomeIndex;
  /** Restore runs (KV ferry-runs, kind "restore"); default none. */
  readonly restores?: readonly RestoreRun[];
  readonly timeZone: string;
  readonly graceMs?: number;
}

const FINAL_PHASES = new Set(["failed", "abandoned"]);

/** One row per VM: every configured VM, and every VM with a chain or a run in KV. Sorted by name. */
export function computeStatus(i: StatusInputs): VmStatus[] {
  const now = i.now.getTime();
  const grace = i.graceMs ?? OVERDUE_GRACE_MS;
  // Identify VMs by name (the config's key); ids come from KV.
  const names = new Set<string>(Object.keys(i.policies));
  const chainByName = new Map<string, ChainRecord>();
  for (const c of i.chains) {
    names.add(c.vm.name);
    const cur = chainByName.get(c.vm.name);
    // Two chains under one name (a VM re-created with a new id): the one with the newest point.
    if (!cur || (c.restorePoints.at(-1)?.time ?? "") > (cur.restorePoints.at(-1)?.time ?? "")) chainByName.set(c.vm.name, c);
  }
  const restores = restoreStatus(i.restores ?? [], i.now);
  for (const name of restores.keys()) names.add(name);
  const runsByName = new Map<string, BackupRun[]>();
  for (const r of i.runs) {
    names.add(r.vm.name);
    runsByName.set(r.vm.name, [...(runsByName.get(r.vm.name) ?? []), r]);
  }

  const rows: VmStatus[] = [];
  for (const name of names) {
    const policy = i.policies[name];
    const chain = chainByName.get(name);
    const runs = (runsByName.get(name) ?? []).slice().sort((a, b) => a.startedAt.localeCompare(b.startedAt));
    const vmId = chain?.vm.id ?? runs.at(-1)?.vm.id ?? "";
    const ids = new Set([vmId, ...runs.map((r) => r.vm.id)].filter(Boolean));

    // Restore points.
    const points = chain ? visiblePoints(chain) : [];
    const lastPoint = points.at(-1);
    let lastGood: VmStatus["lastGood"];
    for (let n = points.length; n >= 1; n--) {
      const p = points[n - 1]!;
      if (p.verified?.ok === false) continue;
      lastGood = { id: p.id, number: n, time: p.time, ageSeconds: Math.max(0, Math.round((now - Date.parse(p.time)) / 1000)) };
      break;
    }
    const pointRuns = new Set(points.map((p) => p.runId).filter(Boolean));

    // The outcome events of this VM (by name, and by each id it had).
    let event = i.outcomes.lastFor(name);
    let success = i.outcomes.lastSuccessFor(name);
    for (const id of ids) {
      const e = i.outcomes.lastFor(name, id);
      if (e && (!event || e.seq > event.seq)) event = e;
      const s = i.outcomes.lastSuccessFor(name, id);
      if (s && (!success || s.seq > success.seq)) success = s;
    }
    let outcome: VmStatus["outcome"] = event && {
      result: event.result,
      time: event.time,
      runId: event.runId,
      correlationId: event.correlationId,
      code: event.code,
      message: event.message,
      step: event.step,
      restorePoint: event.restorePoint,
      kind: event.kind,
      bytes: event.bytes,
      seconds: event.seconds,
      source: "event",
    };

    // Runs without an outcome event: in progress, or ended without one.
    const lease = [...ids].map((id) => i.leases.get(id)).find((l) => l !== undefined);
    let running: VmStatus["running"];
    for (const r of runs) {
      if (i.outcomes.outcomeOfRun(r)) continue;
      // A run older than every event still in the stream cannot be judged: its outcome may have aged out.
      if (i.outcomes.since && Date.parse(r.updatedAt) < i.outcomes.since.getTime()) continue;
      const holdsLease = lease !== undefined && lease.runId === r.runId;
      const quiet = now - Date.parse(r.updatedAt);
      let ended: { code: string; message: string } | undefined;
      if (r.phase === "failed") ended = r.error ?? { code: "RUN_FAILED", message: `run ${r.runId} failed` };
      else if (r.phase === "abandoned") ended = r.error ?? { code: "RUN_ABANDONED", message: `run ${r.runId}: its worker died in it; the reconciler cleaned up what it left` };
      else if (!holdsLease && quiet >= STALLED_AFTER_MS) {
        if (r.restorePoint && pointRuns.has(r.runId)) continue; // its point is in the chain: it got through
        ended = { code: "RUN_STALLED", message: `run ${r.runId} stopped in phase ${r.phase} (last change ${r.updatedAt}): no step holds VM ${name} and no outcome was published` };
      }
      if (ended) {
        if (!outcome || r.updatedAt > outcome.time) {
          outcome = { result: "failed", time: r.updatedAt, runId: r.runId, correlationId: r.correlationId, code: ended.code, message: ended.message, step: r.phase, source: "journal" };
        }
        continue;
      }
      if (FINAL_PHASES.has(r.phase)) continue;
      const step = holdsLease && lease.step ? lease.step : r.phase === "transferred" ? "disk-transferred" : "backup-requested";
      if (!running || r.startedAt >= running.startedAt) {
        running = {
          runId: r.runId,
          startedAt: r.startedAt,
          updatedAt: r.updatedAt,
          phase: r.phase,
          step,
          waiting: holdsLease && lease.owner === "",
          disks: { placed: r.disks.filter((d) => d.state === "placed").length, total: r.disks.length },
        };
      }
    }

    // Schedule, RPO.
    let schedule: VmStatus["schedule"];
    let rpo: VmStatus["rpo"];
    let overdue = false;
    const lagSeconds = lastGood ? lastGood.ageSeconds : undefined;
    if (policy?.enabled) {
      const f = scheduleFacts(policy.schedule, i.now, i.timeZone);
      schedule = { description: f.description, next: f.next?.toISOString(), previous: f.previous?.toISOString(), intervalSeconds: f.intervalMs !== undefined ? f.intervalMs / 1000 : undefined };
      const targetSeconds = f.intervalMs !== undefined ? (f.intervalMs + grace) / 1000 : undefined;
      overdue = lagSeconds !== undefined && targetSeconds !== undefined && lagSeconds > targetSeconds;
      rpo = { lagSeconds, targetSeconds, overdue };
    } else {
      if (policy) schedule = { description: "disabled" };
      rpo = lagSeconds !== undefined ? { lagSeconds, overdue: false } : undefined;
    }

    const lastResult = outcome?.result ?? (lastGood ? "ok" : undefined);
    const newestRun = runs.at(-1);
    rows.push({
      vm: name,
      vmId,
      configured: policy !== undefined,
      enabled: policy?.enabled,
      result: running ? "running" : (lastResult ?? "never"),
      lastResult,
      outcome,
      lastSuccess: success ? { time: success.time, seconds: success.seconds, bytes: success.bytes, restorePoint: success.restorePoint } : undefined,
      running,
      restorePoints: points.length,
      last: lastPoint && { id: lastPoint.id, number: points.length, time: lastPoint.time, kind: lastPoint.kind, bytes: pointSize(lastPoint), verified: lastPoint.verified?.ok },
      lastGood,
      run: newestRun && { runId: newestRun.runId, phase: newestRun.phase, startedAt: newestRun.startedAt, updatedAt: newestRun.updatedAt, error: newestRun.error },
      schedule,
      rpo,
      overdue,
      problem: lastResult === "failed" || overdue,
      ...(restores.has(name) ? { restore: restores.get(name) } : {}),
    });
  }
  return rows.sort((a, b) => a.vm.localeCompare(b.vm));
}

/** "3d 4h", "5h 2m", "12m", "40s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m`;
  return `${s}s`;
}

/** The status rows counted (the daily summary in the audit log, the console's overview). Each VM is in exactly one of protected, failed, overdue, never. */
export interface SummaryCounts {
  readonly vms: number;
  /** Last finished result ok and not overdue. */
  readonly protected: number;
  /** Last finished result failed (a run in progress does not hide it). */
  readonly failed: number;
  /** Last result ok, but no good restore point within its schedule's interval + grace. */
  readonly overdue: number;
  /** No finished result yet (a first backup may be running). */
  readonly never: number;
  /** Layer files of every restore point in the store (KV ferry-chains, the store's own record). */
  readonly bytesStored: number;
  readonly failedVms: readonly string[];
  readonly overdueVms: readonly string[];
  readonly neverVms: readonly string[];
}

/** Count status rows (computeStatus) and the chains' bytes. */
export function summarize(rows: readonly VmStatus[], chains: readonly ChainRecord[]): SummaryCounts {
  const failedVms: string[] = [];
  const overdueVms: string[] = [];
  const neverVms: string[] = [];
  let protectedCount = 0;
  for (const r of rows) {
    if (r.lastResult === "failed") failedVms.push(r.vm);
    else if (r.overdue) overdueVms.push(r.vm);
    else if (r.lastResult === "ok") protectedCount++;
    else neverVms.push(r.vm);
  }
  let bytesStored = 0;
  for (const c of chains) for (const p of visiblePoints(c)) bytesStored += pointSize(p);
  return {
    vms: rows.length,
    protected: protectedCount,
    failed: failedVms.length,
    overdue: overdueVms.length,
    never: neverVms.length,
    bytesStored,
    failedVms,
    overdueVms,
    neverVms,
  };
}
