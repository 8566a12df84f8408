/**
 * Turns an extent map into transfer work: which ranges to copy, which to zero, and how every
 * 4 MiB checksum block gets its digest. Pure; download and upload share it.
 *
 * Work items are aligned windows of `pieceSize` (a multiple of the block size), so each block
 * belongs to exactly one item and its parts can be hashed in order by the worker that owns it,
 * while memory stays bounded by workers × pieceSize.
 */
import { PermanentError } from "../contracts/errors.ts";
import { blockCount } from "./blkhash.ts";

export const MiB = 1024 * 1024;
/**
 * Largest request and window: one 4 MiB block. Each lane holds one window buffer, so this sets the
 * transfer memory (4 connections: 16 MiB; 8 MiB pieces made it 32 MiB and the peak RSS 16-20 MiB
 * higher, measured); requests reuse their connection, and the lab server reads 4 MiB at a time anyway.
 */
export const PIECE_SIZE = 4 * MiB;
/** imageio's MAX_ZERO_SIZE: zero requests are split at 128 MiB. */
export const MAX_ZERO_SIZE = 128 * MiB;
/** Fetch two data runs as one request when only this many zero bytes separate them. */
export const MAX_GAP = 256 * 1024;

export const SegmentKind = {
  /** Fetch the bytes and write them. */
  copy: "copy",
  /** Write zeroes (they must hide older data); reads as zeroes. */
  zero: "zero",
  /** Nothing to write; reads as zeroes (a new image, or a target known to be zero). */
  skipZero: "skip-zero",
  /** Nothing to write; the data comes from the backing chain (clean in an incremental). */
  keep: "keep",
} as const;
export type SegmentKind = (typeof SegmentKind)[keyof typeof SegmentKind];

export interface Segment {
  readonly offset: number;
  readonly length: number;
  readonly kind: SegmentKind;
}

export interface Range {
  readonly offset: number;
  readonly length: number;
}

/** How a block's digest is obtained. */
export const BlockAction = {
  /** All of it reads as zeroes: the precomputed zero digest. */
  zero: 0,
  /** Unchanged and the previous point's digest is usable. */
  reuse: 1,
  /** Hash it from its parts (copied data, zeroes, and local reads of kept ranges). */
  hash: 2,
} as const;
export type BlockAction = (typeof BlockAction)[keyof typeof BlockAction];

export interface WorkItem {
  readonly offset: number;
  readonly length: number;
  /** The segments of this window, clipped to it, in order. */
  readonly segments: readonly Segment[];
  /** Ranges to fetch: copy segments, coalesced across short zero-content gaps. */
  readonly fetches: readonly Range[];
  /** Bytes of copy segments (the data this item moves). */
  readonly copyBytes: number;
}

export interface TransferPlan {
  readonly virtualSize: number;
  readonly blockSize: number;
  readonly items: readonly WorkItem[];
  /** Zero runs to write, each ≤ maxZeroSize. */
  readonly zeroRuns: readonly Range[];
  /** One action per block. */
  readonly blocks: Uint8Array;
  readonly copyBytes: number;
  readonly zeroBytes: number;
}

export class ExtentMapError extends PermanentError {}

/**
 * Segments limited to byte ranges: outside them everything becomes `keep` (left as it is on the
 * target, never bridged by a coalesced fetch), inside them the segments stay as they are. For
 * refreshing a copy in place with only what changed.
 */
export function restrictSegments(segments: readonly Segment[], ranges: readonly Range[]): Segment[] {
  const sorted = [...ranges].filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Segment[] = [];
  for (const s of segments) {
    let pos = s.offset;
    const end = s.offset + s.length;
    for (const r of sorted) {
      const rs = Math.max(r.offset, s.offset);
      const re = Math.min(r.offset + r.length, end);
      if (re <= rs || re <= pos) continue;
      const from = Math.max(rs, pos);
      if (from > pos) out.push({ offset: pos, length: from - pos, kind: SegmentKind.keep });
      out.push({ offset: from, length: re - from, kind: s.kind });
      pos = re;
    }
    if (pos < end) out.push({ offset: pos, length: end - pos, kind: SegmentKind.keep });
  }
  return out;
}

/** Checks that segments tile [0, virtualSize) and merges neighbours of the same kind. */
export function normalizeSegments(segments: readonly Segment[], virtualSize?: number): Segment[] {
  const out: Segment[] = [];
  let pos = 0;
  for (const s of segments) {
    if (!Number.isSafeInteger(s.offset) || !Number.isSafeInteger(s.length) || s.length < 0) {
      throw new ExtentMapError("EXTENTS_INVALID", `invalid extent at ${s.offset} length ${s.length}`);
    }
    if (s.offset !== pos) {
      throw new ExtentMapError("EXTENTS_NOT_CONTIGUOUS", `extent at ${s.offset} does not follow the previous end ${pos}`);
    }
    pos += s.length;
    if (s.length === 0) continue;
    const last = out.at(-1);
    if (last && last.kind === s.kind) out[out.length - 1] = { offset: last.offset, length: last.length + s.length, kind: s.kind };
    else out.push({ offset: s.offset, length: s.length, kind: s.kind });
  }
  if (virtualSize !== undefined && pos !== virtualSize) {
    throw new ExtentMapError("EXTENTS_SIZE_MISMATCH", `extents cover ${pos} bytes, the image has ${virtualSize}`);
  }
  return out;
}

const readsAsZero = (k: SegmentKind) => k === SegmentKind.zero || k === SegmentKind.skipZero;

export interface PlanOptions {
  blockSize: number;
  pieceSize?: number;
  maxGap?: number;
  maxZeroSize?: number;
  /** Whether an unchanged block may take the previous point's digest. */
  canReuse?: (blockIndex: number) => boolean;
  /** Compute block digests (default true). false: only copy and zero work, no checksum. */
  hash?: boolean;
}

export function planTransfer(input: readonly Segment[], o: PlanOptions): TransferPlan {
  const segments = normalizeSegments(input);
  const virtualSize = segments.length ? segments.at(-1)!.offset + segments.at(-1)!.length : 0;
  const blockSize = o.blockSize;
  const pieceSize = o.pieceSize ?? PIECE_SIZE;
  const maxGap = o.maxGap ?? MAX_GAP;
  const maxZeroSize = o.maxZeroSize ?? MAX_ZERO_SIZE;
  if (pieceSize < blockSize || pieceSize % blockSize !== 0) {
    throw new ExtentMapError("PLAN_BAD_PIECE", `piece size ${pieceSize} must be a multiple of the block size ${blockSize}`);
  }
  const canReuse = o.canReuse ?? (() => false);

  // Zero runs, split for bounded requests.
  const zeroRuns: Range[] = [];
  let zeroBytes = 0;
  for (const s of segments) {
    if (s.kind !== SegmentKind.zero) continue;
    zeroBytes += s.length;
    for (let off = s.offset; off < s.offset + s.length; off += maxZeroSize) {
      zeroRuns.push({ offset: off, length: Math.min(maxZeroSize, s.offset + s.length - off) });
    }
  }

  // Block actions: a single pass, segments and blocks both ascending.
  const nBlocks = blockCount(virtualSize, blockSize);
  const blocks = new Uint8Array(nBlocks);
  let si = 0;
  for (let b = 0; b < nBlocks; b++) {
    const start = b * blockSize;
    const end = Math.min(start + blockSize, virtualSize);
    while (si < segments.length && segments[si]!.offset + segments[si]!.length <= start) si++;
    let allZero = true;
    let allKeep = true;
    for (let j = si; j < segments.length && segments[j]!.offset < end; j++) {
      const k = segments[j]!.kind;
      if (!readsAsZero(k)) allZero = false;
      if (k !== SegmentKind.keep) allKeep = false;
    }
    blocks[b] = allZero || o.hash === false ? BlockAction.zero : allKeep && canReuse(b) ? BlockAction.reuse : BlockAction.hash;
  }

  // Windows that copy data or hash a block become work items.
  const items: WorkItem[] = [];
  let copyBytes = 0;
  si = 0;
  const blocksPerPiece = pieceSize / blockSize;
  for (let w = 0; w < virtualSize; w += pieceSize) {
    const wEnd = Math.min(w + pieceSize, virtualSize);
    while (si < segments.length && segments[si]!.offset + segments[si]!.length <= w) si++;
    const clipped: Segment[] = [];
    let itemCopy = 0;
    for (let j = si; j < segments.length && segments[j]!.offset < wEnd; j++) {
      const s = segments[j]!;
      const offset = Math.max(s.offset, w);
      const length = Math.min(s.offset + s.length, wEnd) - offset;
      clipped.push({ offset, length, kind: s.kind });
      if (s.kind === SegmentKind.copy) itemCopy += length;
    }
    const firstBlock = w / blockSize;
    let needsHash = false;
    for (let b = firstBlock; b < Math.min(firstBlock + blocksPerPiece, nBlocks); b++) {
      if (blocks[b] === BlockAction.hash) needsHash = true;
    }
    if (itemCopy === 0 && !needsHash) continue;
    items.push({ offset: w, length: wEnd - w, segments: clipped, fetches: coalesce(clipped, maxGap), copyBytes: itemCopy });
    copyBytes += itemCopy;
  }

  return { virtualSize, blockSize, items, zeroRuns, blocks, copyBytes, zeroBytes };
}

/** Copy segments merged across gaps of at most `maxGap` bytes that read as zeroes. */
function coalesce(segments: readonly Segment[], maxGap: number): Range[] {
  const out: Range[] = [];
  let cur: { offset: number; end: number } | undefined;
  let gap = 0;
  let gapOk = true;
  for (const s of segments) {
    if (s.kind === SegmentKind.copy) {
      if (cur && gapOk && gap <= maxGap) cur.end = s.offset + s.length;
      else {
        if (cur) out.push({ offset: cur.offset, length: cur.end - cur.offset });
        cur = { offset: s.offset, end: s.offset + s.length };
      }
      gap = 0;
      gapOk = true;
    } else if (cur) {
      gap += s.length;
      // Kept ranges are never bridged: their bytes must come from the local chain, not the wire.
      if (!readsAsZero(s.kind)) gapOk = false;
    }
  }
  if (cur) out.push({ offset: cur.offset, length: cur.end - cur.offset });
  return out;
}

/** The segments of `item` that overlap block `index`, clipped to it. */
export function blockSegments(item: WorkItem, blockSize: number, index: number): Segment[] {
  const start = index * blockSize;
  const end = start + blockSize;
  const out: Segment[] = [];
  for (const s of item.segments) {
    const a = Math.max(s.offset, start);
    const b = Math.min(s.offset + s.length, end);
    if (a < b) out.push({ offset: a, length: b - a, kind: s.kind });
  }
  return out;
}

// --- Extent sources --------------------------------------------------------------------------

/** imageio `extents` items (ovirt-api.md 7.7). `dirty` is present only in the dirty context. */
export interface ImageioExtent {
  start: number;
  length: number;
  zero: boolean;
  hole?: boolean;
  dirty?: boolean;
}

/**
 * Download segments. Full (`context=zero`): data is copied; zeroes are skipped on a new image
 * and written when there is a backing file (they must hide it). Incremental (`context=dirty`):
 * clean is kept, dirty-and-zero is written as zeroes, dirty data is copied.
 */
export function downloadSegments(extents: readonly ImageioExtent[], o: { incremental: boolean; hasBacking: boolean }): Segment[] {
  return extents.map((e) => {
    let kind: SegmentKind;
    if (o.incremental) {
      if (e.dirty === undefined) throw new ExtentMapError("EXTENTS_NOT_DIRTY", "incremental download needs dirty extents");
      kind = !e.dirty ? SegmentKind.keep : e.zero ? SegmentKind.zero : SegmentKind.copy;
    } else {
      kind = !e.zero ? SegmentKind.copy : o.hasBacking ? SegmentKind.zero : SegmentKind.skipZero;
    }
    return { offset: e.start, length: e.length, kind };
  });
}

/** NBD base:allocation flags (NBD_STATE_HOLE = 1, NBD_STATE_ZERO = 2). */
export const NBD_STATE_ZERO_FLAG = 2;

/** Upload segments from NBD base:allocation extents: data is sent; zeroes are zeroed unless the target is known zero. */
export function uploadSegments(
  extents: readonly { offset: number; length: number; flags: number }[],
  o: { diskIsZero: boolean },
): Segment[] {
  return extents.map((e) => ({
    offset: e.offset,
    length: e.length,
    kind: e.flags & NBD_STATE_ZERO_FLAG ? (o.diskIsZero ? SegmentKind.skipZero : SegmentKind.zero) : SegmentKind.copy,
  }));
}
