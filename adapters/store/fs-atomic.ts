/**
 * Durable file placement on the backup volume: write under `.tmp-<uuid>` in the target's own
 * directory (so the rename never crosses a filesystem), fsync the file, rename, fsync the
 * directory. After a crash a file is either absent or complete; stray `.tmp-*` names are
 * removed by sweep().
 */
import { randomUUID } from "node:crypto";
import { chmod, lstat, mkdir, open, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";

export const TEMP_PREFIX = ".tmp-";
export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

export function tempName(): string {
  return `${TEMP_PREFIX}${randomUUID()}`;
}

/** mkdir -p with 0700 for every directory it creates. */
export async function ensureDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: DIR_MODE });
}

export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(path);
  await ensureDir(dir);
  const tmp = join(dir, tempName());
  try {
    const fh = await open(tmp, "wx", FILE_MODE);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncPath(dir);
}

/** Make an existing file durable under its final name: 0600, fsync, rename, fsync the directory. */
export async function placeFile(tmp: string, path: string): Promise<void> {
  await chmod(tmp, FILE_MODE);
  await fsyncPath(tmp);
  await rename(tmp, path);
  await fsyncPath(dirname(path));
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
