/**
 * backup.requested → one verified qcow2 layer per data disk in the store → disk.transferred (one
 * per disk). Engine objects are journaled (ferry-runs) before the next one is created and are
 * always closed in `finally`: transfers first, then the backup (or the fallback snapshot).
 */
import { errorCode, FerryError, isPermanent, PermanentError, TransientError } from "../../contracts/errors.ts";
import type { BackupRequested } from "../../contracts/backup-requested.ts";
import type { DiskTransferred } from "../../contracts/disk-transferred.ts";
import type { TransferProgress } from "../../contracts/transfer-progress.ts";
import { redactText } from "../../adapters/secrets.ts";
import { decideMode, diskLayerMode, FERRY_DESCRIPTION_PREFIX, planDisks, type EngineDisk, type FullPolicy, type LayerMode } from "../../domain/backup/decide.ts";
import { backupIdFor, compactTime, customIdFor } from "../../pipeline/run-ids.ts";
import { pointFileKey } from "../../domain/chain/naming.ts";
import type { BackupEngine, BackupStore, ChainReader, ChainView, EngineVm, Transfers } from "../../pipeline/ports.ts";
import { openTransfers, withDisk, withTransfer, type BackupRun, type RunJournal } from "../../pipeline/run-journal.ts";
import type { Leases } from "../../pipeline/vm-lease.ts";

export interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface BackupRequestedDeps {
  readonly engines: (name: string) => BackupEngine | undefined;
  readonly chains: ChainReader;
  readonly runs: RunJournal;
  readonly leases: Leases;
  readonly transfers: Transfers;
  readonly store: BackupStore;
  readonly clock: () => Date;
  readonly log: Log;
  readonly policy: (vmName: string) => FullPolicy;
  /** This worker's id (lease owner). */
  readonly owner: string;
  /** imageio checksum block size (4 MiB). */
  readonly blockSize?: number;
  /** How often the lease is renewed and working() called. */
  readonly heartbeatMs?: number;
}

/** What the runtime gives one delivery. */
export interface DeliveryContext {
  publish(subject: string, event: { id: string } & Record<string, unknown>): Promise<void>;
  progress?(event: TransferProgress): void;
  working?(): void;
  readonly signal?: AbortSignal | undefined;
  /** True when this is the last delivery JetStream will make (then a transient failure is final). */
  readonly lastAttempt?: boolean | undefined;
  readonly log?: Log | undefined;
}

/** The engine refused a backup with its own reason: not retryable as is. */
export class VmNotBackupableError extends PermanentError {
  constructor(vm: string, detail: string) {
    super("VM_NOT_BACKUPABLE", `VM ${vm} cannot be backed up now: ${redactText(detail)}`, { vm });
  }
}

export class ChecksumMismatchError extends TransientError {
  constructor(diskId: string, local: string, source: string) {
    super("CHECKSUM_MISMATCH", `layer of disk ${diskId} has checksum ${local.slice(0, 16)}…, imageio says ${source.slice(0, 16)}…`, { diskId });
  }
}

/** The engine has no usable checkpoint/bitmap: retry this run as a full backup. */
class NeedFullError extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

class NoBackupApiError extends Error {}

const DEFAULT_BLOCK = 4 * 1024 * 1024;

function engineDetail(err: unknown): string {
  if (err && typeof err === "object" && "detail" in err && typeof (err as { detail: unknown }).detail === "string") {
    const d = (err as { detail: string; reason?: string }).detail;
    return d || ((err as { reason?: string }).reason ?? "");
  }
  return err instanceof Error ? err.message : String(err);
}

function statusOf(err: unknown): number | undefined {
  const s = err && typeof err === "object" && "status" in err ? (err as { status: unknown }).status : undefined;
  return typeof s === "number" ? s : undefined;
}

const DISK_ATTEMPTS = 3;

function isDiskRetryable(err: unknown): boolean {
  const code = errorCode(err);
  return err instanceof TransientError || code === "IMAGEIO_FORBIDDEN" || code === "ENGINE_PHASE_FAILED";
}

function isBitmapProblem(err: unknown): boolean {
  return /bitmap|checkpoint/i.test(err instanceof Error ? `${err.message} ${engineDetail(err)}` : String(err));
}

export function createBackupRequestedHandler(deps: BackupRequestedDeps) {
  const blockSize = deps.blockSize ?? DEFAULT_BLOCK;
  const heartbeatMs = deps.heartbeatMs ?? 15_000;

  return async function handleBackupRequested(req: BackupRequested, ctx: DeliveryContext): Promise<void> {
    const log = ctx.log ?? deps.log;
    const runId = req.id;
    if (!runId) throw new PermanentError("NO_RUN_ID", "backup.requested reached the handler without an id");
    const engineName = req.engine ?? "prd";
    const engine = deps.engines(engineName);
    if (!engine) throw new PermanentError("UNKNOWN_ENGINE", `engine '${engineName}' is not in the config`, { engine: engineName });
    const vm = await engine.findVm(req.vm);
    if (!vm) throw new PermanentError("VM_NOT_FOUND", `VM '${req.vm}' not found on engine ${engineName}`, { vm: req.vm });

    const lease = await deps.leases.acquire({ vmId: vm.id, runId, owner: deps.owner });
    const beat = setInterval(() => {
      ctx.working?.();
      lease.renew().catch((err: unknown) => log.warn({ err, vm: vm.name }, "lease renewal failed"));
    }, heartbeatMs);
    try {
      const now = deps.clock().toISOString();
      let run = (await deps.runs.change(runId, (cur) =>
        cur ?? {
          runId, kind: "backup", engine: engineName, vm: { id: vm.id, name: vm.name }, owner: deps.owner, correlationId: req.correlationId ?? runId, phase: "started",
          attempt: 0, startedAt: now, updatedAt: now, restorePoint: `rp-${compactTime(now)}-${customIdFor(runId, "rp").toString(16).slice(0, 4)}`, transfers: [], disks: [],
        },
      ))!;
      if (run.phase === "transferred") {
        await publishDiskEvents(run, ctx);
        return;
      }
      if (run.phase === "failed" && run.error) throw new PermanentError(run.error.code, run.error.message, { runId });
      run = await deps.runs.change(runId, (cur) => cur && { ...cur, owner: deps.owner }) ?? run;
      run = await runAttempts(run, req, engine, vm, ctx, log);
      await publishDiskEvents(run, ctx);
    } catch (err) {
      const final = isPermanent(err) || ctx.lastAttempt === true;
      if (final) {
        const code = errorCode(err);
        const message = redactText(err instanceof Error ? err.message : String(err));
        await deps.runs.change(runId, (cur) => cur && { ...cur, phase: "failed", error: { code, message } }).catch(() => undefined);
        await engine
          .postEvent({
            description: `Ferry: backup of VM ${vm.name} failed (${code}): ${message}`.slice(0, 1000),
            severity: "alert",
            customId: customIdFor(runId, "failed"),
            vmId: vm.id,
          })
          .catch((e: unknown) => log.error({ err: e, vm: vm.name }, "could not post the failure alert to the engine"));
      }
      throw err;
    } finally {
      clearInterval(beat);
      await lease.release().catch(() => undefined);
    }
  };

  async function publishDiskEvents(run: BackupRun, ctx: DeliveryContext): Promise<void> {
    for (const d of run.disks) {
      if (d.event) await ctx.publish("disk.transferred", d.event as DiskTransferred);
    }
  }

  /** Run the backup; an incremental whose bitmap/checkpoint turns out broken is retried once as a full. */
  async function runAttempts(run: BackupRun, req: BackupRequested, engine: BackupEngine, vm: EngineVm, ctx: DeliveryContext, log: Log): Promise<BackupRun> {
    let forceFull: string | undefined = req.mode === "full" ? "full backup requested" : undefined;
    for (let i = 0; ; i++) {
      try {
        return await attempt(run, req, engine, vm, ctx, log, forceFull);
      } catch (err) {
        run = (await deps.runs.get(run.runId)) ?? run;
        if (err instanceof NeedFullError && i === 0) {
          log.warn({ vm: vm.name, reason: err.reason }, "incremental not possible, taking a full backup");
          await engine
            .postEvent({ description: `Ferry: VM ${vm.name}: ${err.reason}; a full backup is taken instead`.slice(0, 1000), severity: "warning", customId: customIdFor(run.runId, `full-fallback-${run.attempt}`), vmId: vm.id })
            .catch(() => undefined);
          forceFull = err.reason;
          continue;
        }
        if (err instanceof NoBackupApiError && i === 0) {
          forceFull = `snapshot-based full backup: ${err.message}`;
          run = (await deps.runs.change(run.runId, (cur) => cur && { ...cur, method: "snapshot" }))!;
          continue;
        }
        if (err instanceof NeedFullError || err instanceof NoBackupApiError) {
          throw new PermanentError("BACKUP_FALLBACK_FAILED", err.message, { vm: vm.name });
        }
        throw err;
      }
    }
  }

  /** One attempt: close what an interrupted attempt left, start (or resume) the engine backup, move every disk. */
  async function attempt(
    run0: BackupRun, req: BackupRequested, engine: BackupEngine, vm: EngineVm, ctx: DeliveryContext, log: Log, forceFull: string | undefined,
  ): Promise<BackupRun> {
    let run = run0;
    const change = async (fn: (r: BackupRun) => BackupRun) => (run = (await deps.runs.change(run.runId, (cur) => fn(cur ?? run)))!);
    const chain = await deps.chains.view(vm.id, vm.name);
    const plan = planDisks(await engine.vmDisks(vm.id));
    if (plan.included.length === 0) throw new PermanentError("NO_DATA_DISKS", `VM ${vm.name} has no disk Ferry can back up`, { vm: vm.name });
    for (const s of plan.skipped) log.info({ vm: vm.name, disk: s.id, reason: s.reason }, "disk skipped");
    for (const f of plan.fullOnly) {
      log.warn({ vm: vm.name, disk: f.id }, f.reason);
      // One audit-log warning per disk, ever: the custom_id is derived from the disk, so the
      // engine refuses every repeat as a duplicate.
      await engine
        .postEvent({ description: `Ferry: ${f.reason}`.slice(0, 1000), severity: "warning", customId: customIdFor(`${vm.id}:${f.id}`, "full-only"), vmId: vm.id })
        .catch((err: unknown) => log.warn({ err, vm: vm.name }, "could not post the full-only warning"));
    }

    // Resume a READY engine backup of the interrupted attempt; otherwise close it and start over.
    let resumeBackup = false;
    if (run.method !== "snapshot" && run.backupId && !run.backupClosed) {
      const b = await engine.getBackup(vm.id, run.backupId).catch(() => undefined);
      // A fallback to full within this delivery must not resume the incremental it replaces.
      const sameDecision = forceFull === undefined || (req.mode === "full" && run.mode === "full");
      if (b?.phase === "ready" && sameDecision) resumeBackup = true;
      else run = await closeEngineObjects(run, engine, log);
    } else if (run.snapshotId && !run.snapshotRemoved) {
      run = await closeEngineObjects(run, engine, log);
    }
    for (const t of openTransfers(run)) {
      await engine.finishTransfer(t.id).catch((err: unknown) => log.warn({ err, transfer: t.id }, "could not close a leftover transfer"));
      await change((r) => withTransfer(r, { ...t, state: "closed" }));
    }
    for (const d of run.disks) if (d.state === "downloading" && d.tmpPath) await deps.store.removeUnrecorded(d.tmpPath);

    if (run.method === "snapshot") return await snapshotBackup();

    let checkpoints: Awaited<ReturnType<BackupEngine["checkpoints"]>> = [];
    let incrementalSupported = true;
    try {
      checkpoints = await engine.checkpoints(vm.id);
    } catch (err) {
      if (statusOf(err) === 404) incrementalSupported = false;
      else throw err;
    }
    let mode: LayerMode;
    let reason: string | undefined;
    let fromCheckpointId: string | undefined;
    if (resumeBackup) {
      mode = run.mode ?? "full";
      reason = run.reason;
      fromCheckpointId = run.fromCheckpointId;
    } else {
      const decision = decideMode({
        requested: forceFull ? "full" : (req.mode ?? "auto"), chain: chain.summary, checkpoints, policy: deps.policy(vm.name),
        now: deps.clock(), incrementalSupported,
      });
      mode = decision.mode;
      reason = forceFull ?? decision.reason;
      fromCheckpointId = decision.fromCheckpointId;
      for (const cp of decision.removeCheckpoints) {
        await engine.removeCheckpoint(vm.id, cp).then(
          () => log.info({ vm: vm.name, checkpoint: cp }, "removed an invalid Ferry checkpoint"),
          (err: unknown) => log.warn({ err, vm: vm.name, checkpoint: cp }, "could not remove an invalid checkpoint"),
        );
      }
      await dropUnrecordedLayers();
      const attemptNo = run.attempt + 1;
      const backupId = backupIdFor(run.runId, attemptNo);
      // Journal the client-chosen id BEFORE the POST: a crash in between still leaves its name.
      await change((r) => ({
        ...r, phase: "backup", method: "backup", attempt: attemptNo, backupId, backupClosed: false, mode, reason, fromCheckpointId,
        checkpointId: undefined, disks: plan.included.map((d) => ({ id: d.id, state: "pending" as const })),
      }));
    }
    const backupId = run.backupId!;
    let failure: unknown;
    try {
      let backup;
      try {
        backup = await engine.startBackup(
          vm.id,
          { id: backupId, fromCheckpointId, description: `${FERRY_DESCRIPTION_PREFIX} ${vm.name} run ${run.runId}`.slice(0, 1000), diskIds: plan.included.map((d) => d.id) },
          ctx.signal,
        );
      } catch (err) {
        const detail = engineDetail(err);
        if (resumeBackup) throw err;
        if (fromCheckpointId && statusOf(err) === 400 && /doesn't exist|is invalid|not included in the previous/i.test(detail)) {
          await change((r) => ({ ...r, backupClosed: true }));
          throw new NeedFullError(`the engine refused the incremental backup: ${detail}`);
        }
        if (statusOf(err) === 404 || /incremental backup is not supported|backup.*not supported/i.test(detail)) {
          await change((r) => ({ ...r, backupClosed: true }));
          throw new NoBackupApiError(detail || "no backup API");
        }
        if (statusOf(err) === 409 && !/during a backup operation|locked/i.test(detail)) {
          throw new VmNotBackupableError(vm.name, detail);
        }
        if (statusOf(err) === 400) throw new VmNotBackupableError(vm.name, detail);
        throw err;
      }
      if (backup.phase === "failed") {
        if (fromCheckpointId) throw new NeedFullError(`the incremental backup failed on the engine (checkpoint ${fromCheckpointId})`);
        throw new TransientError("BACKUP_FAILED_ON_ENGINE", `engine backup ${backupId} of VM ${vm.name} failed`, { backupId });
      }
      await change((r) => ({ ...r, checkpointId: backup.toCheckpointId }));
      // The OVF of this restore point, named like its layers (by checkpoint).
      await deps.store.saveOvf(vm.name, pointFileKey({ id: run.restorePoint!, checkpointId: backup.toCheckpointId }), await engine.vmOvf(vm.id));
      const modes = new Map((await engine.backupDisks(vm.id, backupId)).map((d) => [d.id, d.backupMode]));
      for (const d of plan.included) {
        if (run.disks.find((x) => x.id === d.id)?.state === "placed") continue;
        const lm = diskLayerMode({ backupMode: mode, engineBackupMode: modes.get(d.id), previousLayer: chain.diskLayers.get(d.id)?.path, alias: d.alias, fromCheckpointId });
        const diskReason = joinReasons(reason, lm.reason, plan.fullOnly.find((f) => f.id === d.id)?.reason);
        for (let t = 1; ; t++) {
          try {
            await moveDisk(d, lm.mode, diskReason, { backupId }, chain);
            break;
          } catch (err) {
            // A transfer the engine gave up on, an expired ticket (403) or a transient error: a new
            // transfer of the same ready backup usually works (ovirt-api.md §11).
            if (t < DISK_ATTEMPTS && isDiskRetryable(err) && !ctx.signal?.aborted) {
              log.warn({ err, vm: vm.name, disk: d.id, attempt: t }, "disk transfer failed; retrying with a new transfer");
              continue;
            }
            if (lm.mode === "incremental" && (isBitmapProblem(err) || errorCode(err) === "ENGINE_PHASE_FAILED")) {
              throw new NeedFullError(`incremental transfer of disk ${d.alias} failed (${redactText(err instanceof Error ? err.message : String(err))}); the checkpoint chain is broken`);
            }
            throw err;
          }
        }
      }
    } catch (err) {
      failure = err;
    } finally {
      run = await closeEngineObjects(run, engine, log, failure === undefined);
    }
    if (failure !== undefined) {
      if (failure instanceof NeedFullError && fromCheckpointId) {
        // Ferry's checkpoint for this chain is useless now; remove it so the next run does not try it.
        await engine.removeCheckpoint(vm.id, fromCheckpointId).catch(() => undefined);
      }
      throw failure;
    }
    return await change((r) => ({ ...r, phase: "transferred" }));

    /** Layers placed by an attempt that is being replaced: no restore point will ever reference them. */
    async function dropUnrecordedLayers(): Promise<void> {
      for (const d of run.disks) if (d.layer) await deps.store.removeUnrecorded(deps.store.absolute(d.layer));
    }

    async function snapshotBackup(): Promise<BackupRun> {
      await dropUnrecordedLayers();
      const attemptNo = run.attempt + 1;
      await change((r) => ({
        ...r, phase: "backup", method: "snapshot", attempt: attemptNo, backupId: backupIdFor(r.runId, attemptNo), backupClosed: true,
        snapshotId: undefined, snapshotRemoved: false, mode: "full", reason: forceFull, checkpointId: undefined,
        disks: plan.included.map((d) => ({ id: d.id, state: "pending" as const })),
      }));
      await deps.store.saveOvf(vm.name, run.restorePoint!, await engine.vmOvf(vm.id));
      let failure: unknown;
      try {
        const snap = await engine.createSnapshot(vm.id, { description: `${FERRY_DESCRIPTION_PREFIX} ${vm.name} run ${run.runId}`, diskIds: plan.included.map((d) => d.id) }, ctx.signal);
        await change((r) => ({ ...r, snapshotId: snap.id }));
        for (const d of plan.included) {
          const imageId = snap.disks.find((x) => x.id === d.id)?.imageId;
          if (!imageId) throw new PermanentError("SNAPSHOT_DISK_MISSING", `snapshot ${snap.id} has no volume of disk ${d.alias}`);
          await moveDisk(d, "full", joinReasons(forceFull, plan.fullOnly.find((f) => f.id === d.id)?.reason), { snapshotImageId: imageId }, chain);
        }
      } catch (err) {
        failure = err;
      } finally {
        run = await closeEngineObjects(run, engine, log, failure === undefined);
      }
      if (failure !== undefined) throw failure;
      return await change((r) => ({ ...r, phase: "transferred" }));
    }

    async function moveDisk(d: EngineDisk, lm: LayerMode, diskReason: string | undefined, source: { backupId?: string; snapshotImageId?: string }, chainView: ChainView): Promise<void> {
      const prev = lm === "incremental" ? chainView.diskLayers.get(d.id) : undefined;
      const key = pointFileKey({ id: run.restorePoint!, checkpointId: run.checkpointId });
      const target = await deps.store.layerTarget({ vmName: vm.name, diskId: d.id, time: run.startedAt, key, mode: lm });
      // A layer of this run that was placed but never recorded (crash in between) is not referenced anywhere.
      await deps.store.removeUnrecorded(target.finalPath);
      const transfer = await engine.createDownload({ diskId: d.id, ...source }, ctx.signal);
      await change((r) => withDisk(withTransfer(r, { id: transfer.id, diskId: d.id, state: "open" }), { id: d.id, state: "downloading", tmpPath: target.finalPath }));
      let result;
      let last = 0;
      try {
        const previousDigests = prev ? await deps.store.readDigests(prev.digestsFile) : undefined;
        result = await deps.transfers.download({
          transferUrl: transfer.transferUrl, caPem: engine.caPem, output: target.finalPath, incremental: lm === "incremental",
          backing: prev ? { path: deps.store.absolute(prev.path) } : undefined,
          previousDigests,
          onProgress: (bytes, total) => {
            const t = Date.now();
            if (t - last < 1000 && bytes < total) return;
            last = t;
            ctx.progress?.({ id: `${run.runId}:${d.id}:${t}`, time: new Date(t).toISOString(), correlationId: run.correlationId ?? run.runId, runId: run.runId, vm: vm.name, disk: d.id, bytes, total, phase: "download" });
          },
          signal: ctx.signal,
        });
        const sourceSum = await deps.transfers.sourceChecksum({ transferUrl: transfer.transferUrl, caPem: engine.caPem, blockSize, signal: ctx.signal });
        if (sourceSum !== result.checksum) throw new ChecksumMismatchError(d.id, result.checksum, sourceSum);
      } catch (err) {
        await deps.store.removeUnrecorded(target.finalPath).catch(() => undefined);
        throw err;
      } finally {
        await engine.finishTransfer(transfer.id, { signal: ctx.signal }).then(
          () => change((r) => withTransfer(r, { id: transfer.id, diskId: d.id, state: "closed" })),
          (err: unknown) => log.warn({ err, transfer: transfer.id }, "could not finalize the transfer; the reconciler will"),
        );
      }
      const size = await deps.store.fileSize(target.finalPath);
      const digestsFile = await deps.store.saveDigests(vm.name, key, d.id, { blockSize, virtualSize: result.virtualSize, digests: result.digests });
      const event: DiskTransferred = {
        id: `${run.backupId}:${d.id}:disk.transferred`,
        time: deps.clock().toISOString(),
        correlationId: run.correlationId ?? run.runId,
        runId: run.runId,
        backupId: run.backupId!,
        vm: { id: vm.id, name: vm.name },
        disk: { id: d.id, alias: d.alias, virtualSize: result.virtualSize || d.provisionedSize },
        diskCount: plan.included.length,
        restorePoint: run.restorePoint!,
        mode: lm,
        ...(diskReason ? { reason: diskReason.slice(0, 1000) } : {}),
        layer: { path: target.relPath, size, ...(prev ? { parent: prev.path } : {}) },
        checksum: { algorithm: "sha256", blockSize, value: result.checksum },
      };
      const extra = event as Record<string, unknown>;
      if (run.checkpointId) extra.checkpointId = run.checkpointId;
      extra.digestsFile = digestsFile;
      extra.takenAt = run.startedAt;
      extra.transfer = { bytes: result.bytes, seconds: Math.round(result.seconds * 1000) / 1000 };
      if (run.fromCheckpointId && lm === "incremental") extra.fromCheckpointId = run.fromCheckpointId;
      if (plan.skipped.length) (event as Record<string, unknown>).skippedDisks = plan.skipped;
      await change((r) => withDisk(r, { id: d.id, state: "placed", layer: target.relPath, event: event as unknown as Record<string, unknown> }));
      log.info({ vm: vm.name, disk: d.id, mode: lm, bytes: result.bytes, seconds: result.seconds }, "disk transferred");
    }
  }

  /** Close everything the run holds open on the engine: transfers first, then the backup or snapshot. */
  async function closeEngineObjects(run0: BackupRun, engine: BackupEngine, log: Log, mustSucceed = false): Promise<BackupRun> {
    let run = run0;
    const change = async (fn: (r: BackupRun) => BackupRun) => (run = (await deps.runs.change(run.runId, (cur) => fn(cur ?? run)))!);
    await change((r) => ({ ...r, phase: r.phase === "failed" ? r.phase : "finalizing" }));
    for (const t of openTransfers(run)) {
      try {
        await engine.finishTransfer(t.id);
        await change((r) => withTransfer(r, { ...t, state: "closed" }));
      } catch (err) {
        log.warn({ err, transfer: t.id }, "could not close a transfer");
      }
    }
    if (run.backupId && !run.backupClosed && run.method !== "snapshot") {
      try {
        await engine.finalizeBackup(run.vm.id, run.backupId);
        await change((r) => ({ ...r, backupClosed: true }));
      } catch (err) {
        if (statusOf(err) === 404) await change((r) => ({ ...r, backupClosed: true }));
        else {
          log.warn({ err, backup: run.backupId }, "could not finalize the engine backup; the reconciler will retry");
          if (mustSucceed && !(err instanceof FerryError && err.code.includes("TIMEOUT"))) throw err;
        }
      }
    }
    if (run.snapshotId && !run.snapshotRemoved) {
      try {
        await engine.removeSnapshot(run.vm.id, run.snapshotId);
        await change((r) => ({ ...r, snapshotRemoved: true }));
      } catch (err) {
        log.warn({ err, snapshot: run.snapshotId }, "could not remove the backup snapshot; the reconciler will retry");
      }
    }
    return run;
  }
}

function joinReasons(...rs: (string | undefined)[]): string | undefined {
  const s = rs.filter((r): r is string => !!r);
  return s.length ? [...new Set(s)].join("; ") : undefined;
}
