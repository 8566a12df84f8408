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
  constructor(f: EngineFault) {
    super("ENGINE_CONFLICT", faultMessage(f), faultFields(f));
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

/** TLS verification of the engine failed: wrong or rotated CA, name mismatch, expired certificate. */
export class EngineTlsError extends PermanentError {
  constructor(engine: string, cause: Error) {
    super(
      "ENGINE_TLS",
      `TLS verification of ${engine} failed (${String((cause as { code?: unknown }).code ?? cause.message)}); ` +
        "is the engine CA current? Fetch it again with `ferry cert fetch`",
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
