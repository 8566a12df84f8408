/**
 * imageio-compatible block checksum ("blkhash", ovirt-api.md A.1): sha256 of each `blockSize`
 * block of the guest image (the last block may be shorter), then sha256 over the concatenated
 * block digests, hex encoded. Keeping the per-block digests of a restore point lets the next
 * incremental point re-hash only the blocks that changed.
 */
import { createHash } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import {
  checkDigestGeometry as checkGeometry,
  decodeDigests,
  DIGEST_SIZE,
  DigestsError,
  encodeDigests,
  type BlockDigests,
} from "../adapters/store/digests-file.ts";
import { BlockHasher as CoreBlockHasher, ShortBlockError, ZERO_CHUNK } from "./sha256-blocks.js";

// The digest file format (and the BlockDigests type it stores) belongs to the store:
// adapters/store/digests-file.ts. Re-exported so importers of dataplane/blkhash keep working.
export { decodeDigests, DIGEST_SIZE, DigestsError, encodeDigests, type BlockDigests } from "../adapters/store/digests-file.ts";

export const BLOCK_SIZE = 4 * 1024 * 1024;
export const ALGORITHM = "sha256";

/** The JSON imageio's `GET …/checksum?algorithm=sha256` returns. */
export interface ChecksumResult {
  algorithm: typeof ALGORITHM;
  block_size: number;
  checksum: string;
}

export function blockCount(virtualSize: number, blockSize = BLOCK_SIZE): number {
  return Math.ceil(virtualSize / blockSize);
}

export function blockLength(virtualSize: number, blockSize: number, index: number): number {
  return Math.min(blockSize, virtualSize - index * blockSize);
}

/** One shared zero buffer (1 MiB): zero ranges are hashed from it instead of being allocated or read. */
export const ZERO_BLOCK: Buffer = ZERO_CHUNK;

const zeroDigestCache = new Map<number, Buffer>();

/** The digest of `length` zero bytes, computed once per length (a full block and the last block). */
export function zeroDigest(length: number): Buffer {
  let d = zeroDigestCache.get(length);
  if (!d) {
    const h = createHash(ALGORITHM);
    for (let left = length; left > 0; left -= ZERO_BLOCK.length) {
      h.update(ZERO_BLOCK.subarray(0, Math.min(left, ZERO_BLOCK.length)));
    }
    d = h.digest();
    zeroDigestCache.set(length, d);
  }
  return d;
}

/** Digests of an all-zero image of this size (a new, empty disk). */
export function zeroDigests(virtualSize: number, blockSize = BLOCK_SIZE): BlockDigests {
  checkGeometry(virtualSize, blockSize);
  const n = blockCount(virtualSize, blockSize);
  const digests = Buffer.allocUnsafe(n * DIGEST_SIZE);
  for (let i = 0; i < n; i++) zeroDigest(blockLength(virtualSize, blockSize, i)).copy(digests, i * DIGEST_SIZE);
  return { blockSize, virtualSize, digests };
}

export function checksumHex(d: BlockDigests): string {
  return createHash(ALGORITHM).update(d.digests).digest("hex");
}

export function checksumResult(d: BlockDigests): ChecksumResult {
  return { algorithm: ALGORITHM, block_size: d.blockSize, checksum: checksumHex(d) };
}

/** The exact bytes imageio would answer, key order and spacing included (Python json.dumps). */
export function formatChecksumJson(r: ChecksumResult): string {
  return `{"algorithm": "${r.algorithm}", "block_size": ${r.block_size}, "checksum": "${r.checksum}"}`;
}

/** Naive reference over an in-memory raw image; used by tests and small callers. */
export function digestBuffer(image: Buffer, blockSize = BLOCK_SIZE): BlockDigests {
  const virtualSize = image.length;
  checkGeometry(virtualSize, blockSize);
  const n = blockCount(virtualSize, blockSize);
  const digests = Buffer.allocUnsafe(n * DIGEST_SIZE);
  for (let i = 0; i < n; i++) {
    const block = image.subarray(i * blockSize, i * blockSize + blockLength(virtualSize, blockSize, i));
    createHash(ALGORITHM).update(block).digest().copy(digests, i * DIGEST_SIZE);
  }
  return { blockSize, virtualSize, digests };
}

/**
 * Collects block digests in any order (parallel workers finish out of order) and refuses to
 * produce a result with a block missing. With `previous`, unchanged blocks can take the digest
 * of the previous restore point instead of being read again.
 */
export class DigestBuilder {
  readonly virtualSize: number;
  readonly blockSize: number;
  readonly count: number;
  private readonly digests: Buffer;
  private readonly set: Uint8Array;
  private filled = 0;
  private readonly previous: BlockDigests | undefined;

  constructor(virtualSize: number, blockSize = BLOCK_SIZE, previous?: BlockDigests) {
    checkGeometry(virtualSize, blockSize);
    this.virtualSize = virtualSize;
    this.blockSize = blockSize;
    this.count = blockCount(virtualSize, blockSize);
    this.digests = Buffer.alloc(this.count * DIGEST_SIZE);
    this.set = new Uint8Array(this.count);
    this.previous = previous && previous.blockSize === blockSize ? previous : undefined;
  }

  blockLength(index: number): number {
    return blockLength(this.virtualSize, this.blockSize, index);
  }

  /**
   * Whether block `index` of the previous point has the same extent as in this image, so an
   * unchanged block can reuse its digest (a resized disk changes the length of the old last block).
   */
  canReuse(index: number): boolean {
    const p = this.previous;
    if (!p || index >= blockCount(p.virtualSize, p.blockSize)) return false;
    return blockLength(p.virtualSize, p.blockSize, index) === this.blockLength(index);
  }

  reuse(index: number): void {
    if (!this.canReuse(index)) {
      throw new DigestsError("BLKHASH_NO_PREVIOUS", `block ${index} has no reusable previous digest`);
    }
    this.put(index, this.previous!.digests.subarray(index * DIGEST_SIZE, (index + 1) * DIGEST_SIZE));
  }

  setZero(index: number): void {
    this.put(index, zeroDigest(this.blockLength(index)));
  }

  put(index: number, digest: Buffer): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.count) {
      throw new DigestsError("BLKHASH_BAD_INDEX", `block ${index} is outside 0..${this.count - 1}`);
    }
    if (digest.length !== DIGEST_SIZE) throw new DigestsError("BLKHASH_BAD_DIGEST", `digest must be ${DIGEST_SIZE} bytes`);
    digest.copy(this.digests, index * DIGEST_SIZE);
    if (!this.set[index]) {
      this.set[index] = 1;
      this.filled++;
    }
  }

  has(index: number): boolean {
    return this.set[index] === 1;
  }

  get complete(): boolean {
    return this.filled === this.count;
  }

  finish(): BlockDigests {
    if (!this.complete) {
      const missing = this.set.indexOf(0);
      throw new DigestsError("BLKHASH_INCOMPLETE", `${this.count - this.filled} block digests missing (first: ${missing})`);
    }
    return { blockSize: this.blockSize, virtualSize: this.virtualSize, digests: Buffer.from(this.digests) };
  }
}

/**
 * Derive the digests of a new point from the previous one: `changed` gives the new digest of
 * every block that changed; all others are reused.
 */
export function deriveDigests(
  previous: BlockDigests,
  changed: Iterable<[index: number, digest: Buffer]>,
  virtualSize = previous.virtualSize,
): BlockDigests {
  const b = new DigestBuilder(virtualSize, previous.blockSize, previous);
  for (const [i, d] of changed) b.put(i, d);
  for (let i = 0; i < b.count; i++) {
    if (b.has(i)) continue;
    if (!b.canReuse(i)) {
      throw new DigestsError("BLKHASH_NO_PREVIOUS", `block ${i} changed length after a resize and has no new digest`);
    }
    b.reuse(i);
  }
  return b.finish();
}

/**
 * Hashes one block from its parts, in order (sha256-blocks.js: leading zero runs continue from
 * saved states, other zero runs hash the shared zero chunk). A block fed the wrong number of
 * bytes is a DigestsError BLKHASH_SHORT_BLOCK.
 */
export class BlockHasher extends CoreBlockHasher {
  override digest(): Buffer {
    try {
      return super.digest();
    } catch (err) {
      if (err instanceof ShortBlockError) throw new DigestsError(err.code, err.message);
      throw err;
    }
  }
}

// --- File format: the store keeps blockhashes/<checkpoint>.<disk-id> ---------------------------
// encodeDigests / decodeDigests: adapters/store/digests-file.ts (re-exported above).

/** Write atomically (temp file, fsync, rename), mode 0600. */
export async function writeDigestsFile(path: string, d: BlockDigests): Promise<void> {
  const data = encodeDigests(d);
  const tmp = `${path}.tmp-${process.pid}-${Date.now().toString(36)}`;
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export async function readDigestsFile(path: string): Promise<BlockDigests> {
  const fh = await open(path, "r");
  try {
    return decodeDigests(await fh.readFile(), path);
  } finally {
    await fh.close();
  }
}
