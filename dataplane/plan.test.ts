import { describe, expect, it } from "vitest";
import {
  BlockAction,
  MiB,
  restrictSegments,
  SegmentKind,
  blockSegments,
  downloadSegments,
  normalizeSegments,
  planTransfer,
  uploadSegments,
  type Segment,
} from "./plan.ts";

const B = 4 * MiB;
const seg = (offset: number, length: number, kind: Segment["kind"]): Segment => ({ offset, length, kind });

describe("plan", () => {
  it("plan - rejects gaps, overlaps and a size mismatch in the extent map", () => {
    expect(() => normalizeSegments([seg(0, 10, "copy"), seg(11, 5, "copy")])).toThrow(/does not follow/);
    expect(() => normalizeSegments([seg(0, 10, "copy"), seg(5, 5, "copy")])).toThrow(/does not follow/);
    expect(() => normalizeSegments([seg(0, 10, "copy")], 20)).toThrow(/cover 10 bytes/);
    expect(normalizeSegments([seg(0, 10, "copy"), seg(10, 0, "zero"), seg(10, 6, "copy")])).toEqual([seg(0, 16, "copy")]);
  });

  it("plan - full backup on a new image: data windows only, zero blocks need no work", () => {
    const size = 64 * MiB;
    const segs = [seg(0, 3 * MiB, "copy"), seg(3 * MiB, 30 * MiB, "skip-zero"), seg(33 * MiB, MiB, "copy"), seg(34 * MiB, 30 * MiB, "skip-zero")];
    const p = planTransfer(segs, { blockSize: B, pieceSize: 8 * MiB });
    expect(p.virtualSize).toBe(size);
    expect(p.copyBytes).toBe(4 * MiB);
    expect(p.zeroRuns).toEqual([]);
    expect(p.items.map((i) => [i.offset, i.length])).toEqual([[0, 8 * MiB], [32 * MiB, 8 * MiB]]);
    expect(p.items[1]!.fetches).toEqual([{ offset: 33 * MiB, length: MiB }]);
    expect([...p.blocks]).toEqual([2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
  });

  it("plan - windows are at most the piece size and aligned to blocks, the last one shorter", () => {
    const size = 20 * MiB + 4096;
    const p = planTransfer([seg(0, size, "copy")], { blockSize: B, pieceSize: 8 * MiB });
    expect(p.items.map((i) => [i.offset, i.length])).toEqual([[0, 8 * MiB], [8 * MiB, 8 * MiB], [16 * MiB, 4 * MiB + 4096]]);
    expect(p.items.every((i) => i.fetches.every((f) => f.length <= 8 * MiB))).toBe(true);
    expect(p.copyBytes).toBe(size);
    expect(p.blocks.length).toBe(6);
    expect(() => planTransfer([seg(0, size, "copy")], { blockSize: B, pieceSize: 6 * MiB })).toThrow(/multiple/);
  });

  it("plan - short zero gaps are fetched in one request, long ones and kept ranges are not", () => {
    const k = 1024;
    const segs = [
      seg(0, 64 * k, "copy"),
      seg(64 * k, 64 * k, "skip-zero"),
      seg(128 * k, 64 * k, "copy"),
      seg(192 * k, MiB, "skip-zero"),
      seg(192 * k + MiB, 64 * k, "copy"),
      seg(256 * k + MiB, 64 * k, "keep"),
      seg(320 * k + MiB, 64 * k, "copy"),
      seg(384 * k + MiB, 8 * MiB - 384 * k - MiB, "keep"),
    ];
    const p = planTransfer(segs, { blockSize: B, pieceSize: 8 * MiB, maxGap: 256 * k });
    expect(p.items).toHaveLength(1);
    expect(p.items[0]!.fetches).toEqual([
      { offset: 0, length: 192 * k },
      { offset: 192 * k + MiB, length: 64 * k },
      { offset: 320 * k + MiB, length: 64 * k },
    ]);
  });

  it("plan - incremental: clean blocks reuse previous digests, partially dirty blocks are hashed", () => {
    const segs = [
      seg(0, 8 * MiB, "keep"),
      seg(8 * MiB, 64 * 1024, "copy"),
      seg(8 * MiB + 64 * 1024, 4 * MiB - 64 * 1024, "keep"),
      seg(12 * MiB, 8 * MiB, "zero"),
      seg(20 * MiB, 4 * MiB, "keep"),
    ];
    const p = planTransfer(segs, { blockSize: B, pieceSize: 8 * MiB, canReuse: (i) => i !== 5 });
    expect([...p.blocks]).toEqual([BlockAction.reuse, BlockAction.reuse, BlockAction.hash, BlockAction.zero, BlockAction.zero, BlockAction.hash]);
    expect(p.zeroRuns).toEqual([{ offset: 12 * MiB, length: 8 * MiB }]);
    expect(p.zeroBytes).toBe(8 * MiB);
    // Window 0 is fully reused: no work. Window 8M copies; window 16M only zero (done as a run);
    // window 20M hashes block 5 from the local chain because it cannot reuse.
    expect(p.items.map((i) => [i.offset, i.copyBytes])).toEqual([[8 * MiB, 64 * 1024], [16 * MiB, 0]]);
    const parts = blockSegments(p.items[0]!, B, 2);
    expect(parts.map((s) => s.kind)).toEqual(["copy", "keep"]);
    expect(parts.reduce((n, s) => n + s.length, 0)).toBe(B);
  });

  it("plan - huge zero runs are split at 128 MiB", () => {
    const p = planTransfer([seg(0, 300 * MiB, "zero")], { blockSize: B });
    expect(p.zeroRuns.map((r) => r.length)).toEqual([128 * MiB, 128 * MiB, 44 * MiB]);
    expect(p.items).toEqual([]);
    expect(p.blocks.every((b) => b === BlockAction.zero)).toBe(true);
  });

  it("plan - imageio extents map to download segments", () => {
    const full = [
      { start: 0, length: 10, zero: false, hole: false },
      { start: 10, length: 10, zero: true, hole: true },
    ];
    expect(downloadSegments(full, { incremental: false, hasBacking: false }).map((s) => s.kind)).toEqual(["copy", "skip-zero"]);
    expect(downloadSegments(full, { incremental: false, hasBacking: true }).map((s) => s.kind)).toEqual(["copy", "zero"]);
    const dirty = [
      { start: 0, length: 10, dirty: false, zero: false },
      { start: 10, length: 10, dirty: true, zero: false },
      { start: 20, length: 10, dirty: true, zero: true },
      { start: 30, length: 10, dirty: false, zero: true },
    ];
    expect(downloadSegments(dirty, { incremental: true, hasBacking: true }).map((s) => s.kind)).toEqual([SegmentKind.keep, "copy", "zero", "keep"]);
    expect(() => downloadSegments(full, { incremental: true, hasBacking: true })).toThrow(/dirty extents/);
  });

  it("plan - NBD allocation maps to upload segments", () => {
    const ext = [
      { offset: 0, length: 10, flags: 0 },
      { offset: 10, length: 10, flags: 3 },
      { offset: 20, length: 10, flags: 2 },
      { offset: 30, length: 10, flags: 1 },
    ];
    expect(uploadSegments(ext, { diskIsZero: false }).map((s) => s.kind)).toEqual(["copy", "zero", "zero", "copy"]);
    expect(uploadSegments(ext, { diskIsZero: true }).map((s) => s.kind)).toEqual(["copy", "skip-zero", "skip-zero", "copy"]);
  });
});

describe("restrictSegments", () => {
  it("restrictSegments - outside the ranges becomes keep (never bridged), inside keeps its kind", () => {
    const segs = [
      { offset: 0, length: 100, kind: SegmentKind.copy },
      { offset: 100, length: 100, kind: SegmentKind.zero },
      { offset: 200, length: 100, kind: SegmentKind.copy },
    ];
    expect(restrictSegments(segs, [{ offset: 50, length: 100 }, { offset: 250, length: 10 }])).toEqual([
      { offset: 0, length: 50, kind: SegmentKind.keep },
      { offset: 50, length: 50, kind: SegmentKind.copy },
      { offset: 100, length: 50, kind: SegmentKind.zero },
      { offset: 150, length: 50, kind: SegmentKind.keep },
      { offset: 200, length: 50, kind: SegmentKind.keep },
      { offset: 250, length: 10, kind: SegmentKind.copy },
      { offset: 260, length: 40, kind: SegmentKind.keep },
    ]);
    // Two copy ranges with kept bytes between them are fetched separately: the kept bytes stay on the target.
    const plan = planTransfer(restrictSegments([{ offset: 0, length: 8 * MiB, kind: SegmentKind.copy }], [{ offset: 0, length: 4096 }, { offset: 8192, length: 4096 }]), { blockSize: 4 * MiB, hash: false });
    expect(plan.items.flatMap((i) => i.fetches)).toEqual([{ offset: 0, length: 4096 }, { offset: 8192, length: 4096 }]);
    expect(plan.copyBytes).toBe(8192);
  });
});
