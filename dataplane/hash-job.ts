/**
 * One work item's block hashing as plain data, so it can run on another thread: every block to
 * hash lists its parts in order, data parts by their place in the item's buffer (the byte at
 * guest offset `o` sits at `o - base`) and zero parts by length. The hashing itself is
 * sha256-blocks.js, which the threads (hash-worker.js) load without any TypeScript.
 */
import { DigestsError } from "./blkhash.ts";
import { ShortBlockError, runHashJob as runCore } from "./sha256-blocks.js";

export interface HashJob {
  /** Guest offset of the item's buffer's first byte. */
  readonly base: number;
  readonly blocks: readonly HashBlock[];
}

export interface HashBlock {
  readonly index: number;
  readonly length: number;
  /** Flat triples [guestOffset, length, isData (1) or zero (0)], in order. */
  readonly parts: readonly number[];
}

/** sha256 of each block of the job, concatenated (blocks × 32 bytes), over `memory` (sha256-blocks.js; a thread runs the same code). */
export function runHashJob(job: HashJob, memory: Uint8Array): Buffer {
  try {
    return runCore(job, memory);
  } catch (err) {
    if (err instanceof ShortBlockError) throw new DigestsError(err.code, err.message);
    throw err;
  }
}
