/**
 * One writer per VM folder: `<store>/<vm>/.lock`, created with O_EXCL, holding who took it.
 * The holder touches it while working; a lock whose holder process is gone (same host) or that
 * was not touched for `staleMs` (another host) is taken over. Within one process, callers queue
 * on a promise chain instead of polling the file.
 */
import { open, readFile, rm, stat, utimes } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { StoreBusyError } from "./errors.ts";

export const LOCK_FILE = ".lock";

export interface LockOptions {
  /** A lock untouched for this long is stale. Default 5 minutes. */
  staleMs?: number;
  /** Give up waiting after this long (StoreBusyError). Default 30 s. */
  waitMs?: number;
  signal?: AbortSignal;
}

const queues = new Map<string, Promise<unknown>>();

export async function withDirLock<T>(dir: string, label: string, fn: () => Promise<T>, o: LockOptions = {}): Promise<T> {
  const prev = queues.get(dir) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const chained = prev.then(() => mine);
  queues.set(dir, chained);
  try {
    await prev.catch(() => undefined);
    return await holdFileLock(dir, label, fn, o);
  } finally {
    release();
    if (queues.get(dir) === chained) queues.delete(dir);
  }
}

async function holdFileLock<T>(dir: string, label: string, fn: () => Promise<T>, o: LockOptions): Promise<T> {
  const staleMs = o.staleMs ?? 5 * 60_000;
  const path = join(dir, LOCK_FILE);
  const deadline = Date.now() + (o.waitMs ?? 30_000);
  const me = { pid: process.pid, host: hostname(), label, since: new Date().toISOString() };
  for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
    o.signal?.throwIfAborted();
    try {
      const fh = await open(path, "wx", 0o600);
      try {
        await fh.writeFile(JSON.stringify(me));
      } finally {
        await fh.close();
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = await readHolder(path);
    if (holder && (await isStale(path, holder, staleMs))) {
      await rm(path, { force: true });
      continue;
    }
    if (Date.now() >= deadline) {
      throw new StoreBusyError(dir.split("/").pop() ?? dir, holder ? `${holder.label} (pid ${holder.pid} on ${holder.host})` : "another process");
    }
    await new Promise((r) => setTimeout(r, delay));
  }
  const beat = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => undefined);
  }, Math.max(1000, Math.floor(staleMs / 3)));
  beat.unref();
  try {
    return await fn();
  } finally {
    clearInterval(beat);
    await rm(path, { force: true });
  }
}

/**
 * Remove a lock file whose holder is provably gone, without waiting for it to age: one naming this
 * process while no caller in this process holds the folder (its release failed, e.g. on a store
 * that was read-only for a while), or a dead process on this host. Another host's lock is left
 * to age (withDirLock takes it over after `staleMs`). True when a lock was removed.
 */
export async function clearStaleLock(dir: string): Promise<boolean> {
  if (queues.has(dir)) return false;
  // Hold the in-process queue while judging, so no caller here takes the lock in between.
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  queues.set(dir, mine);
  try {
    const path = join(dir, LOCK_FILE);
    const h = await readHolder(path);
    if (!h || h.host !== hostname() || h.pid <= 0) return false;
    let gone = h.pid === process.pid;
    if (!gone) {
      try {
        process.kill(h.pid, 0);
      } catch (err) {
        gone = (err as NodeJS.ErrnoException).code === "ESRCH";
      }
    }
    if (!gone) return false;
    await rm(path, { force: true });
    return true;
  } finally {
    release();
    if (queues.get(dir) === mine) queues.delete(dir);
  }
}

interface Holder {
  pid: number;
  host: string;
  label: string;
}

async function readHolder(path: string): Promise<Holder | undefined> {
  try {
    const v = JSON.parse(await readFile(path, "utf8")) as Partial<Holder>;
    return { pid: Number(v.pid) || 0, host: String(v.host ?? "?"), label: String(v.label ?? "?") };
  } catch {
    // Unreadable or half-written: judge it by age alone.
    return { pid: 0, host: "?", label: "unknown" };
  }
}

async function isStale(path: string, h: Holder, staleMs: number): Promise<boolean> {
  // Same process: callers queue in memory, so a file with our own pid is a leftover (pid reuse).
  if (h.host === hostname() && h.pid === process.pid) return true;
  if (h.host === hostname() && h.pid > 0) {
    try {
      process.kill(h.pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") return true;
    }
  }
  try {
    return Date.now() - (await stat(path)).mtimeMs > staleMs;
  } catch {
    return true;
  }
}
