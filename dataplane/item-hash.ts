/**
 * Hashes the blocks of one work item that need hashing, each from its parts in order: data
 * already fetched, zeroes from the shared zero buffer, and kept ranges read from the local chain.
 * With a hashing pool the item's buffer goes to another thread as a HashJob (hash-job.ts).
 */
import { PermanentError } from "../contracts/errors.ts";
import { BlockHasher, type DigestBuilder } from "./blkhash.ts";
import type { HashBlock } from "./hash-job.ts";
import type { BlockHasherPool } from "./hash-pool.ts";
import { BlockAction, SegmentKind, blockSegments, type WorkItem } from "./plan.ts";

export interface Fetched {
  offset: number;
  data: Buffer;
}

export class ItemHashError extends PermanentError {}

/** Where the item's bytes live for a pool: `memory[o - item.offset]` is guest byte `o`. */
export interface PooledHashing {
  pool: BlockHasherPool;
  memory: Buffer;
}

export async function hashItemBlocks(
  item: WorkItem,
  fetched: readonly Fetched[],
  blocks: Uint8Array,
  digests: DigestBuilder,
  readKept?: (offset: number, length: number) => Promise<Buffer>,
  pooled?: PooledHashing,
): Promise<void> {
  const blockSize = digests.blockSize;
  const last = Math.ceil((item.offset + item.length) / blockSize);
  const jobBlocks: HashBlock[] = [];
  for (let b = item.offset / blockSize; b < last; b++) {
    if (blocks[b] !== BlockAction.hash) continue;
    const h = pooled ? undefined : new BlockHasher(digests.blockLength(b));
    const parts: number[] = [];
    for (const s of blockSegments(item, blockSize, b)) {
      let data: Buffer | undefined;
      if (s.kind === SegmentKind.copy) {
        const f = fetched.find((x) => s.offset >= x.offset && s.offset < x.offset + x.data.length);
        if (!f || s.offset + s.length > f.offset + f.data.length) {
          throw new ItemHashError("HASH_MISSING_DATA", `no data fetched for ${s.offset}+${s.length}`);
        }
        data = f.data.subarray(s.offset - f.offset, s.offset - f.offset + s.length);
      } else if (s.kind === SegmentKind.keep) {
        if (!readKept) throw new ItemHashError("HASH_KEEP_UNEXPECTED", "kept range without a local chain to read");
        data = await readKept(s.offset, s.length);
        if (data.length !== s.length) throw new ItemHashError("HASH_SHORT_READ", `short local read at ${s.offset}`);
      }
      if (!pooled) {
        if (data) h!.update(data);
        else h!.zeros(s.length);
        continue;
      }
      if (data) placeAt(pooled.memory, s.offset - item.offset, data);
      parts.push(s.offset, s.length, data ? 1 : 0);
    }
    if (h) digests.put(b, h.digest());
    else jobBlocks.push({ index: b, length: digests.blockLength(b), parts });
  }
  if (!pooled || jobBlocks.length === 0) return;
  const out = await pooled.pool.hash({ base: item.offset, blocks: jobBlocks }, pooled.memory);
  jobBlocks.forEach((jb, k) => digests.put(jb.index, out.subarray(k * 32, k * 32 + 32)));
}

/** Copies `data` to `memory[at]` unless it is already that very memory (the usual case: read in place). */
function placeAt(memory: Buffer, at: number, data: Buffer): void {
  if (at < 0 || at + data.length > memory.length) throw new ItemHashError("HASH_OUTSIDE_BUFFER", `data at ${at}+${data.length} is outside the item's buffer`);
  if (data.buffer === memory.buffer && data.byteOffset === memory.byteOffset + at) return;
  data.copy(memory, at);
}
