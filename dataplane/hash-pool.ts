/**
 * Block hashing off the transfer's thread. sha256 of every block (zero parts included, which the
 * exact checksum needs) was the largest single CPU cost on the thread that also runs TLS and the
 * NBD socket; a small fixed pool of worker threads takes it. Transfer buffers are
 * SharedArrayBuffer-backed (pool.ts), so a job carries a view of the buffer, never a copy: the
 * thread hashes while the NBD write or the PUT of the same bytes is on its way.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { DigestsError } from "./blkhash.ts";
import { runHashJob, type HashJob } from "./hash-job.ts";

export interface BlockHasherPool {
  /** The job's block digests (blocks × 32 bytes). `memory` holds the item's buffer. */
  hash(job: HashJob, memory: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * Threads for a transfer: one, with a second only where there are 4+ cores. One thread hashes
 * ~1.1 GB/s (SHA-NI) and was busy 12-15 % of a core at the download's 110 MiB/s here; each thread
 * costs 13-20 MiB of RSS. Measured on 512 MiB (2 cores, load ~7): 2 threads 5.6-8.9 s and 178-180
 * MiB, 1 thread 5.7-6.3 s and 162-168 MiB, none 6.8-8.1 s and 139-140 MiB.
 */
export function defaultHashThreads(): number {
  return availableParallelism() >= 4 ? 2 : 1;
}

/** Hashes on the calling thread (small transfers: starting a thread would cost more). */
export function inlineHasher(): BlockHasherPool {
  return { hash: async (job, memory) => runHashJob(job, memory), close: async () => {} };
}

interface Pending {
  resolve(d: Buffer): void;
  reject(e: unknown): void;
}

const workerUrl = new URL("./hash-worker.js", import.meta.url);

let threadsRunning = 0;
/** Hashing threads alive in this process (for tests and diagnostics). */
export function hashThreadsRunning(): number {
  return threadsRunning;
}

/**
 * `threads` hashing threads, started now (a thread takes tens of ms to load, overlapped with the
 * transfer's setup). A job goes to the thread with the fewest jobs queued.
 */
export function startHashPool(threads: number): BlockHasherPool & { readonly broken: boolean } {
  let nextId = 0;
  let closed = false;
  // A thread that failed or exited takes no more jobs: they would wait for an answer forever.
  let broken = false;
  const lanes = Array.from({ length: Math.max(1, threads) }, () => {
    // execArgv []: not the parent's loader flags (tsx); hash-worker.js is plain JavaScript.
    const worker = new Worker(workerUrl, { execArgv: [] });
    threadsRunning++;
    const pending = new Map<number, Pending>();
    const failAll = (err: unknown) => {
      for (const p of pending.values()) p.reject(err);
      pending.clear();
    };
    worker.on("message", (m: { id: number; digests?: Uint8Array; error?: { code: string; message: string } }) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (m.error) p.reject(new DigestsError(m.error.code, m.error.message));
      else p.resolve(Buffer.from(m.digests!.buffer, m.digests!.byteOffset, m.digests!.byteLength));
    });
    worker.on("error", (err) => {
      broken = true;
      failAll(new DigestsError("HASH_WORKER_FAILED", `a hashing thread failed: ${err.message}`, {}, { cause: err }));
    });
    worker.on("exit", (code) => {
      threadsRunning--;
      if (closed) return;
      broken = true;
      failAll(new DigestsError("HASH_WORKER_FAILED", `a hashing thread exited (code ${code})`));
    });
    return { worker, pending };
  });
  return {
    get broken() {
      return broken;
    },
    hash(job, memory) {
      if (!(memory.buffer instanceof SharedArrayBuffer)) return Promise.resolve(runHashJob(job, memory));
      if (closed) return Promise.reject(new DigestsError("HASH_POOL_CLOSED", "the hashing pool is closed"));
      if (broken) return Promise.reject(new DigestsError("HASH_WORKER_FAILED", "a hashing thread of this pool failed"));
      const lane = lanes.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
      const id = nextId++;
      return new Promise<Buffer>((resolve, reject) => {
        lane.pending.set(id, { resolve, reject });
        lane.worker.postMessage({ id, job, memory });
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all(
        lanes.map(async (l) => {
          for (const p of l.pending.values()) p.reject(new DigestsError("HASH_POOL_CLOSED", "the hashing pool is closed"));
          l.pending.clear();
          await l.worker.terminate();
        }),
      );
    },
  };
}

/**
 * Below this many bytes to hash a transfer hashes on its own thread: starting hashing threads
 * (~50 ms each on an idle machine, several times that on a busy one) would cost a small
 * incremental more than the hashing.
 */
export const POOLED_HASH_MIN_BYTES = 64 * 1024 * 1024;

let shared: { pool: ReturnType<typeof startHashPool>; threads: number; users: number } | undefined;

/**
 * The process's one pool of `threads` hashing threads, shared by every transfer in it: a worker
 * running several backups at once (backupsPerEngine) would otherwise start threads per transfer —
 * more threads than cores, each with its RSS. Started with its first user, ended with its last
 * (`close` releases this user only); a pool whose thread failed is replaced for the next user.
 */
export function sharedHashPool(threads: number): BlockHasherPool {
  if (!shared || shared.threads !== threads || shared.pool.broken) {
    // A replaced pool keeps serving (or failing) its users; it ends with the last of them.
    shared = { pool: startHashPool(threads), threads, users: 0 };
  }
  const entry = shared;
  entry.users++;
  let released = false;
  return {
    hash: (job, memory) => (released ? Promise.reject(new DigestsError("HASH_POOL_CLOSED", "the hashing pool is closed")) : entry.pool.hash(job, memory)),
    async close() {
      if (released) return;
      released = true;
      if (--entry.users > 0) return;
      if (shared === entry) shared = undefined;
      await entry.pool.close();
    },
  };
}

/**
 * A hashing pool sized for `hashBlocks` blocks of `blockSize`: inline for small transfers, else
 * the process's shared pool (or a pool of its own when `threads` is given).
 */
export function hasherFor(hashBlocks: number, blockSize: number, threads?: number): BlockHasherPool {
  const n = threads ?? defaultHashThreads();
  if (hashBlocks * blockSize < POOLED_HASH_MIN_BYTES || n <= 0) return inlineHasher();
  return threads === undefined ? sharedHashPool(n) : startHashPool(n);
}
