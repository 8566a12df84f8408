/**
 * A file a command was told to read (an image, a CA bundle, a digest file) that is not there or
 * cannot be read is "something needed is missing": the README's exit 3, not a failed attempt (1)
 * nor a wrong command line (2). Checked before any work starts, so nothing is left half done.
 */
import { access, constants, readFile } from "node:fs/promises";
import { resolve } from "node:path";

/** The input file is missing or unreadable; `file` is the path as the operator gave it. */
export class InputFileMissingError extends Error {
  override readonly name = "InputFileMissingError";
  readonly what: string;
  readonly file: string;
  constructor(what: string, file: string, reason: string) {
    super(`${what} ${file} ${reason}`);
    this.what = what;
    this.file = file;
  }
}

/** The missing/unreadable reason for a file-system error code, undefined for any other error. */
function missingReason(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT" || code === "ENOTDIR") return "does not exist";
  if (code === "EACCES" || code === "EPERM") return `cannot be read (${code})`;
  return undefined;
}

/** Throws InputFileMissingError unless `file` (relative to `cwd`) exists and is readable. */
export async function requireInputFile(what: string, file: string, cwd: string): Promise<string> {
  const path = resolve(cwd, file);
  try {
    await access(path, constants.R_OK);
  } catch (err) {
    const reason = missingReason(err);
    if (reason) throw new InputFileMissingError(what, file, reason);
    throw err;
  }
  return path;
}

/** The text of `file` (relative to `cwd`); InputFileMissingError when it is missing or unreadable. */
export async function readInputFile(what: string, file: string, cwd: string): Promise<string> {
  try {
    return await readFile(resolve(cwd, file), "utf8");
  } catch (err) {
    const reason = missingReason(err);
    if (reason) throw new InputFileMissingError(what, file, reason);
    throw err;
  }
}
