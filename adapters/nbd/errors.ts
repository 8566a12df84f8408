import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { errnoName, type NbdErrnoName } from "./constants.ts";

/**
 * Errors the NBD client throws. A server error reply becomes an NbdError (retrying the
 * same request cannot help: EPERM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP) or an
 * NbdTransientError (the storage or server may recover: EIO, ENOMEM, ESHUTDOWN).
 * Both carry `errno` (the name) and `command`; `isNbdReplyError` matches either.
 */

export interface NbdReplyFields {
  errno: NbdErrnoName;
  errnoValue: number;
  command: string;
  offset: number;
  length: number;
  serverMessage?: string;
}

const TRANSIENT_ERRNO: ReadonlySet<NbdErrnoName> = new Set(["EIO", "ENOMEM", "ESHUTDOWN", "EUNKNOWN"]);

function replyMessage(f: NbdReplyFields): string {
  const detail = f.serverMessage ? `: ${f.serverMessage}` : "";
  return `NBD ${f.command} offset=${f.offset} length=${f.length} failed with ${f.errno}${detail}`;
}

export class NbdError extends PermanentError {
  readonly errno: NbdErrnoName;
  readonly command: string;
  constructor(f: NbdReplyFields) {
    super(`NBD_${f.errno}`, replyMessage(f), { ...f });
    this.errno = f.errno;
    this.command = f.command;
  }
}

export class NbdTransientError extends TransientError {
  readonly errno: NbdErrnoName;
  readonly command: string;
  constructor(f: NbdReplyFields) {
    super(`NBD_${f.errno}`, replyMessage(f), { ...f });
    this.errno = f.errno;
    this.command = f.command;
  }
}

export function nbdReplyError(
  errnoValue: number,
  command: string,
  offset: number,
  length: number,
  serverMessage?: string,
): NbdError | NbdTransientError {
  const errno = errnoName(errnoValue);
  const fields: NbdReplyFields = { errno, errnoValue, command, offset, length };
  if (serverMessage) fields.serverMessage = serverMessage;
  return TRANSIENT_ERRNO.has(errno) ? new NbdTransientError(fields) : new NbdError(fields);
}

export function isNbdReplyError(err: unknown): err is NbdError | NbdTransientError {
  return err instanceof NbdError || err instanceof NbdTransientError;
}

/** The connection went away (server exit, reset, kill) while requests were pending or afterwards. */
export class NbdDisconnectedError extends TransientError {
  constructor(message: string, fields: Record<string, unknown> = {}, cause?: unknown) {
    super("NBD_DISCONNECTED", message, fields, cause === undefined ? undefined : { cause });
  }
}

/** Could not reach the server at all (no socket, refused). */
export class NbdConnectError extends TransientError {
  constructor(message: string, fields: Record<string, unknown> = {}, cause?: unknown) {
    super("NBD_CONNECT_FAILED", message, fields, cause === undefined ? undefined : { cause });
  }
}

/** The server broke the protocol; the connection is closed. */
export class NbdProtocolError extends PermanentError {
  constructor(message: string, fields: Record<string, unknown> = {}) {
    super("NBD_PROTOCOL_ERROR", message, fields);
  }
}

/** Option negotiation failed (unknown export, policy, TLS required...). */
export class NbdOptionError extends PermanentError {
  readonly option: number;
  readonly reply: number;
  constructor(code: string, message: string, option: number, reply: number) {
    super(code, message, { option, reply });
    this.option = option;
    this.reply = reply;
  }
}

/** A call the client refuses before sending anything: bad range, read-only export, closed client. */
export class NbdUsageError extends PermanentError {
  constructor(code: string, message: string, fields: Record<string, unknown> = {}) {
    super(code, message, fields);
  }
}
