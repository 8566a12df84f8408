/**
 * Hashes the blocks of one work item that need hashing, each from its parts in order: data
 * already fetched, zeroes from the shared zero buffer, and kept ranges read from the local chain.
 */
import { PermanentError } from "../contracts/errors.ts";
import { BlockHasher, type DigestBuilder } from "./blkhash.ts";
import { BlockAction, SegmentKind, blockSegments, type WorkItem } from "./plan.ts";

export interface Fetched {
  offset: number;
  data: Buffer;
}

export class ItemHashError extends PermanentError {}

export async function hashItemBlocks(
  item: WorkItem,
  fetched: readonly Fetched[],
  blocks: Uint8Array,
  digests: DigestBuilder,
  readKept?: (offset: number, length: number) => Promise<Buffer>,
): Promise<void> {
  const blockSize = digests.blockSize;
  const last = Math.ceil((item.offset + item.length) / blockSize);
  for (let b = item.offset / blockSize; b < last; b++) {
    if (blocks[b] !== BlockAction.hash) continue;
    const h = new BlockHasher(digests.blockLength(b));
    for (const s of blockSegments(item, blockSize, b)) {
      if (s.kind === SegmentKind.copy) {
        const f = fetched.find((x) => s.offset >= x.offset && s.offset < x.offset + x.data.length);
        if (!f || s.offset + s.length > f.offset + f.data.length) {
          throw new ItemHashError("HASH_MISSING_DATA", `no data fetched for ${s.offset}+${s.length}`);
        }
        h.update(f.data.subarray(s.offset - f.offset, s.offset - f.offset + s.length));
      } else if (s.kind === SegmentKind.keep) {
        if (!readKept) throw new ItemHashError("HASH_KEEP_UNEXPECTED", "kept range without a local chain to read");
        const data = await readKept(s.offset, s.length);
        if (data.length !== s.length) throw new ItemHashError("HASH_SHORT_READ", `short local read at ${s.offset}`);
        h.update(data);
      } else {
        h.zeros(s.length);
      }
    }
    digests.put(b, h.digest());
  }
}
