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

/**
 * `threads` hashing threads, started now (a thread takes tens of ms to load, overlapped with the
 * transfer's setup). A job goes to the thread with the fewest jobs queued.
 */
export function startHashPool(threads: number): BlockHasherPool {
  let nextId = 0;
  let closed = false;
  const lanes = Array.from({ length: Math.max(1, threads) }, () => {
    // execArgv []: not the parent's loader flags (tsx); hash-worker.js is plain JavaScript.
    const worker = new Worker(workerUrl, { execArgv: [] });
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
    worker.on("error", (err) => failAll(new DigestsError("HASH_WORKER_FAILED", `a hashing thread failed: ${err.message}`, {}, { cause: err })));
    worker.on("exit", (code) => {
      if (!closed) failAll(new DigestsError("HASH_WORKER_FAILED", `a hashing thread exited (code ${code})`));
    });
    return { worker, pending };
  });
  return {
    hash(job, memory) {
      if (!(memory.buffer instanceof SharedArrayBuffer)) return Promise.resolve(runHashJob(job, memory));
      if (closed) return Promise.reject(new DigestsError("HASH_POOL_CLOSED", "the hashing pool is closed"));
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

/** A hashing pool sized for `hashBlocks` blocks of `blockSize`: threads for big transfers, inline for small ones. */
export function hasherFor(hashBlocks: number, blockSize: number, threads: number = defaultHashThreads()): BlockHasherPool {
  return hashBlocks * blockSize >= POOLED_HASH_MIN_BYTES && threads > 0 ? startHashPool(threads) : inlineHasher();
}
