/**
 * Phase waits as explicit state machines (style.md §7): one loop per wait, a monotonic deadline
 * (performance.now()), a switch over every phase, and cleanup on every way out. A transient
 * failure of a poll (5xx, reset) does not end a wait; it is kept as the cause if time runs out.
 * Abort: every wait rejects with `signal.reason` as soon as the signal fires, after its cleanup.
 */
export { WAIT_DEFAULTS, type WaitOptions } from "./wait-clock.ts";
export {
  finalizeTransfer,
  openTransfer,
  waitForTransfer,
  waitForTransferFinished,
  waitForTransferReady,
  type OpenTransferSpec,
  type TransferOutcome,
} from "./transfer-waits.ts";
export {
  deleteCheckpoint,
  finalizeBackup,
  waitForBackupPhase,
  waitForCheckpointGone,
  withBackup,
  type BackupSession,
} from "./backup-waits.ts";
export {
  createDisk,
  deleteSnapshot,
  takeSnapshot,
  waitForDiskOk,
  waitForSnapshotGone,
  waitForSnapshotOk,
  waitForVmStatus,
} from "./entity-waits.ts";
