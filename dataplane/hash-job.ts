/**
 * One work item's block hashing as plain data, so it can run on another thread: every block to
 * hash lists its parts in order, data parts by their place in the item's buffer (the byte at
 * guest offset `o` sits at `o - base`) and zero parts by length. Erasable TypeScript only and no
 * imports beyond blkhash.ts: hash-worker.ts loads it with Node's own type stripping.
 */
import { BlockHasher } from "./blkhash.ts";

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

/** sha256 of each block of the job, concatenated (blocks × 32 bytes), over `memory`. */
export function runHashJob(job: HashJob, memory: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(job.blocks.length * 32);
  job.blocks.forEach((b, k) => {
    const h = new BlockHasher(b.length);
    for (let p = 0; p < b.parts.length; p += 3) {
      const offset = b.parts[p]!;
      const length = b.parts[p + 1]!;
      if (b.parts[p + 2] === 1) {
        const at = offset - job.base;
        h.update(Buffer.from(memory.buffer, memory.byteOffset + at, length));
      } else {
        h.zeros(length);
      }
    }
    h.digest().copy(out, k * 32);
  });
  return out;
}
