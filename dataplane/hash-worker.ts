/**
 * A block-hashing thread (hash-pool.ts). Jobs arrive with a SharedArrayBuffer-backed view of a
 * transfer buffer, so nothing is copied; the answer is the job's digests or the error's code.
 */
import { parentPort } from "node:worker_threads";
import { runHashJob, type HashJob } from "./hash-job.ts";

interface Request {
  id: number;
  job: HashJob;
  memory: Uint8Array;
}

parentPort!.on("message", (m: Request) => {
  try {
    const digests = runHashJob(m.job, m.memory);
    parentPort!.postMessage({ id: m.id, digests });
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    parentPort!.postMessage({ id: m.id, error: { code: typeof e.code === "string" ? e.code : "HASH_WORKER_FAILED", message: String(e.message ?? err) } });
  }
});
