/**
 * Scratch directories (NBD sockets) of transfers. A SIGKILLed worker cannot remove its own, so
 * each name carries its process id, and a process starting up removes those whose process is
 * gone. Only this process's own pid namespace is judged: another live process's dirs are kept.
 */
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type ScratchKind = "dl" | "src";

const OWNED = /^ferry-(?:dl|src)-(\d+)-[A-Za-z0-9]{6}$/;
/** Names from before the pid was in them: removed only when clearly old. */
const LEGACY = /^ferry-(?:dl|src)-[A-Za-z0-9]{6}$/;
const LEGACY_AGE_MS = 24 * 3_600_000;

export function scratchDir(kind: ScratchKind, dir: string = tmpdir()): Promise<string> {
  return mkdtemp(join(dir, `ferry-${kind}-${process.pid}-`));
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/** Remove scratch dirs left by processes that are gone; returns the removed paths. */
export async function sweepScratch(o: { dir?: string; now?: Date } = {}): Promise<string[]> {
  const dir = o.dir ?? tmpdir();
  const now = (o.now ?? new Date()).getTime();
  const removed: string[] = [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const owned = OWNED.exec(name);
    const path = join(dir, name);
    if (owned) {
      if (processAlive(Number(owned[1]))) continue;
    } else if (LEGACY.test(name)) {
      const st = await stat(path).catch(() => undefined);
      if (!st || now - st.mtimeMs < LEGACY_AGE_MS) continue;
    } else continue;
    await rm(path, { recursive: true, force: true }).then(() => removed.push(path), () => undefined);
  }
  return removed;
}
