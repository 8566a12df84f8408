// @ts-check
/**
 * A block-hashing thread (hash-pool.ts). Plain JavaScript, loading only sha256-blocks.js: a thread
 * that loads TypeScript pays for the type stripper's WebAssembly (~23 MiB RSS each, measured).
 * Jobs arrive with a SharedArrayBuffer-backed view of a transfer buffer, so nothing is copied; the
 * answer is the job's digests or the error's code.
 */
import { parentPort } from "node:worker_threads";
import { runHashJob } from "./sha256-blocks.js";

const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort);
port.on("message", (/** @type {{ id: number, job: import("./sha256-blocks.js").CoreHashJob, memory: Uint8Array }} */ m) => {
  try {
    port.postMessage({ id: m.id, digests: runHashJob(m.job, m.memory) });
  } catch (err) {
    const e = /** @type {{ code?: unknown, message?: unknown }} */ (err);
    port.postMessage({ id: m.id, error: { code: typeof e.code === "string" ? e.code : "HASH_WORKER_FAILED", message: String(e.message ?? err) } });
  }
});
