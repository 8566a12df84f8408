/**
 * Ferry's error vocabulary. Two kinds decide what the runtime does with a message:
 * a PermanentError terminates it (and the failure event carries its `code`), a
 * TransientError hands it back to JetStream for a later retry. Anything else thrown
 * is treated as transient, because an unknown failure may well pass.
 *
 * Domain errors extend one of the two and carry a stable `code` plus the fields an
 * operator needs (ids, phase), never a secret.
 */
export class FerryError extends Error {
  readonly code: string;
  readonly fields: Readonly<Record<string, unknown>>;
  constructor(code: string, message: string, fields: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.fields = Object.freeze({ ...fields });
  }
}

/** Retrying cannot help: bad input, a refusal by the engine, a corrupt image. */
export class PermanentError extends FerryError {}

/** Retrying may help: a timeout, a dropped connection, a 5xx, a lock held by someone else. */
export class TransientError extends FerryError {
  readonly retryAfterMs: number | undefined;
  constructor(
    code: string,
    message: string,
    fields: Record<string, unknown> = {},
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(code, message, fields, options);
    this.retryAfterMs = options?.retryAfterMs;
  }
}

export function isPermanent(err: unknown): err is PermanentError {
  return err instanceof PermanentError;
}

/** A stable code for any thrown value, for failure events and logs. */
export function errorCode(err: unknown): string {
  if (err instanceof FerryError) return err.code;
  if (err && typeof err === "object" && "code" in err && typeof (err as { code: unknown }).code === "string") {
    return (err as { code: string }).code;
  }
  return "INTERNAL";
}
