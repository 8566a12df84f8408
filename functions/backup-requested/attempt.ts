/**
 * One attempt of a backup run: close what an interrupted attempt left, decide full or
 * incremental per disk, start (or resume) the engine backup, move every disk, close the engine
 * objects. An incremental the engine cannot serve throws NeedFullError; no backup API throws
 * NoBackupApiError (handler.ts turns both into a second attempt).
 */
import { TransientError } from "../../contracts/errors.ts";
import { redactText } from "../../adapters/secrets.ts";
import { ImageioForbiddenError, DirtyExtentsUnsupportedError } from "../../adapters/imageio/mod.ts";
import { TransferFailedError } from "../../adapters/ovirt/mod.ts";
import { decideMode, diskLayerMode, planDisks, type LayerMode } from "../../domain/backup/decide.ts";
import { backupIdFor, customIdFor, engineDescription } from "../../pipeline/run-ids.ts";
import { closeRun } from "../../pipeline/close-run.ts";
import { openTransfers, withDisk, withTransfer, type BackupRun } from "../../pipeline/run-journal.ts";
import { pointFileKey } from "../../domain/chain/naming.ts";
import type { BackupRequested } from "../../contracts/backup-requested.ts";
import { PermanentError, isPermanent } from "../../contracts/errors.ts";
import { isNoSpace, isReadOnlyFs } from "../../dataplane/download.ts";
import { joinReasons, NeedFullError, NoBackupApiError } from "./errors.ts";
import { startEngineBackup } from "./engine-session.ts";
import { moveDisk } from "./move-disk.ts";
import { snapshotBackup } from "./snapshot-fallback.ts";
import type { AttemptScope } from "./scope.ts";

const DISK_ATTEMPTS = 3;

/** A new transfer of the same ready backup usually gets past these (ovirt-api.md §11). */
function isDiskRetryable(err: unknown): boolean {
  return err instanceof TransientError || err instanceof ImageioForbiddenError;
}

/** The engine or imageio could not serve the dirty extents of an incremental: its bitmap is gone (§5.7). */
function isBrokenIncremental(err: unknown): boolean {
  return err instanceof TransferFailedError || err instanceof DirtyExtentsUnsupportedError;
}

export async function attempt(s: AttemptScope, req: BackupRequested, forceFull: string | undefined): Promise<void> {
  const { deps, engine, vm, ctx, log } = s;
  const chain = await deps.chains.view(vm.id, vm.name);
  const plan = planDisks(await engine.vmDisks(vm.id));
  if (plan.included.length === 0) throw new PermanentError("NO_DATA_DISKS", `VM ${vm.name} has no disk Ferry can back up`, { vm: vm.name });
  for (const sk of plan.skipped) log.info({ vm: vm.name, disk: sk.id, reason: sk.reason }, "disk skipped");
  for (const f of plan.fullOnly) {
    log.warn({ vm: vm.name, disk: f.id }, f.reason);
    // One audit-log warning per disk, ever: the custom_id is derived from the disk, so the
    // engine refuses every repeat as a duplicate.
    await engine
      .postEvent({ description: `Ferry: ${f.reason}`.slice(0, 1000), severity: "warning", customId: customIdFor(`${vm.id}:${f.id}`, "full-only"), vmId: vm.id })
      .catch((err: unknown) => log.warn({ err, vm: vm.name }, "could not post the full-only warning"));
  }

  // Resume a READY engine backup of the interrupted attempt; otherwise close it and start over.
  // Only within one engine backup: its disks share one checkpoint, so the layers it placed and the
  // ones still to come make one consistent restore point. A layer of a closed backup cannot be
  // combined with one from a new backup (two checkpoints, two points in time): that is a new attempt.
  let resuming = false;
  await forgetMissingLayers(s);
  const run0 = s.run;
  if (run0.method === "backup" && run0.backupId && run0.backupClosed && forceFull === undefined && allPlaced(run0, plan.included)) {
    // Every disk is in the store and the engine backup was finalized: the previous delivery died
    // after the work (e.g. a NATS blip before `transferred` was journaled). Nothing to move again.
    log.info({ vm: vm.name, backup: run0.backupId }, "every disk of this attempt is already stored; nothing to transfer again");
    return;
  }
  if (run0.method !== "snapshot" && run0.backupId && !run0.backupClosed) {
    const b = await engine.getBackup(vm.id, run0.backupId).catch(() => undefined);
    // A fallback to full within this delivery must not resume the incremental it replaces.
    const sameDecision = forceFull === undefined || (req.mode === "full" && run0.mode === "full");
    if (b?.phase === "ready" && sameDecision) resuming = true;
    else await closeRun(run0, engine, deps.runs, { onError: "warn", log }).then(() => s.reload());
  } else if (run0.snapshotId && !run0.snapshotRemoved) {
    await closeRun(run0, engine, deps.runs, { onError: "warn", log }).then(() => s.reload());
  }
  for (const t of openTransfers(s.run)) {
    await engine.finishTransfer(t.id).catch((err: unknown) => log.warn({ err, transfer: t.id }, "could not close a leftover transfer"));
    await s.change((r) => withTransfer(r, { ...t, state: "closed" }));
  }
  for (const d of s.run.disks) if (d.state === "downloading" && d.tmpPath) await deps.store.removeUnrecorded(d.tmpPath);

  if (s.run.method === "snapshot") {
    await dropUnrecordedLayers(s);
    return snapshotBackup(s, plan, chain, forceFull);
  }

  const checkpoints = await engine.checkpoints(vm.id);
  let mode: LayerMode;
  let reason: string | undefined;
  let fromCheckpointId: string | undefined;
  if (resuming) {
    mode = s.run.mode ?? "full";
    reason = s.run.reason;
    fromCheckpointId = s.run.fromCheckpointId;
  } else {
    const decision = decideMode({
      requested: forceFull ? "full" : (req.mode ?? "auto"), chain: chain.summary, checkpoints: checkpoints ?? [], policy: deps.policy(vm.name),
      now: deps.clock(), incrementalSupported: checkpoints !== undefined,
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
    await dropUnrecordedLayers(s);
    const attemptNo = s.run.attempt + 1;
    // Journal the client-chosen id BEFORE the POST: a crash in between still leaves its name.
    await s.change((r) => ({
      ...r, phase: "backup", method: "backup", attempt: attemptNo, backupId: backupIdFor(r.runId, attemptNo), backupClosed: false, mode, reason, fromCheckpointId,
      checkpointId: undefined, disks: plan.included.map((d) => ({ id: d.id, state: "pending" as const })),
    }));
  }
  const backupId = s.run.backupId!;
  let failure: unknown;
  try {
    const backup = await startEngineBackup(
      engine, vm,
      { id: backupId, fromCheckpointId, description: engineDescription(deps.deployment, vm.name, s.run.runId), diskIds: plan.included.map((d) => d.id) },
      { resuming, signal: ctx.signal, onRefused: () => s.change((r) => ({ ...r, backupClosed: true })) },
    );
    await s.change((r) => ({ ...r, checkpointId: backup.toCheckpointId }));
    // The OVF of this restore point, named like its layers (by checkpoint).
    await deps.store.saveOvf(vm.name, pointFileKey({ id: s.run.restorePoint!, checkpointId: backup.toCheckpointId }), await engine.vmOvf(vm.id));
    const modes = new Map((await engine.backupDisks(vm.id, backupId)).map((d) => [d.id, d.backupMode]));
    for (const d of plan.included) {
      if (s.run.disks.find((x) => x.id === d.id)?.state === "placed") continue;
      const lm = diskLayerMode({ backupMode: mode, engineBackupMode: modes.get(d.id), previousLayer: chain.diskLayers.get(d.id)?.path, alias: d.alias, fromCheckpointId });
      const diskReason = joinReasons(reason, lm.reason, plan.fullOnly.find((f) => f.id === d.id)?.reason);
      for (let t = 1; ; t++) {
        try {
          await moveDisk(s, chain, { disk: d, mode: lm.mode, reason: diskReason, source: { backupId }, diskCount: plan.included.length, skipped: plan.skipped });
          break;
        } catch (err) {
          if (t < DISK_ATTEMPTS && isDiskRetryable(err) && !ctx.signal?.aborted) {
            log.warn({ err, vm: vm.name, disk: d.id, attempt: t }, "disk transfer failed; retrying with a new transfer");
            continue;
          }
          if (lm.mode === "incremental" && isBrokenIncremental(err)) {
            throw new NeedFullError(`incremental transfer of disk ${d.alias} failed (${redactText(err instanceof Error ? err.message : String(err))}); the checkpoint chain is broken`);
          }
          // New transfers may still get past it (a ticket the engine dropped): a later delivery
          // tries again, resuming this engine backup with the disks already stored.
          if (isDiskRetryable(err) && !(err instanceof TransientError)) {
            throw new TransientError("DISK_TRANSFER_FAILED", `disk ${d.alias}: ${t} transfers failed, the last with: ${redactText(err instanceof Error ? err.message : String(err))}`, { vm: vm.name, diskId: d.id }, { cause: err });
          }
          throw err;
        }
      }
    }
  } catch (err) {
    failure = err;
  } finally {
    // A retry of this run is due and some disks are stored: keep the engine backup READY for it,
    // so the retry moves only the missing disks (handler.ts keeps the VM lease for the run).
    const keep = failure !== undefined && resumable(failure, ctx.lastAttempt === true) && s.run.disks.some((d) => d.state === "placed");
    if (!keep) await s.change((r) => ({ ...r, phase: r.phase === "failed" ? r.phase : "finalizing" }));
    await closeRun(s.run, engine, deps.runs, { onError: "warn", mustFinalize: failure === undefined, keepBackup: keep, log });
    await s.reload();
    if (keep) log.warn({ vm: vm.name, backup: backupId, placed: s.run.disks.filter((d) => d.state === "placed").map((d) => d.id) }, "attempt failed; the engine backup stays ready so the retry moves only the missing disks");
  }
  if (failure !== undefined) {
    if (failure instanceof NeedFullError && fromCheckpointId) {
      // Ferry's checkpoint for this chain is useless now; remove it so the next run does not try it.
      await engine.removeCheckpoint(vm.id, fromCheckpointId).catch(() => undefined);
    }
    throw failure;
  }
}

/** A failure the next delivery of this run may get past by resuming (not the last one, not a refusal). */
function resumable(err: unknown, lastAttempt: boolean): boolean {
  // A full or read-only store ends the run (handler.ts makes it final): nothing to keep open for.
  return !lastAttempt && !isPermanent(err) && !isNoSpace(err) && !isReadOnlyFs(err) && !(err instanceof NeedFullError) && !(err instanceof NoBackupApiError);
}

/** Every included disk has a placed layer (with its event) in the journal. */
function allPlaced(run: BackupRun, disks: readonly { id: string }[]): boolean {
  return disks.every((d) => {
    const j = run.disks.find((x) => x.id === d.id);
    return j?.state === "placed" && !!j.layer && !!j.event;
  });
}

/** A journaled layer that is not in the store (removed, lost) is moved again: it counts as pending. */
async function forgetMissingLayers(s: AttemptScope): Promise<void> {
  for (const d of s.run.disks) {
    if (d.state !== "placed" || !d.layer) continue;
    const there = await s.deps.store.fileSize(s.deps.store.absolute(d.layer)).then(() => true, () => false);
    if (!there) {
      s.log.warn({ vm: s.vm.name, disk: d.id, layer: d.layer }, "a stored layer of this run is missing; the disk is moved again");
      await s.change((r) => withDisk(r, { id: d.id, state: "pending" }));
    }
  }
}

/** Layers placed by an attempt that is being replaced: no restore point will ever reference them. */
async function dropUnrecordedLayers(s: AttemptScope): Promise<void> {
  for (const d of s.run.disks) if (d.layer) await s.deps.store.removeUnrecorded(s.deps.store.absolute(d.layer));
}
