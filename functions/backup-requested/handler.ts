/**
 * backup.requested → one verified qcow2 layer per data disk in the store → disk.transferred (one
 * per disk). The steps live beside this file: engine-session (start/resume the engine backup),
 * move-disk, snapshot-fallback, attempt (one try, closing every engine object on the way out).
 *
 * The VM lease is taken here under the run id and, when the disks are out, handed off to the
 * run's next steps (disk-transferred, chain-updated), which release it once the restore point is
 * recorded and retention has run: no second backup of the VM can read the chain in between.
 * A failure for good ends the run (journal `failed`, lease released); the alert in the engine's
 * audit log is functions/alerts' job, from the `backup.failed` the runtime publishes.
 *
 * The engine work (engine backup, transfers, downloads) runs under a backup slot of the engine —
 * and of the VM's host and storage domains when limited (pipeline/engine-slots.ts); a request that
 * finds no free slot waits here, its delivery kept alive by the heartbeat, spending no attempt.
 */
import { errorCode, isPermanent, PermanentError } from "../../contracts/errors.ts";
import type { BackupRequested } from "../../contracts/backup-requested.ts";
import type { DiskTransferred } from "../../contracts/disk-transferred.ts";
import { redactText } from "../../adapters/secrets.ts";
import { compactTime, customIdFor } from "../../pipeline/run-ids.ts";
import type { BackupRun } from "../../pipeline/run-journal.ts";
import type { BackupEngine, EngineVm } from "../../pipeline/ports.ts";
import { VmBusyError, type Lease } from "../../pipeline/vm-lease.ts";
import { backupScopes, type SlotHold } from "../../pipeline/engine-slots.ts";
import { withOutagePatience } from "../../pipeline/engine-port.ts";
import { CONFIG_DEFAULTS } from "../../contracts/config.ts";
import { isNoSpace, isReadOnlyFs, storeFullError, StoreReadOnlyError } from "../../dataplane/download.ts";
import { coalesceInto, coveredCompletion, coveredFailure, requestOf } from "../../pipeline/coalesce.ts";
import { attempt } from "./attempt.ts";
import { NeedFullError, NoBackupApiError } from "./errors.ts";
import { AttemptScope, type BackupRequestedDeps, type DeliveryContext, type Log } from "./scope.ts";

export type { BackupRequestedDeps, DeliveryContext, Log } from "./scope.ts";
export { ChecksumMismatchError, VmNotBackupableError } from "./errors.ts";

/** The step that takes the lease over from backup-requested. */
export const NEXT_STEP = "disk-transferred";

export function createBackupRequestedHandler(deps: BackupRequestedDeps) {
  // Renew well within the lease TTL, so a live worker never loses its VM.
  const heartbeatMs = deps.heartbeatMs ?? Math.min(15_000, Math.floor(deps.leases.ttlMs / 4));
  // One lease owner per delivery, not per process: a process runs several backups at once, and the
  // same run delivered twice to it must still meet VM_BUSY rather than share the lease.
  let deliveries = 0;

  return async function handleBackupRequested(req: BackupRequested, ctx: DeliveryContext): Promise<void> {
    const log = ctx.log ?? deps.log;
    const runId = req.id;
    if (!runId) throw new PermanentError("NO_RUN_ID", "backup.requested reached the handler without an id");
    const engineName = req.engine ?? "prd";
    const rawEngine = deps.engines(engineName);
    if (!rawEngine) throw new PermanentError("UNKNOWN_ENGINE", `engine '${engineName}' is not in the config`, { engine: engineName });
    // An engine outage costs this run time, not delivery attempts (the lease is renewed meanwhile).
    const engine = withOutagePatience(rawEngine, {
      budgetMs: deps.engineOutageBudgetMs ?? CONFIG_DEFAULTS.engineOutageBudgetMs,
      signal: ctx.signal,
      onWait: ({ err, waitedMs, delayMs, call }) => log.warn({ err, call, waitedMs, delayMs }, "engine outage; waiting for the engine to come back"),
    });
    const vm = await engine.findVm(req.vm);
    if (!vm) throw new PermanentError("VM_NOT_FOUND", `VM '${req.vm}' not found on engine ${engineName}`, { vm: req.vm });

    const known = await deps.runs.get(runId);
    if (known?.recordedAt) {
      // A redelivery of a run whose point is recorded: nothing to do, and the VM lease (released
      // by chain-updated, or still its) is not touched — taking it again would lock the VM.
      log.info({ vm: vm.name, runId }, "run already recorded its restore point; duplicate delivery acknowledged");
      return;
    }
    if (known?.phase === "failed" && known.error) throw new PermanentError(known.error.code, known.error.message, { runId });
    if (!known && (await coalesced(req, vm, ctx, log))) return;

    const owner = `${deps.owner}#${++deliveries}`;
    let lease: Lease;
    if (known?.phase === "transferred") {
      // Only the run's own lease, never a new one: without it the run ended meanwhile.
      const own = await deps.leases.resume({ vmId: vm.id, runId, owner, step: "backup-requested" });
      if (!own) {
        log.info({ vm: vm.name, runId }, "run already ended (its VM lease is gone); duplicate delivery acknowledged");
        return;
      }
      lease = own;
    } else {
      try {
        lease = await deps.leases.acquire({ vmId: vm.id, runId, owner, step: "backup-requested" });
      } catch (err) {
        // Another run took the VM between the look and the take: join it instead.
        if (err instanceof VmBusyError && !known && (await coalesced(req, vm, ctx, log))) return;
        throw err;
      }
    }
    let slot: SlotHold | undefined;
    const beat = setInterval(() => {
      ctx.working?.();
      lease.renew().catch((err: unknown) => log.warn({ err, vm: vm.name }, "lease renewal failed"));
      slot?.renew().catch((err: unknown) => log.warn({ err, vm: vm.name }, "backup slot renewal failed"));
    }, heartbeatMs);
    let handOff: string | undefined;
    let handedOn = false;
    let failedForGood = false;
    try {
      const run = await openRun(req, engineName, vm);
      if (run.phase === "failed" && run.error) throw new PermanentError(run.error.code, run.error.message, { runId });
      const scope = new AttemptScope(deps, engine, vm, ctx, log, run);
      if (run.phase !== "transferred") {
        await scope.change((cur) => ({ ...cur, owner: deps.owner }));
        slot = await takeSlot(engine, vm, runId, ctx, log);
        await runAttempts(scope, req);
        // The engine-side work is over (disks out, engine backup closed): the next backup may start.
        await slot?.release();
        await scope.change((r) => ({ ...r, phase: "transferred" }));
      }
      // Hand the lease on BEFORE the events go out: the run's next steps (chain-updated in another
      // process, possibly within milliseconds) must find it handed off, not held, or they would meet
      // VM_BUSY and wait out a retry timer. A failed publish is retried by this run's redelivery,
      // which takes the handed-off lease back (Leases.resume).
      clearInterval(beat);
      handedOn = true;
      await lease.handOff(NEXT_STEP).catch((err: unknown) => log.warn({ err, vm: vm.name }, "could not hand the VM lease on"));
      for (const d of scope.run.disks) if (d.event) await ctx.publish("disk.transferred", d.event as DiskTransferred);
    } catch (caught) {
      // Out of space or read-only anywhere (a layer, digests, the OVF): one final code naming the store.
      const err = isNoSpace(caught) ? await storeFullError(deps.store.root, caught) : isReadOnlyFs(caught) ? new StoreReadOnlyError(deps.store.root, caught) : caught;
      if (isPermanent(err) || ctx.lastAttempt === true) {
        failedForGood = true;
        await dropRunLayers(runId, log);
        const code = errorCode(err);
        const message = redactText(err instanceof Error ? err.message : String(err));
        const failed = await deps.runs.change(runId, (cur) => cur && { ...cur, phase: "failed", error: { code, message } }).catch(() => undefined);
        // The requests that joined this run get its outcome (the `failed` write closed the list).
        const now = deps.clock();
        for (const c of failed?.coalesced ?? []) {
          await ctx.publish("backup.failed", coveredFailure(failed!, c, code, message, now)).catch((e: unknown) => log.error({ err: e, request: c.id }, "could not announce the failure to a coalesced request"));
        }
      } else {
        // A retry of this run is due: keep the VM for it, so no other run starts in between.
        handOff = "backup-requested";
      }
      throw err;
    } finally {
      clearInterval(beat);
      await slot?.release().catch((err: unknown) => log.warn({ err, vm: vm.name }, "could not give the backup slot back (it expires on its own)"));
      if (handOff) await lease.handOff(handOff).catch((err: unknown) => log.warn({ err, vm: vm.name }, "could not hand the VM lease on"));
      else if (!handedOn || failedForGood) await lease.release().catch(() => undefined);
    }
  };

  /**
   * Wait for a backup slot of the engine (and of the VM's host / storage domains when limited).
   * No limit configured (no slots dep): undefined at once.
   */
  async function takeSlot(engine: BackupEngine, vm: EngineVm, runId: string, ctx: DeliveryContext, log: Log): Promise<SlotHold | undefined> {
    if (!deps.slots || !deps.slotLimits) return undefined;
    const limits = deps.slotLimits;
    const storageDomainIds = limits.backupsPerStorageDomain !== undefined ? (await engine.vmDisks(vm.id)).flatMap((d) => d.storageDomainIds ?? []) : undefined;
    const scopes = backupScopes({ engine: engine.name, hostId: vm.hostId, storageDomainIds }, limits);
    const hold = await deps.slots.acquire({
      scopes, runId, owner: deps.owner, vm: vm.name, signal: ctx.signal,
      onWait: (full) => log.info({ vm: vm.name, scope: full.scope, limit: full.limit, holders: full.holders.map((h) => h.vm) }, "all backup slots taken; waiting for one"),
    });
    if (hold.waitedMs >= 1000) log.info({ vm: vm.name, waitedMs: hold.waitedMs }, "backup slot taken");
    return hold;
  }

  /** The run failed for good: the layers it placed will never be in a restore point, so they go now. */
  async function dropRunLayers(runId: string, log: Log): Promise<void> {
    const run = await deps.runs.get(runId).catch(() => undefined);
    // Announced layers (phase transferred) are disk-transferred's to record: never touched here.
    if (!run || run.phase === "transferred" || run.recordedAt) return;
    for (const d of run.disks) {
      const path = d.layer ? deps.store.absolute(d.layer) : d.tmpPath;
      if (path) await deps.store.removeUnrecorded(path).catch((err: unknown) => log.warn({ err, layer: path }, "could not remove a layer of the failed run"));
    }
  }

  /**
   * Another run of the VM holds its lease: join it (pipeline/coalesce.ts). True when this request
   * is answered or listed; false when the holder is no live run (the request waits for the VM).
   */
  async function coalesced(req: BackupRequested, vm: EngineVm, ctx: DeliveryContext, log: Log): Promise<boolean> {
    const now = deps.clock();
    const r = requestOf(req, now);
    const holder = await deps.leases.get(vm.id);
    if (!holder || holder.runId === req.id || Date.parse(holder.expiresAt) <= now.getTime()) {
      // No run in flight now; but one that was in flight when this request was made (it waited
      // in the queue meanwhile) covers it with its point.
      const lastId = await deps.lastRunOf?.(vm.id);
      const last = lastId && lastId !== req.id ? await deps.runs.get(lastId) : undefined;
      if (!last?.recordedAt || !last.restorePoint || Date.parse(r.time) > Date.parse(last.recordedAt)) return false;
      if (req.mode === "full" && last.mode !== "full") return false;
      await ctx.publish("backup.completed", coveredCompletion(last, r, now));
      log.info({ vm: vm.name, coveredBy: last.runId, restorePoint: last.restorePoint }, "request made while the previous run was in flight; covered by its restore point");
      return true;
    }
    const c = await coalesceInto(deps.runs, holder.runId, r, { full: req.mode === "full" });
    if (c.kind === "not-live") return false;
    if (c.kind === "covered") {
      await ctx.publish("backup.completed", coveredCompletion(c.run, r, now));
      log.info({ vm: vm.name, coveredBy: c.run.runId, restorePoint: c.run.restorePoint }, "request covered by the restore point of the run in flight");
    } else {
      log.info({ vm: vm.name, joined: c.run.runId }, "a backup run of this VM is in flight; request coalesced into it (its outcome comes with that run's)");
    }
    return true;
  }

  /** The run's journal record: created on the first delivery, found again on a redelivery. */
  async function openRun(req: BackupRequested, engineName: string, vm: EngineVm): Promise<BackupRun> {
    const runId = req.id!;
    const now = deps.clock().toISOString();
    return (await deps.runs.change(runId, (cur) =>
      cur ?? {
        runId, kind: "backup", engine: engineName, vm: { id: vm.id, name: vm.name }, owner: deps.owner, correlationId: req.correlationId ?? runId, phase: "started",
        attempt: 0, startedAt: now, updatedAt: now, restorePoint: `rp-${compactTime(now)}-${customIdFor(runId, "rp").toString(16).slice(0, 4)}`, transfers: [], disks: [],
      },
    ))!;
  }

  /** Run the backup; an incremental whose bitmap/checkpoint turns out broken is retried once as a full. */
  async function runAttempts(s: AttemptScope, req: BackupRequested): Promise<void> {
    const { engine, vm, log } = s;
    let forceFull: string | undefined = req.mode === "full" ? "full backup requested" : undefined;
    for (let i = 0; ; i++) {
      try {
        return await attempt(s, req, forceFull);
      } catch (err) {
        await s.reload();
        if (err instanceof NeedFullError && i === 0) {
          log.warn({ vm: vm.name, reason: err.reason }, "incremental not possible, taking a full backup");
          await postFullFallbackWarning(engine, vm, s.run, err.reason);
          forceFull = err.reason;
          continue;
        }
        if (err instanceof NoBackupApiError && i === 0) {
          forceFull = `snapshot-based full backup: ${err.message}`;
          await s.change((cur) => ({ ...cur, method: "snapshot" }));
          continue;
        }
        if (err instanceof NeedFullError || err instanceof NoBackupApiError) {
          throw new PermanentError("BACKUP_FALLBACK_FAILED", err.message, { vm: vm.name });
        }
        throw err;
      }
    }
  }
}

async function postFullFallbackWarning(engine: BackupEngine, vm: EngineVm, run: BackupRun, reason: string): Promise<void> {
  await engine
    .postEvent({ description: `Ferry: VM ${vm.name}: ${reason}; a full backup is taken instead`.slice(0, 1000), severity: "warning", customId: customIdFor(run.runId, `full-fallback-${run.attempt}`), vmId: vm.id })
    .catch(() => undefined);
}
