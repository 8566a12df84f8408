/**
 * The store's block digest file format: `<vm>/blockhashes/<checkpoint>.<disk-id>` holds the
 * per-block sha256 digests of one restore point of one disk, so the next incremental backup
 * re-hashes only changed blocks and `ferry verify` can name the blocks that rotted.
 *
 *   "FERRYBH1" | u32 blockSize | u64 virtualSize | u32 count | count×32 digests | sha256(all before)
 *
 * Little-endian. The trailing sha256 catches a truncated or rotted file before it poisons the
 * next incremental checksum. dataplane/blkhash.ts computes the digests and re-exports this codec.
 */
import { createHash } from "node:crypto";
import { PermanentError } from "../../contracts/errors.ts";

/** Bytes of one sha256 block digest. */
export const DIGEST_SIZE = 32;

/** The per-block sha256 digests of one guest image (a restore point of one disk). */
export interface BlockDigests {
  readonly blockSize: number;
  readonly virtualSize: number;
  /** blockCount × 32 bytes, block i at [32i, 32i+32). */
  readonly digests: Buffer;
}

/** Bad digests or a bad digest file (codes BLKHASH_*). */
export class DigestsError extends PermanentError {}

/**
 * Throws unless the geometry is one imageio can checksum: blocks of 4 KiB-16 MiB, a multiple of
 * 4096 (ovirt-api.md 7.8), and a non-negative whole virtual size.
 */
export function checkDigestGeometry(virtualSize: number, blockSize: number): void {
  if (!Number.isSafeInteger(blockSize) || blockSize < 4096 || blockSize > 16 << 20 || blockSize % 4096 !== 0) {
    throw new DigestsError("BLKHASH_BAD_BLOCK_SIZE", `block size ${blockSize} must be 4 KiB-16 MiB, a multiple of 4096`);
  }
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0) {
    throw new DigestsError("BLKHASH_BAD_SIZE", `virtual size ${virtualSize} is not a non-negative integer`);
  }
}

const MAGIC = Buffer.from("FERRYBH1", "ascii");
const HEADER = MAGIC.length + 4 + 8 + 4;
const count = (virtualSize: number, blockSize: number) => Math.ceil(virtualSize / blockSize);

/** Whether `buf` starts like a Ferry digest file (else it may be a bare list of digests). */
export function isDigestsFile(buf: Buffer): boolean {
  return buf.length >= MAGIC.length && buf.subarray(0, MAGIC.length).equals(MAGIC);
}

export function encodeDigests(d: BlockDigests): Buffer {
  checkDigestGeometry(d.virtualSize, d.blockSize);
  const n = count(d.virtualSize, d.blockSize);
  if (d.digests.length !== n * DIGEST_SIZE) {
    throw new DigestsError("BLKHASH_BAD_DIGESTS", `expected ${n} digests, got ${d.digests.length / DIGEST_SIZE}`);
  }
  const head = Buffer.alloc(HEADER);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(d.blockSize, 8);
  head.writeBigUInt64LE(BigInt(d.virtualSize), 12);
  head.writeUInt32LE(n, 20);
  const body = Buffer.concat([head, d.digests]);
  return Buffer.concat([body, createHash("sha256").update(body).digest()]);
}

export function decodeDigests(buf: Buffer, what = "block digests"): BlockDigests {
  const bad = (why: string) => new DigestsError("BLKHASH_CORRUPT", `${what}: ${why}`);
  if (buf.length < HEADER + DIGEST_SIZE || !isDigestsFile(buf)) throw bad("not a Ferry block digest file");
  const body = buf.subarray(0, buf.length - DIGEST_SIZE);
  if (!createHash("sha256").update(body).digest().equals(buf.subarray(buf.length - DIGEST_SIZE))) {
    throw bad("integrity check failed");
  }
  const blockSize = buf.readUInt32LE(8);
  const big = buf.readBigUInt64LE(12);
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw bad("virtual size too large");
  const virtualSize = Number(big);
  const n = buf.readUInt32LE(20);
  try {
    checkDigestGeometry(virtualSize, blockSize);
  } catch {
    throw bad("invalid geometry");
  }
  if (n !== count(virtualSize, blockSize) || body.length !== HEADER + n * DIGEST_SIZE) {
    throw bad("digest count does not match the size");
  }
  return { blockSize, virtualSize, digests: Buffer.from(body.subarray(HEADER)) };
}
