// @ts-check
/**
 * The block hasher's core, in plain JavaScript on purpose: the hashing threads (hash-worker.js)
 * load only this, so a thread needs no TypeScript loader. Under Node's native type stripping every
 * isolate that loads a .ts file instantiates the stripper's WebAssembly, measured here at ~23 MiB
 * of RSS per thread (2 threads: 112 MiB for the .ts worker vs 68 MiB for this one); blkhash.ts and
 * hash-job.ts use it on the main thread. Types: sha256-blocks.d.ts.
 */
import { createHash } from "node:crypto";

/** Zero bytes to hash from. 1 MiB, not a whole block: longer zero runs loop over it. */
export const ZERO_CHUNK = Buffer.alloc(1 << 20);

/**
 * sha256 states after 64 KiB, 128 KiB, ... of zero bytes. A block whose data starts after a run
 * of zeroes (common: data runs are cluster aligned) continues from a copy instead of hashing the
 * zeroes again. Built once per thread, incrementally, up to 16 MiB (256 small objects at most).
 */
const ZERO_PREFIX_STEP = 64 * 1024;
const MAX_ZERO_PREFIX = 16 * 1024 * 1024;
const zeroPrefixStates = [createHash("sha256")];

/** @param {number} length */
function zeroPrefixState(length) {
  const index = length / ZERO_PREFIX_STEP;
  while (zeroPrefixStates.length <= index) {
    const next = /** @type {import("node:crypto").Hash} */ (zeroPrefixStates.at(-1)).copy();
    next.update(ZERO_CHUNK.subarray(0, ZERO_PREFIX_STEP));
    zeroPrefixStates.push(next);
  }
  return /** @type {import("node:crypto").Hash} */ (zeroPrefixStates[index]);
}

/** A block hashed fewer or more bytes than its length. `code` is what DigestsError carries. */
export class ShortBlockError extends Error {
  code = "BLKHASH_SHORT_BLOCK";
}

/** Hashes one block from its parts, in order: data parts and zero runs. */
export class BlockHasher {
  #hash = createHash("sha256");
  #fed = 0;
  /** @param {number} length */
  constructor(length) {
    this.length = length;
  }
  /** @param {Uint8Array} data */
  update(data) {
    this.#hash.update(data);
    this.#fed += data.length;
  }
  /** @param {number} length */
  zeros(length) {
    if (this.#fed === 0 && length % ZERO_PREFIX_STEP === 0 && length <= MAX_ZERO_PREFIX) {
      // Leading zeroes: start from the saved state after that many zero bytes.
      this.#hash = zeroPrefixState(length).copy();
      this.#fed = length;
      return;
    }
    for (let left = length; left > 0; ) {
      const n = Math.min(left, ZERO_CHUNK.length);
      this.#hash.update(ZERO_CHUNK.subarray(0, n));
      left -= n;
    }
    this.#fed += length;
  }
  /** @returns {Buffer} */
  digest() {
    if (this.#fed !== this.length) throw new ShortBlockError(`block hashed ${this.#fed} bytes, expected ${this.length}`);
    return this.#hash.digest();
  }
}

/**
 * sha256 of each block of a job (hash-job.ts), concatenated (blocks × 32 bytes). Data parts are
 * read from `memory` in place (the byte at guest offset `o` sits at `o - job.base`).
 * @param {{ base: number, blocks: readonly { index: number, length: number, parts: readonly number[] }[] }} job
 * @param {Uint8Array} memory
 * @returns {Buffer}
 */
export function runHashJob(job, memory) {
  const out = Buffer.allocUnsafe(job.blocks.length * 32);
  job.blocks.forEach((b, k) => {
    const h = new BlockHasher(b.length);
    for (let p = 0; p < b.parts.length; p += 3) {
      const offset = /** @type {number} */ (b.parts[p]);
      const length = /** @type {number} */ (b.parts[p + 1]);
      if (b.parts[p + 2] === 1) h.update(new Uint8Array(memory.buffer, memory.byteOffset + offset - job.base, length));
      else h.zeros(length);
    }
    h.digest().copy(out, k * 32);
  });
  return out;
}
