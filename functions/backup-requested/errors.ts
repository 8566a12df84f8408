/** The outcomes of a backup attempt that are not the engine's or the data plane's own errors. */
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { redactText } from "../../adapters/secrets.ts";

/** The engine refused the backup with its own reason: not retryable as is. */
export class VmNotBackupableError extends PermanentError {
  constructor(vm: string, why: string) {
    super("VM_NOT_BACKUPABLE", `VM ${vm} cannot be backed up now: ${redactText(why)}`, { vm });
  }
}

export class ChecksumMismatchError extends TransientError {
  constructor(diskId: string, local: string, source: string) {
    super("CHECKSUM_MISMATCH", `layer of disk ${diskId} has checksum ${local.slice(0, 16)}…, imageio says ${source.slice(0, 16)}…`, { diskId });
  }
}

/** The engine has no usable checkpoint or bitmap: this run goes on as a full backup. */
export class NeedFullError extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(reason);
    this.reason = reason;
  }
}

/** The engine cannot take this backup through the backup API: a snapshot-based full instead. */
export class NoBackupApiError extends Error {}

/** Several reasons as one line, each once. */
export function joinReasons(...rs: (string | undefined)[]): string | undefined {
  const s = rs.filter((r): r is string => !!r);
  return s.length ? [...new Set(s)].join("; ") : undefined;
}
