/**
 * The engine session of one attempt: start the engine backup (or resume the READY one a
 * redelivery left behind) and turn the engine's typed refusals into what the run does next.
 * Closing is pipeline/close-run.ts, shared with the reconciler.
 */
import {
  BackupFailedError,
  CheckpointInvalidError,
  EngineConflictError,
  EngineFaultError,
  IncrementalUnsupportedError,
  NotFoundError,
  VmLockedError,
} from "../../adapters/ovirt/mod.ts";
import type { BackupEngine, EngineBackup, EngineVm } from "../../pipeline/ports.ts";
import { NeedFullError, NoBackupApiError, VmNotBackupableError } from "./errors.ts";

export interface SessionSpec {
  readonly id: string;
  readonly fromCheckpointId?: string | undefined;
  readonly description: string;
  readonly diskIds: string[];
}

/**
 * POST the backup with the journaled id and wait for `ready`. `resuming`: the backup is already
 * there (READY), so any failure is the engine's to report as is. Returns the ready backup;
 * `onRefused` runs before a refusal is turned into a fallback (the caller journals that nothing
 * is left open on the engine).
 */
export async function startEngineBackup(
  engine: BackupEngine,
  vm: EngineVm,
  spec: SessionSpec,
  o: { resuming: boolean; signal?: AbortSignal | undefined; onRefused: () => Promise<unknown> },
): Promise<EngineBackup> {
  try {
    return await engine.startBackup(vm.id, spec, o.signal);
  } catch (err) {
    if (o.resuming) throw err;
    if (err instanceof CheckpointInvalidError && spec.fromCheckpointId) {
      await o.onRefused();
      throw new NeedFullError(`the engine refused the incremental backup: ${err.message}`);
    }
    if (err instanceof IncrementalUnsupportedError) {
      await o.onRefused();
      throw new NoBackupApiError(err.message);
    }
    // The engine backup ended `failed` before it was ready: for an incremental that is the
    // checkpoint redefinition failing (ovirt-api.md §5.7), so a full is needed.
    if (err instanceof BackupFailedError && spec.fromCheckpointId) {
      throw new NeedFullError(`the incremental backup failed on the engine (checkpoint ${spec.fromCheckpointId})`);
    }
    if (err instanceof VmLockedError) throw err; // another operation holds the VM: retry later
    if (err instanceof EngineConflictError) throw new VmNotBackupableError(vm.name, err.message);
    if (err instanceof EngineFaultError && !(err instanceof NotFoundError) && err.status === 400) throw new VmNotBackupableError(vm.name, err.message);
    throw err;
  }
}
