import crypto from "node:crypto";
import type { NbdClient } from "../../adapters/nbd/mod.ts";
import { Blake2b } from "./blake2b.ts";
import type { ZeroExtent } from "./backend.ts";
import { OperationCanceled, type Operation } from "./ticket.ts";

/**
 * imageio's block checksum (ovirt_imageio/_internal/blkhash.py and handlers/checksum.py):
 * H(H(block_1) || H(block_2) || ...), blocks of block_size over the guest image, zero
 * blocks taken from the zero extents without reading. blake2b/blake2s use digest_size=32.
 */

export const BLOCK_SIZE = 4 * 1024 * 1024;
export const DEFAULT_ALGORITHM = "blake2b";
export const MIN_BLOCK_SIZE = BLOCK_SIZE / 4;
export const MAX_BLOCK_SIZE = BLOCK_SIZE * 4;

/** sorted(hashlib.algorithms_available) of a Python 3 / OpenSSL 3 host. */
export const ALGORITHMS = [
  "blake2b",
  "blake2s",
  "md5",
  "md5-sha1",
  "ripemd160",
  "sha1",
  "sha224",
  "sha256",
  "sha384",
  "sha3_224",
  "sha3_256",
  "sha3_384",
  "sha3_512",
  "sha512",
  "sha512_224",
  "sha512_256",
  "shake_128",
  "shake_256",
  "sm3",
] as const;

/** hashlib name → OpenSSL name for Node's crypto. */
const NODE_NAME: Readonly<Record<string, string>> = {
  blake2s: "blake2s256",
  sha3_224: "sha3-224",
  sha3_256: "sha3-256",
  sha3_384: "sha3-384",
  sha3_512: "sha3-512",
  sha512_224: "sha512-224",
  sha512_256: "sha512-256",
};

/**
 * hashlib lists shake_* but `hexdigest()` needs a length, so the real daemon fails with a
 * 500 for them; so do we.
 */
export class UnusableAlgorithm extends Error {}

interface Hasher {
  update(b: Uint8Array): unknown;
  digest(): Buffer;
}

function newHasher(algorithm: string): Hasher {
  if (algorithm === "blake2b") return new Blake2b(32);
  if (algorithm.startsWith("shake_")) throw new UnusableAlgorithm(`${algorithm} needs a digest length`);
  return crypto.createHash(NODE_NAME[algorithm] ?? algorithm);
}

interface Block {
  start: number;
  length: number;
  zero: boolean;
}

/** blkhash.split: extents → block_size blocks; a block is zero only if all of it is. */
export function* splitBlocks(extents: Iterable<ZeroExtent>, blockSize: number): Generator<Block> {
  let partial: Block | undefined;
  for (const e of extents) {
    const cur: Block = { start: e.start, length: e.length, zero: e.zero };
    if (partial) {
      const stolen = Math.min(blockSize - partial.length, cur.length);
      cur.start += stolen;
      cur.length -= stolen;
      partial.length += stolen;
      partial.zero &&= cur.zero;
      if (partial.length < blockSize) continue;
      yield partial;
      partial = undefined;
    }
    while (cur.length >= blockSize) {
      yield { start: cur.start, length: blockSize, zero: cur.zero };
      cur.start += blockSize;
      cur.length -= blockSize;
    }
    if (cur.length) partial = cur;
  }
  if (partial) yield partial;
}

/** How many data blocks are read ahead while earlier ones are hashed. */
const READ_AHEAD = 4;

export async function computeChecksum(
  client: NbdClient,
  extents: ZeroExtent[],
  algorithm: string,
  blockSize: number,
  op: Operation,
): Promise<{ algorithm: string; block_size: number; checksum: string }> {
  const outer = newHasher(algorithm);
  const zeroDigests = new Map<number, Buffer>();
  const zeroDigest = (n: number): Buffer => {
    let d = zeroDigests.get(n);
    if (!d) {
      const h = newHasher(algorithm);
      h.update(Buffer.alloc(n));
      d = h.digest();
      zeroDigests.set(n, d);
    }
    return d;
  };

  const blocks = [...splitBlocks(extents, blockSize)];
  const reads: Array<Promise<Buffer> | undefined> = [];
  let next = 0;
  let inFlight = 0;
  const schedule = () => {
    while (next < blocks.length && inFlight < READ_AHEAD) {
      const b = blocks[next]!;
      if (!b.zero) {
        const p = client.read(b.start, b.length);
        p.catch(() => undefined); // awaited below; avoid an unhandled rejection if we stop early
        reads[next] = p;
        inFlight++;
      }
      next++;
    }
  };
  for (let i = 0; i < blocks.length; i++) {
    schedule();
    const b = blocks[i]!;
    if (b.zero) outer.update(zeroDigest(b.length));
    else {
      const data = await reads[i]!;
      reads[i] = undefined;
      inFlight--;
      const h = newHasher(algorithm);
      h.update(data);
      outer.update(h.digest());
    }
    op.done += b.length;
    if (op.canceled) throw new OperationCanceled();
  }
  return { algorithm, block_size: blockSize, checksum: outer.digest().toString("hex") };
}
