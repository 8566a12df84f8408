/**
 * The backup pipeline against the real runtime, a real nats-server and the lab engine, for the
 * backup end-to-end tests and the nightly bench. Not a test file itself.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats, provisionInfra } from "../adapters/nats/mod.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { startLab, type EngineTimings } from "../lab/mod.ts";
import { createLogger, runFunctions, type FunctionDefinition } from "../functions/runtime/mod.ts";
import { backupRequestedFunction } from "../functions/backup-requested/definition.ts";
import { diskTransferredFunction } from "../functions/disk-transferred/definition.ts";
import { chainUpdatedFunction } from "../functions/chain-updated/definition.ts";
import { createChainUpdatedDeps } from "../functions/chain-updated/wiring.ts";
import { alertsFunction } from "../functions/alerts/definition.ts";
import { createAlertsFor } from "../functions/alerts/wiring.ts";
import { buckets } from "../infra/streams/mod.ts";
import { backupFunctionDeps, buildBackupWiring, restoreFunctionDeps, type BackupSettings, type BackupWiring } from "../pipeline/composition.ts";
import { restoreRequestedFunction } from "../functions/restore-requested/definition.ts";
import type { FullPolicy } from "../domain/backup/decide.ts";
import type { RetentionPolicy } from "../domain/retention/mod.ts";

export type Lab = Awaited<ReturnType<typeof startLab>>;

export interface PipelineOptions {
  /** Run backup-requested in this process (default true; false for the SIGKILL test's child workers). */
  readonly backupWorker?: boolean;
  /** Run restore-requested in this process (default true; false for the restore SIGKILL test's child workers). */
  readonly restoreWorker?: boolean;
  readonly ackWaitMs?: number;
  readonly maxDeliver?: number;
  readonly backoffMs?: readonly number[];
  readonly fullPolicy?: (vm: string) => FullPolicy;
  readonly retention?: (vm: string) => RetentionPolicy;
  readonly clock?: () => Date;
  readonly logLevel?: string;
  /** Backups at once in the in-process worker (default 1). */
  readonly backupConcurrency?: number;
  /** Faster simulated engine phases (the retention run makes 30 backups). */
  readonly labTimings?: Partial<EngineTimings>;
  /** Engine phase polling interval (default 100 ms). */
  readonly pollMs?: number;
  /** Lab engines to start (default ['prd']). */
  readonly labEngines?: string[];
  /** VMs that replicate to DR (config vms.<vm>.replicateToDr). */
  readonly replicates?: (vm: string) => boolean;
  /** Restore settings (defaults: cluster Default, storage domain data, no start). */
  readonly restore?: Partial<NonNullable<BackupSettings["restore"]>>;
  /** Run on the lab and store of a pipeline stopped with `stop({ keep: true })` (a new nats-server: the bus lost its data). */
  readonly reuse?: { readonly lab: Lab; readonly dir: string };
  /** Extra settings (e.g. the reconciler's orphan grace, the scrub). */
  readonly settings?: Partial<BackupSettings>;
}

export interface Outcome {
  readonly subject: "backup.completed" | "backup.failed";
  readonly event: Record<string, unknown>;
  /** disk.transferred events of this run. */
  readonly disks: Record<string, unknown>[];
  readonly chain?: Record<string, unknown> | undefined;
}

export interface Pipeline {
  readonly nats: NatsServer;
  readonly nc: NatsConnection;
  readonly lab: Lab;
  readonly dir: string;
  readonly storePath: string;
  readonly settings: BackupSettings;
  readonly wiring: BackupWiring;
  /** Settings as JSON for a child worker process (test/fixtures/backup-worker.ts). */
  readonly workerConfigFile: string;
  backup(vm: string, o?: { mode?: "auto" | "full" | "incremental"; id?: string; timeoutMs?: number }): Promise<Outcome>;
  /** Publish only; `outcome(id)` waits for it. */
  request(vm: string, o?: { mode?: "auto" | "full" | "incremental"; id?: string }): Promise<string>;
  outcome(id: string, timeoutMs?: number): Promise<Outcome>;
  /** The restore.completed / restore.failed of a correlation id (e.g. the replication a backup caused). */
  restoreOutcome(correlationId: string, timeoutMs?: number): Promise<{ subject: string; event: Record<string, unknown> }>;
  /** Publish a restore.requested (id and correlationId filled) and wait for its restore.completed / restore.failed. */
  restore(body: Record<string, unknown>, timeoutMs?: number): Promise<{ subject: string; event: Record<string, unknown> }>;
  /** Every event seen by subject. */
  readonly seen: { subject: string; event: Record<string, unknown> }[];
  /** The newest pipeline log lines (pino JSON, at most 2000), for diagnostics. */
  readonly logLines: readonly string[];
  /** `keep`: leave the lab running and the store in place (for `reuse`). */
  stop(o?: { keep?: boolean }): Promise<void>;
}

export async function startPipeline(o: PipelineOptions = {}): Promise<Pipeline> {
  const dir = o.reuse?.dir ?? (await mkdtemp(join(tmpdir(), "ferry-e2e-")));
  // What is started so far, undone in reverse if the start fails (no nats-server or lab left behind).
  const undo: (() => Promise<unknown>)[] = o.reuse ? [] : [() => rm(dir, { recursive: true, force: true })];
  try {
    return await startIn(dir, o, undo);
  } catch (err) {
    for (const u of undo.reverse()) await u().catch(() => undefined);
    throw err;
  }
}

async function startIn(dir: string, o: PipelineOptions, undo: (() => Promise<unknown>)[]): Promise<Pipeline> {
  const nats = await startNatsServer();
  undo.push(() => nats.stop());
  const lab = o.reuse?.lab ?? (await startLab({ dataDir: join(dir, "lab"), engines: o.labEngines ?? ["prd"], ...(o.labTimings ? { engineOptions: { timings: o.labTimings } } : {}) }));
  if (!o.reuse) undo.push(() => lab.stop());
  const storePath = join(dir, "store");
  const nc = await connectNats({ servers: nats.url, name: "ferry-e2e" });
  undo.push(() => nc.close());
  await provisionInfra(nc, await jetstreamManager(nc), { replicas: 1 });
  const settings: BackupSettings = {
    engines: Object.fromEntries(Object.entries(lab.engines).map(([name, e]) => [name, { url: e!.url, user: e!.user, password: e!.password, caPem: e!.caPem }])),
    restore: { cluster: "Default", storageDomain: "data", nameSuffix: "_restored", replicaSuffix: "_dr", start: false, replaceExisting: false, bootTimeoutMs: 60_000, ...o.restore },
    storePath,
    fullPolicy: o.fullPolicy ?? (() => ({})),
    retention: o.retention ?? (() => ({ keepLast: 1000 })),
    ...(o.replicates ? { replicates: o.replicates } : {}),
    pollMs: o.pollMs ?? 100,
    connections: 4,
    // The workers here beat every 1-2 s: a killed worker's lease is free a few seconds later.
    leaseTtlMs: 6000,
    // The scheduled scrub only where a test asks for it: a reconciler pass stays deterministic.
    scrubEveryMs: 0,
    ...o.settings,
  };
  const kvm = new Kvm(nc);
  const logLines: string[] = [];
  const log = createLogger({
    level: o.logLevel ?? "info",
    destination: new Writable({ write(chunk, _e, cb) { logLines.push(String(chunk)); if (logLines.length > 2000) logLines.shift(); cb(); } }) as never,
  });
  const wiring = await buildBackupWiring(settings, (b) => kvm.open(b), undefined, log);
  undo.push(() => wiring.close());
  const clock = o.clock ?? (() => new Date());
  const deps = backupFunctionDeps(wiring, log, clock);
  const policy = { ackWaitMs: o.ackWaitMs ?? 20_000, maxDeliver: o.maxDeliver ?? 3, backoffMs: o.backoffMs ?? [500, 1000, 2000], concurrency: o.backupConcurrency ?? 1 };
  const defs: FunctionDefinition[] = [
    diskTransferredFunction(deps.diskTransferred, { ackWaitMs: 10_000, maxDeliver: 4, backoffMs: [200, 500] }),
    chainUpdatedFunction(createChainUpdatedDeps(wiring, log, clock), { ackWaitMs: 20_000, maxDeliver: 3, backoffMs: [200, 500] }),
    // Failure alerts in the engine audit log come from their own function, as in production.
    alertsFunction(createAlertsFor(wiring, await kvm.open(buckets.alerts), log), { ackWaitMs: 10_000, maxDeliver: 5, backoffMs: [200, 500] }),
  ];
  if (o.restoreWorker ?? true) defs.push(restoreRequestedFunction({ ...restoreFunctionDeps(wiring, log, clock), heartbeatMs: 2000 }, { ackWaitMs: 20_000, maxDeliver: 3, backoffMs: [500, 1000] }));
  if (o.backupWorker ?? true) defs.unshift(backupRequestedFunction({ ...deps.backupRequested, heartbeatMs: 2000 }, policy));
  const workerConfigFile = join(dir, "worker.json");
  await writeFile(workerConfigFile, JSON.stringify({ natsUrl: nats.url, settings: { ...settings, fullPolicy: undefined, retention: undefined }, policy }), { mode: 0o600 });

  const seen: { subject: string; event: Record<string, unknown> }[] = [];
  const waiters = new Set<() => void>();

  const ac = new AbortController();
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  const running = runFunctions(defs, { nc, log, signal: ac.signal, drain: false, provision: false, graceMs: 2000, pullExpiresMs: 1000, onReady: () => ready() });
  undo.push(async () => {
    ac.abort();
    await running.catch(() => undefined);
  });
  // The host can fail while starting (a JetStream API call timing out while it creates the
  // durable consumers on a loaded machine) or end later (connection closed). Either way nothing
  // consumes any more: say so now instead of letting every outcome wait for its timeout.
  let hostEnded: Error | undefined;
  const ended = running.then(
    () => new Error("the functions host stopped before the pipeline was stopped (NATS connection closed?)"),
    (err: unknown) => new Error(`the functions host failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }),
  );
  void ended.then((err) => {
    if (ac.signal.aborted) return;
    hostEnded = err;
    for (const w of [...waiters]) w();
  });
  const failedToStart = await Promise.race([readyP.then(() => undefined), ended]);
  if (failedToStart) throw failedToStart;
  const subs = ["disk.transferred", "chain.updated", "backup.completed", "backup.failed", "restore.completed", "restore.failed", "transfer.progress", "*.*.rejected"].map((s) =>
    nc.subscribe(s, {
      callback: (_e, m) => {
        seen.push({ subject: m.subject, event: m.json<Record<string, unknown>>() });
        for (const w of waiters) w();
      },
    }),
  );
  const js = jetstream(nc);

  const pipeline: Pipeline = {
    nats, nc, lab, dir, storePath, settings, wiring, seen, workerConfigFile, logLines,
    async request(vm, r = {}) {
      const id = r.id ?? `t-${Math.random().toString(36).slice(2, 10)}`;
      await js.publish("backup.requested", JSON.stringify({ id, correlationId: id, vm, mode: r.mode ?? "auto" }), { msgID: id });
      return id;
    },
    outcome(id, timeoutMs = 90_000) {
      return new Promise<Outcome>((resolve, reject) => {
        const check = () => {
          const hit = seen.find((s) => (s.subject === "backup.completed" || s.subject === "backup.failed") && s.event.correlationId === id);
          if (!hit && hostEnded) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(new Error(`no outcome for ${id}: ${hostEnded.message}; last log lines:\n${logLines.slice(-15).join("")}`, { cause: hostEnded }));
            return;
          }
          if (!hit) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve({
            subject: hit.subject as Outcome["subject"],
            event: hit.event,
            disks: seen.filter((s) => s.subject === "disk.transferred" && s.event.correlationId === id).map((s) => s.event),
            chain: seen.find((s) => s.subject === "chain.updated" && s.event.correlationId === id)?.event,
          });
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no outcome for ${id} within ${timeoutMs} ms; last log lines:\n${logLines.slice(-15).join("")}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async restore(body, timeoutMs = 120_000) {
      const id = `r-${Math.random().toString(36).slice(2, 10)}`;
      await js.publish("restore.requested", JSON.stringify({ id, correlationId: id, ...body }), { msgID: id });
      return pipeline.restoreOutcome(id, timeoutMs);
    },
    restoreOutcome(id, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = seen.find((x) => (x.subject === "restore.completed" || x.subject === "restore.failed") && x.event.correlationId === id);
          if (!hit) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no restore outcome for ${id} within ${timeoutMs} ms; last log lines:\n${logLines.slice(-15).join("")}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async backup(vm, r = {}) {
      const id = await pipeline.request(vm, r);
      return pipeline.outcome(id, r.timeoutMs);
    },
    async stop(so = {}) {
      for (const s of subs) s.unsubscribe();
      ac.abort();
      await running.catch(() => undefined);
      await wiring.close();
      await nc.close().catch(() => undefined);
      await nats.stop();
      // A reused lab and store belong to the first pipeline: it removes them.
      if (so.keep || o.reuse) return;
      await lab.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return pipeline;
}
