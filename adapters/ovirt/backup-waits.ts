/**
 * Backup and checkpoint waits (ovirt-api.md §5), explicit state machines (style.md §7), and
 * withBackup, which finalizes on every way out.
 */
import { TransientError } from "../../contracts/errors.ts";
import type { EngineClient } from "./client.ts";
import {
  AlreadyFinalizedError,
  BackupFailedError,
  CheckpointMissingError,
  BackupTimeoutError,
  CheckpointTimeoutError,
  NotFoundError,
} from "./errors.ts";
import type { Backup, BackupPhase, Disk } from "./models.ts";
import type { StartBackup } from "./ops-backups.ts";
import { CLEANUP_TIMEOUT_MS, WAIT_DEFAULTS, bestEffort, clock, isPollHiccup, pollUntilGone, type WaitOptions } from "./wait-clock.ts";

// ---- backups (ovirt-api.md §5) ------------------------------------------------------------------

async function explainBackup(engine: EngineClient, backupId: string): Promise<string> {
  // The SDK reads the newest event mentioning the backup to say why it failed.
  try {
    const events = await engine.events.search(backupId, { max: 5, signal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS) });
    return events[0]?.description ?? "";
  } catch {
    return "";
  }
}

/**
 * Polls a backup until `target`. `failed` or a 404 → BackupFailedError (with the latest engine
 * event about it). Reaching `ready` does not finalize anything: whoever started the backup
 * finalizes it in `finally` (finalizeBackup, or use withBackup).
 */
export async function waitForBackupPhase(
  engine: EngineClient,
  vmId: string,
  backupId: string,
  target: "ready" | "succeeded",
  o: WaitOptions = {},
): Promise<Backup> {
  const t = clock(engine, o, target === "ready" ? WAIT_DEFAULTS.backupReadyMs : WAIT_DEFAULTS.backupFinishedMs);
  let phase = "initializing";
  let lastError: unknown;
  for (;;) {
    let backup: Backup | undefined;
    try {
      backup = await engine.backups.get(vmId, backupId, { signal: o.signal });
    } catch (err) {
      if (err instanceof NotFoundError) {
        throw new BackupFailedError(vmId, backupId, phase, (await explainBackup(engine, backupId)) || "the backup was removed");
      }
      if (!isPollHiccup(err)) throw err;
      lastError = err;
    }
    if (backup) {
      phase = backup.phase;
      switch (backup.phase as BackupPhase) {
        case "initializing":
        case "starting":
          break;
        case "ready":
          if (target === "ready") return backup;
          break; // finalize not processed yet
        case "finalizing":
          if (target === "ready") throw new BackupFailedError(vmId, backupId, phase, "finalizing before it was ready");
          break;
        case "succeeded":
          if (target === "succeeded") return backup;
          throw new BackupFailedError(vmId, backupId, phase, "finished before it was ready");
        case "failed":
          throw new BackupFailedError(vmId, backupId, phase, await explainBackup(engine, backupId));
        default:
          break; // a phase this client does not know yet: keep waiting until the deadline
      }
    }
    if (t.expired()) throw new BackupTimeoutError(vmId, backupId, phase, target, { cause: lastError });
    await t.pause();
  }
}

/**
 * Finalizes a backup and waits for `succeeded`. Safe to call in `finally` and more than once:
 * a 409 (an image transfer of the backup is still open) is retried until the deadline, and
 * "already in '<phase>' phase" counts as finalize requested. A failed backup → BackupFailedError.
 */
export async function finalizeBackup(
  engine: EngineClient,
  vmId: string,
  backupId: string,
  o: WaitOptions = {},
): Promise<Backup> {
  const t = clock(engine, o, WAIT_DEFAULTS.backupFinishedMs);
  let state: "requesting" | "waiting" = "requesting";
  let phase = "ready";
  let lastError: unknown;
  for (;;) {
    switch (state) {
      case "requesting":
        try {
          await engine.backups.finalize(vmId, backupId, { signal: o.signal });
          state = "waiting";
        } catch (err) {
          if (err instanceof AlreadyFinalizedError) {
            state = "waiting";
          } else if (err instanceof NotFoundError) {
            throw new BackupFailedError(vmId, backupId, phase, "the backup no longer exists");
          } else if (err instanceof TransientError) {
            lastError = err; // 409: a transfer is still open; 5xx: try again
          } else {
            throw err;
          }
        }
        break;
      case "waiting": {
        let backup: Backup | undefined;
        try {
          backup = await engine.backups.get(vmId, backupId, { signal: o.signal });
        } catch (err) {
          if (err instanceof NotFoundError) {
            throw new BackupFailedError(vmId, backupId, phase, "the backup vanished while finalizing");
          }
          if (!isPollHiccup(err)) throw err;
          lastError = err;
        }
        if (backup) {
          phase = backup.phase;
          switch (backup.phase as BackupPhase) {
            case "succeeded":
              return backup;
            case "failed":
              throw new BackupFailedError(vmId, backupId, phase, await explainBackup(engine, backupId));
            case "initializing":
            case "starting":
            case "ready":
            case "finalizing":
            default:
              break; // hybrid backups merge their snapshot while finalizing; this can take a while
          }
        }
        break;
      }
    }
    if (t.expired()) throw new BackupTimeoutError(vmId, backupId, phase, "succeeded", { cause: lastError });
    await t.pause();
  }
}

export interface BackupSession {
  /** The backup in phase `ready`; `to_checkpoint_id` is set here (absent when only raw disks). */
  readonly backup: Backup;
  /** The backup's disks with their `backup_mode`. */
  readonly disks: Disk[];
}

/**
 * Start → wait ready → `fn` → finalize → wait succeeded. The backup is finalized on every
 * way out; when `fn` (or the wait) fails, its error wins over a finalize failure.
 * Record `spec.id` (choose it with randomUUID) in the run journal before calling this.
 */
export async function withBackup<T>(
  engine: EngineClient,
  vmId: string,
  spec: StartBackup,
  fn: (session: BackupSession) => Promise<T>,
  o: WaitOptions & { readyTimeoutMs?: number; finalizeTimeoutMs?: number } = {},
): Promise<{ result: T; backup: Backup }> {
  const started = await engine.backups.start(vmId, spec, { signal: o.signal });
  let result: T;
  try {
    const ready = await waitForBackupPhase(engine, vmId, started.id, "ready", { ...o, timeoutMs: o.readyTimeoutMs });
    const disks = await engine.backups.disks(vmId, started.id, { signal: o.signal });
    result = await fn({ backup: ready, disks });
  } catch (err) {
    await bestEffort((signal) =>
      finalizeBackup(engine, vmId, started.id, { intervalMs: o.intervalMs, timeoutMs: o.finalizeTimeoutMs, signal }),
    );
    throw err;
  }
  const backup = await finalizeBackup(engine, vmId, started.id, { ...o, timeoutMs: o.finalizeTimeoutMs });
  return { result, backup };
}

// ---- checkpoints ----------------------------------------------------------------------------------

/** Polls GET until 404 (ovirt-api.md §5.6). */
export async function waitForCheckpointGone(
  engine: EngineClient,
  vmId: string,
  checkpointId: string,
  o: WaitOptions = {},
): Promise<void> {
  await pollUntilGone(
    clock(engine, o, WAIT_DEFAULTS.checkpointGoneMs),
    "created",
    // `created`, or `invalid` briefly during a cold delete: still there either way.
    async () => (await engine.checkpoints.get(vmId, checkpointId, { signal: o.signal })).state ?? "unknown",
    (state, cause) => new CheckpointTimeoutError(vmId, checkpointId, state, { cause }),
    (err) => err instanceof NotFoundError,
  );
}

/** DELETE a checkpoint and wait until it is gone. A checkpoint that is already gone counts as deleted. */
export async function deleteCheckpoint(
  engine: EngineClient,
  vmId: string,
  checkpointId: string,
  o: WaitOptions = {},
): Promise<void> {
  try {
    await engine.checkpoints.remove(vmId, checkpointId, { signal: o.signal });
  } catch (err) {
    if (err instanceof NotFoundError || err instanceof CheckpointMissingError) return;
    throw err;
  }
  await waitForCheckpointGone(engine, vmId, checkpointId, o);
}
