/**
 * The hook endpoint's bearer token: where it comes from ($FERRY_HOOKS_TOKEN, else hooks.tokenFile)
 * and how a request's Authorization header is checked against it. The comparison runs over the
 * sha256 digests of both, so it takes the same time whatever the length or the first wrong byte.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFile, stat } from "node:fs/promises";

export const HOOKS_TOKEN_ENV = "FERRY_HOOKS_TOKEN";
/** Shorter tokens are refused: a hook endpoint is reachable from every VDSM host. */
export const MIN_TOKEN_LENGTH = 16;
const TOKEN_SHAPE = /^[\x21-\x7e]+$/; // printable ASCII, no spaces: it travels in a header

/** No usable token: the server must not start (the message says what to set). */
export class HooksTokenError extends Error {
  override readonly name: string = "HooksTokenError";
}

/** No token at all, or the token file is not there or cannot be read: something needed is missing. */
export class HooksTokenMissingError extends HooksTokenError {
  override readonly name: string = "HooksTokenMissingError";
}

/** A token was given but is refused (too short, or not printable ASCII without spaces). */
export class HooksTokenInvalidError extends HooksTokenError {
  override readonly name: string = "HooksTokenInvalidError";
}

export interface ResolvedToken {
  readonly token: string;
  /** Where it came from, for the start log line: `$FERRY_HOOKS_TOKEN` or the file's path. */
  readonly source: string;
  /** The token file is readable by group or others. */
  readonly warning?: string;
}

function checkShape(token: string, source: string): string {
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new HooksTokenInvalidError(`the token from ${source} is shorter than ${MIN_TOKEN_LENGTH} characters (make one: openssl rand -hex 32)`);
  }
  if (!TOKEN_SHAPE.test(token)) throw new HooksTokenInvalidError(`the token from ${source} must be printable ASCII without spaces`);
  return token;
}

/**
 * $FERRY_HOOKS_TOKEN, else the trimmed content of `tokenFile`. HooksTokenMissingError when neither
 * gives one (or the file cannot be read), HooksTokenInvalidError when the token is refused.
 */
export async function resolveHooksToken(o: { env: Readonly<Record<string, string | undefined>>; tokenFile?: string | undefined }): Promise<ResolvedToken> {
  const fromEnv = o.env[HOOKS_TOKEN_ENV]?.trim();
  if (fromEnv) return { token: checkShape(fromEnv, `$${HOOKS_TOKEN_ENV}`), source: `$${HOOKS_TOKEN_ENV}` };
  if (!o.tokenFile) {
    throw new HooksTokenMissingError(`no token: set $${HOOKS_TOKEN_ENV} or hooks.tokenFile in the config (the endpoint never runs without one)`);
  }
  let text: string;
  let mode: number;
  try {
    [text, { mode }] = await Promise.all([readFile(o.tokenFile, "utf8"), stat(o.tokenFile)]);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new HooksTokenMissingError(`hooks.tokenFile ${o.tokenFile} ${code === "ENOENT" ? "does not exist" : `cannot be read (${code ?? "error"})`}`);
  }
  const token = checkShape(text.trim(), o.tokenFile);
  const warning = (mode & 0o077) !== 0
    ? `${o.tokenFile} can be read by other users (mode ${(mode & 0o777).toString(8).padStart(4, "0")}): chmod 600 it`
    : undefined;
  return warning ? { token, source: o.tokenFile, warning } : { token, source: o.tokenFile };
}

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/** A checker for `Authorization: Bearer <token>` headers; holds only the token's digest. */
export function bearerChecker(token: string): (authorization: string | undefined) => boolean {
  const expected = digest(token);
  return (authorization) => {
    const m = authorization === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    // Digest something even without a token, so a missing header costs what a wrong one does.
    const given = digest(m?.[1] ?? "");
    return timingSafeEqual(expected, given) && m !== null;
  };
}
