/**
 * Typed errors of the engine client. Every message is built from engine-supplied text that has
 * been through `redactText` and from ids; never from the password, the token or a ticket URL.
 * Retry semantics follow the HTTP status: 400/403/404 are permanent, 409 (a lock held by someone
 * else) and 5xx/network are transient.
 */
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { redactText } from "../secrets.ts";

/** What the engine said about a failed request: `{reason, detail}` plus where it happened. */
export interface EngineFault {
  readonly status: number;
  readonly reason: string;
  /** The engine's detail text, e.g. "[Cannot backup VM. Checkpoint ID x doesn't exist.]". */
  readonly detail: string;
  readonly method: string;
  /** API path relative to /ovirt-engine/api, without the query string. */
  readonly path: string;
}

function faultMessage(f: EngineFault): string {
  const text = [f.reason, f.detail].filter((s) => s.length > 0).join(": ");
  return `${f.method} ${f.path} → ${f.status}${text ? ` ${text}` : ""}`;
}

function faultFields(f: EngineFault): Record<string, unknown> {
  return { status: f.status, reason: f.reason, detail: f.detail, method: f.method, path: f.path };
}

/** A 4xx fault (400 validation, 403 permission, ...) that retrying cannot fix. */
export class EngineFaultError extends PermanentError implements EngineFault {
  readonly status: number;
  readonly reason: string;
  readonly detail: string;
  readonly method: string;
  readonly path: string;
  constructor(f: EngineFault, code = "ENGINE_FAULT") {
    super(code, faultMessage(f), faultFields(f));
    this.status = f.status;
    this.reason = f.reason;
    this.detail = f.detail;
    this.method = f.method;
    this.path = f.path;
  }
}

/** 404: the entity does not exist (or no longer exists). */
export class NotFoundError extends EngineFaultError {
  constructor(f: EngineFault) {
    super(f, "ENGINE_NOT_FOUND");
  }
}

/** 409: the engine refused because of the current state (a lock, a running backup). Callers may retry later. */
export class EngineConflictError extends TransientError implements EngineFault {
  readonly status: number;
  readonly reason: string;
  readonly detail: string;
  readonly method: string;
  readonly path: string;
  constructor(f: EngineFault, code = "ENGINE_CONFLICT") {
    super(code, faultMessage(f), faultFields(f));
    this.status = f.status;
    this.reason = f.reason;
    this.detail = f.detail;
    this.method = f.method;
    this.path = f.path;
  }
}

/** 5xx from the engine. */
export class EngineServerError extends TransientError implements EngineFault {
  readonly status: number;
  readonly reason: string;
  readonly detail: string;
  readonly method: string;
  readonly path: string;
  constructor(f: EngineFault) {
    super("ENGINE_SERVER", faultMessage(f), faultFields(f));
    this.status = f.status;
    this.reason = f.reason;
    this.detail = f.detail;
    this.method = f.method;
    this.path = f.path;
  }
}

// ---- typed engine outcomes ------------------------------------------------------------------
// The engine says *why* only in its translated `detail` text (ovirt-api.md §1.4, §5.1, §5.4,
// §5.6, §5.7, §9). It is read here, once, from the status code and the documented message
// templates; callers match the classes with instanceof and never look at the text.

/** 400 on POST /vms/{id}/backups: `from_checkpoint_id` is unknown, invalid, or misses a disk (§5.1, §5.7). A full backup is needed. */
export class CheckpointInvalidError extends EngineFaultError {
  constructor(f: EngineFault) {
    super(f, "ENGINE_CHECKPOINT_INVALID");
  }
}

/** The engine cannot take incremental backups of this VM (cluster setting), or has no backup API at all (404 on the backups collection). */
export class IncrementalUnsupportedError extends EngineFaultError {
  /** True when the backup API itself is missing (older engine): only a snapshot-based backup works. */
  readonly noBackupApi: boolean;
  constructor(f: EngineFault) {
    super(f, f.status === 404 ? "ENGINE_NO_BACKUP_API" : "ENGINE_INCREMENTAL_UNSUPPORTED");
    this.noBackupApi = f.status === 404;
  }
}

/** 409: the VM (or its disks) is locked by another operation, typically a backup still open (§5.5). Retry later. */
export class VmLockedError extends EngineConflictError {
  constructor(f: EngineFault) {
    super(f, "ENGINE_VM_LOCKED");
  }
}

/** 400: an entity with the client-chosen id already exists (a redelivery that already created it). */
export class DuplicateIdError extends EngineFaultError {
  constructor(f: EngineFault) {
    super(f, "ENGINE_DUPLICATE_ID");
  }
}

/** 400 on finalize: the backup is already finalizing or finished (§5.4): finalize was asked before. */
export class AlreadyFinalizedError extends EngineFaultError {
  constructor(f: EngineFault) {
    super(f, "ENGINE_ALREADY_FINALIZED");
  }
}

/** 400 on DELETE of a checkpoint that does not exist (§5.6): it is gone, which is what the caller wanted. */
export class CheckpointMissingError extends EngineFaultError {
  constructor(f: EngineFault) {
    super(f, "ENGINE_CHECKPOINT_MISSING");
  }
}

/** 400 on POST /events: (origin, custom_id) was posted before (§9): the event is already there. */
export class DuplicateEventError extends EngineFaultError {
  constructor(f: EngineFault) {
    super(f, "ENGINE_DUPLICATE_EVENT");
  }
}

const BACKUPS_COLLECTION = /^\/vms\/[^/]+\/backups$/;
const BACKUP_FINALIZE = /^\/vms\/[^/]+\/backups\/[^/]+\/finalize$/;
const CHECKPOINT = /^\/vms\/[^/]+\/checkpoints\/[^/]+$/;

/** The typed error for an engine fault answer: the one place that reads the engine's text. */
export function engineFaultError(f: EngineFault): EngineHttpError {
  const d = f.detail;
  if (f.method === "POST" && BACKUPS_COLLECTION.test(f.path)) {
    if (f.status === 404) return new IncrementalUnsupportedError(f);
    if (f.status === 400 && /Incremental backup is not supported/i.test(d)) return new IncrementalUnsupportedError(f);
    if (f.status === 400 && /Checkpoint ID .* (doesn't exist|is invalid)|not included in the previous VM backup/i.test(d)) return new CheckpointInvalidError(f);
    if (f.status === 400 && /already exists/i.test(d)) return new DuplicateIdError(f);
    if (f.status === 409 && /during a backup operation|is locked|are locked/i.test(d)) return new VmLockedError(f);
  }
  if (f.method === "POST" && BACKUP_FINALIZE.test(f.path) && f.status === 400 && /already in .* phase/i.test(d)) return new AlreadyFinalizedError(f);
  if (f.method === "DELETE" && CHECKPOINT.test(f.path) && f.status === 400 && /doesn't exist|does not exist/i.test(d)) return new CheckpointMissingError(f);
  if (f.method === "POST" && f.path === "/events" && f.status === 400 && /custom id already exists/i.test(d)) return new DuplicateEventError(f);
  if (f.status === 404) return new NotFoundError(f);
  if (f.status === 409) return new EngineConflictError(f);
  if (f.status >= 500) return new EngineServerError(f);
  return new EngineFaultError(f);
}

/** Any HTTP-level error carrying the engine's `{reason, detail}`. */
export type EngineHttpError = EngineFaultError | EngineConflictError | EngineServerError;

export function isEngineHttpError(err: unknown): err is EngineHttpError {
  return err instanceof EngineFaultError || err instanceof EngineConflictError || err instanceof EngineServerError;
}

/** The engine could not be reached (refused, reset, timeout, DNS). */
export class EngineUnavailableError extends TransientError {
  constructor(engine: string, what: string, cause: Error) {
    super("ENGINE_UNAVAILABLE", `engine ${engine} unreachable during ${what}: ${cause.message}`, { engine }, { cause });
  }
}

/**
 * The engine is out (down, restarting, behind a proxy that answers for it) rather than refusing
 * this request: unreachable, or 502/503/504. Callers wait such an outage out against a time
 * budget instead of spending delivery attempts on it.
 */
export function isEngineOutage(err: unknown): boolean {
  return err instanceof EngineUnavailableError || (err instanceof EngineServerError && (err.status === 502 || err.status === 503 || err.status === 504));
}

/**
 * A call on a client that was closed (its process is stopping), or cut off by that close. Not an
 * engine outage: nothing will answer it, so waits stop instead of polling until their deadline.
 */
export class EngineClientClosedError extends PermanentError {
  constructor(engine: string, what: string) {
    super("ENGINE_CLIENT_CLOSED", `the client of engine ${engine} was closed; ${what} was not completed`, { engine });
  }
}

/** TLS verification of the engine failed: wrong or rotated CA, name mismatch, expired certificate. */
export class EngineTlsError extends PermanentError {
  constructor(engine: string, cause: Error) {
    super(
      "ENGINE_TLS",
      `TLS verification of ${engine} failed (${String((cause as { code?: unknown }).code ?? cause.message)}); ` +
        // A command that works as printed: the adapter knows the URL, not the engine's name in the
        // config, and a bare `ferry cert fetch` is a usage error. Doctor names both.
        "is the engine CA current? `ferry doctor --check certs` shows the CA the engine serves and the command that trusts it",
      { engine },
      { cause },
    );
  }
}

/** The engine answered something this client cannot read (not JSON, or not the documented shape). */
export class EngineProtocolError extends PermanentError {
  constructor(method: string, path: string, problem: string) {
    super("ENGINE_PROTOCOL", `${method} ${path}: unexpected response: ${redactText(problem)}`, { method, path });
  }
}

/** SSO login failed, or the engine rejected a freshly issued token. */
export class AuthError extends PermanentError {
  /** OAuth error code from the SSO (`access_denied`, `invalid_grant`, ...), or `rejected_token`. */
  readonly oauthError: string;
  constructor(engine: string, user: string, oauthError: string, description: string) {
    super(
      "ENGINE_AUTH",
      `engine ${engine}: authentication of ${user} failed: ${oauthError}${description ? `: ${redactText(description)}` : ""}`,
      { engine, user, oauthError },
    );
    this.oauthError = oauthError;
  }
}

/** More than one VM carries the name that was looked up. */
export class AmbiguousNameError extends PermanentError {
  constructor(kind: string, name: string, ids: string[]) {
    super("ENGINE_AMBIGUOUS_NAME", `${ids.length} ${kind}s are named ${JSON.stringify(name)}: ${ids.join(", ")}`, {
      kind,
      name,
      ids,
    });
  }
}

// ---- state-machine outcomes -------------------------------------------------------------------

export class TransferTimeoutError extends TransientError {
  readonly transferId: string;
  readonly phase: string;
  constructor(transferId: string, phase: string, waitingFor: string, options?: { cause?: unknown }) {
    super(
      "TRANSFER_TIMEOUT",
      `image transfer ${transferId} did not reach ${waitingFor} in time (last phase ${phase})`,
      { transferId, phase, waitingFor },
      options,
    );
    this.transferId = transferId;
    this.phase = phase;
  }
}

/** The transfer ended badly (finished_failure, paused_system, cancelled, removed, or the disk is gone). */
export class TransferFailedError extends TransientError {
  readonly transferId: string;
  readonly phase: string;
  constructor(transferId: string, phase: string, why: string) {
    super("TRANSFER_FAILED", `image transfer ${transferId} failed in phase ${phase}: ${why}`, { transferId, phase });
    this.transferId = transferId;
    this.phase = phase;
  }
}

export class BackupTimeoutError extends TransientError {
  readonly backupId: string;
  readonly phase: string;
  constructor(vmId: string, backupId: string, phase: string, waitingFor: string, options?: { cause?: unknown }) {
    super(
      "BACKUP_TIMEOUT",
      `backup ${backupId} of VM ${vmId} did not reach ${waitingFor} in time (last phase ${phase})`,
      { vmId, backupId, phase, waitingFor },
      options,
    );
    this.backupId = backupId;
    this.phase = phase;
  }
}

/** The engine backup failed or vanished. `detail` is the latest engine event about it, if any. */
export class BackupFailedError extends TransientError {
  readonly backupId: string;
  readonly phase: string;
  readonly detail: string;
  constructor(vmId: string, backupId: string, phase: string, detail: string) {
    super(
      "BACKUP_FAILED",
      `backup ${backupId} of VM ${vmId} failed (phase ${phase})${detail ? `: ${redactText(detail)}` : ""}`,
      { vmId, backupId, phase, detail: redactText(detail) },
    );
    this.backupId = backupId;
    this.phase = phase;
    this.detail = redactText(detail);
  }
}

export class DiskTimeoutError extends TransientError {
  constructor(diskId: string, status: string, options?: { cause?: unknown }) {
    super("DISK_TIMEOUT", `disk ${diskId} did not become ok in time (status ${status})`, { diskId, status }, options);
  }
}

/** The disk went `illegal` or was removed while we waited for it. */
export class DiskFailedError extends PermanentError {
  constructor(diskId: string, status: string) {
    super("DISK_FAILED", `disk ${diskId} failed: status ${status}`, { diskId, status });
  }
}

export class SnapshotTimeoutError extends TransientError {
  constructor(vmId: string, snapshotId: string, status: string, waitingFor: string, options?: { cause?: unknown }) {
    super(
      "SNAPSHOT_TIMEOUT",
      `snapshot ${snapshotId} of VM ${vmId} did not become ${waitingFor} in time (status ${status})`,
      { vmId, snapshotId, status, waitingFor },
      options,
    );
  }
}

export class SnapshotFailedError extends TransientError {
  constructor(vmId: string, snapshotId: string, status: string, why: string) {
    super("SNAPSHOT_FAILED", `snapshot ${snapshotId} of VM ${vmId} failed (status ${status}): ${why}`, {
      vmId,
      snapshotId,
      status,
    });
  }
}

export class CheckpointTimeoutError extends TransientError {
  constructor(vmId: string, checkpointId: string, state: string, options?: { cause?: unknown }) {
    super(
      "CHECKPOINT_TIMEOUT",
      `checkpoint ${checkpointId} of VM ${vmId} was not removed in time (state ${state})`,
      { vmId, checkpointId, state },
      options,
    );
  }
}

export class VmStatusTimeoutError extends TransientError {
  constructor(vmId: string, status: string, waitingFor: string, options?: { cause?: unknown }) {
    super(
      "VM_STATUS_TIMEOUT",
      `VM ${vmId} did not become ${waitingFor} in time (status ${status})`,
      { vmId, status, waitingFor },
      options,
    );
  }
}

/** The VM went somewhere it cannot come back from while we waited (e.g. removed). */
export class VmStatusError extends PermanentError {
  constructor(vmId: string, status: string, waitingFor: string) {
    super("VM_STATUS", `VM ${vmId} cannot become ${waitingFor}: status ${status}`, { vmId, status, waitingFor });
  }
}

/** The CA could not be fetched or parsed. */
export class EngineCaError extends PermanentError {
  constructor(engine: string, problem: string) {
    super("ENGINE_CA", `engine CA from ${engine}: ${redactText(problem)}`, { engine });
  }
}
