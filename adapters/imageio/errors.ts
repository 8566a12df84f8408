/**
 * Typed errors of the imageio data client. The ticket id in the transfer URL is the only
 * credential for the disk, and imageio echoes it in its messages ("No such ticket <id>"), so every
 * message and cause goes through a Redactor that knows the ticket, plus redactText.
 */
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { REDACTED, redactText } from "../secrets.ts";

/** Removes a known ticket id (anywhere, not only after /images/) and the usual secret shapes. */
export class Redactor {
  readonly #secrets: string[];
  constructor(secrets: Array<string | undefined>) {
    this.#secrets = [...new Set(secrets.filter((s): s is string => !!s && s.length >= 4 && s !== "*"))];
  }
  text(s: string): string {
    let out = s;
    for (const secret of this.#secrets) out = out.split(secret).join(REDACTED);
    return redactText(out);
  }
  /** A copy of a low-level error safe to keep as `cause`: redacted message, code, no nested chain. */
  cause(err: unknown): Error {
    const src = err instanceof Error ? err : new Error(String(err));
    const copy = new Error(this.text(src.message));
    copy.name = src.name;
    const code = (src as { code?: unknown }).code;
    if (typeof code === "string") Object.assign(copy, { code });
    return copy;
  }
}

export interface RequestInfo {
  readonly method: string;
  /** Redacted URL (scheme, host, port, /images/***). */
  readonly url: string;
  readonly status?: number | undefined;
  readonly offset?: number | undefined;
  readonly length?: number | undefined;
}

function where(r: RequestInfo): string {
  const range = r.offset === undefined ? "" : ` [${r.offset}+${r.length ?? 0}]`;
  return `${r.method} ${r.url}${range}`;
}

function fields(r: RequestInfo): Record<string, unknown> {
  return { method: r.method, url: r.url, status: r.status, offset: r.offset, length: r.length };
}

/** 403: the ticket is unknown, expired, cancelled or forbids the operation. Never retried. */
export class ImageioForbiddenError extends PermanentError {
  constructor(r: RequestInfo, message: string) {
    super("IMAGEIO_FORBIDDEN", `${where(r)} → 403 ${message}`, fields(r));
  }
}

/** 400: the request was invalid. Never retried. */
export class ImageioBadRequestError extends PermanentError {
  constructor(r: RequestInfo, message: string) {
    super("IMAGEIO_BAD_REQUEST", `${where(r)} → 400 ${message}`, fields(r));
  }
}

/** 416: the range is outside the image. Never retried. */
export class ImageioRangeError extends PermanentError {
  constructor(r: RequestInfo, message: string) {
    super("IMAGEIO_RANGE", `${where(r)} → 416 ${message}`, fields(r));
  }
}

/** `extents?context=dirty` on a ticket without dirty extents (not an incremental backup disk). */
export class DirtyExtentsUnsupportedError extends PermanentError {
  constructor(r: RequestInfo, message: string) {
    super("IMAGEIO_DIRTY_UNSUPPORTED", `${where(r)} → 404 ${message}`, fields(r));
  }
}

/** The server lacks a feature (no OPTIONS, no extents, 404/405 on a route). */
export class ImageioUnsupportedError extends PermanentError {
  constructor(r: RequestInfo, message: string) {
    super("IMAGEIO_UNSUPPORTED", `${where(r)}: ${message}`, fields(r));
  }
}

/** 5xx. For PUT, imageio says: resend everything since the last flush. */
export class ImageioServerError extends TransientError {
  constructor(r: RequestInfo, message: string) {
    super("IMAGEIO_SERVER", `${where(r)} → ${r.status ?? 500} ${message}`, fields(r));
  }
}

/** Refused, reset, timed out or closed before the full answer arrived. */
export class ImageioConnectionError extends TransientError {
  constructor(r: RequestInfo, message: string, cause?: Error) {
    super("IMAGEIO_CONNECTION", `${where(r)}: ${message}`, fields(r), cause ? { cause } : undefined);
  }
}

/** TLS verification of the imageio server failed (wrong CA, name mismatch). */
export class ImageioTlsError extends PermanentError {
  constructor(r: RequestInfo, cause: Error) {
    super(
      "IMAGEIO_TLS",
      `${where(r)}: TLS verification failed (${String((cause as { code?: unknown }).code ?? cause.message)})`,
      fields(r),
      { cause },
    );
  }
}

/** An answer that breaks the protocol (wrong Content-Range, bad JSON, extents with gaps). */
export class ImageioProtocolError extends PermanentError {
  constructor(r: RequestInfo, message: string) {
    super("IMAGEIO_PROTOCOL", `${where(r)}: ${message}`, fields(r));
  }
}

/** Any other unexpected status. */
export class ImageioHttpError extends PermanentError {
  constructor(r: RequestInfo, message: string) {
    super("IMAGEIO_HTTP", `${where(r)} → ${r.status ?? 0} ${message}`, fields(r));
  }
}

/**
 * The typed error for an answer's status (`info.status`), with `message` (the body's text or
 * `HTTP <status>`): the one mapping for the client and the range reader. `on404`: a request
 * whose 404 means something of its own (dirty extents without incremental backup).
 */
export function statusError(info: RequestInfo, message: string, on404?: (i: RequestInfo, m: string) => Error): Error {
  const status = info.status ?? 0;
  if (status < 300) return new ImageioProtocolError(info, `unexpected status ${status}`);
  switch (status) {
    case 400:
      return new ImageioBadRequestError(info, message);
    case 403:
      return new ImageioForbiddenError(info, message);
    case 404:
      return on404 ? on404(info, message) : new ImageioUnsupportedError(info, `404 ${message}`);
    case 405:
      return new ImageioUnsupportedError(info, `405 ${message}`);
    case 416:
      return new ImageioRangeError(info, message);
    default:
      return status >= 500 ? new ImageioServerError(info, message) : new ImageioHttpError(info, message);
  }
}
