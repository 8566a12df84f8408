/**
 * Where a new layer is written before it is complete: a temporary name beside the final one
 * (same directory, so the relative backing path and the rename both stay valid), placed with
 * link+unlink so an existing file is never overwritten.
 */
import { randomBytes } from "node:crypto";
import { link, open, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { PermanentError } from "../contracts/errors.ts";

export class OutputExistsError extends PermanentError {
  constructor(path: string) {
    super("OUTPUT_EXISTS", `${path} already exists; refusing to overwrite it`, { path });
  }
}

export function tempPathFor(output: string): string {
  return join(dirname(output), `.${basename(output)}.part-${randomBytes(4).toString("hex")}`);
}

export async function assertAbsent(path: string): Promise<void> {
  try {
    await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  throw new OutputExistsError(path);
}

/** Atomically give `tmp` the name `output` (fails if `output` exists), then make the name durable. */
export async function placeNoClobber(tmp: string, output: string): Promise<void> {
  try {
    await link(tmp, output);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new OutputExistsError(output);
    throw err;
  }
  await rm(tmp, { force: true });
  const dir = await open(dirname(output), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
