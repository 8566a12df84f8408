import { describe, expect, it } from "vitest";
import { extentsSize, parseExtents } from "./extents.ts";

describe("imageio extents", () => {
  it("imageio extents - neighbours with the same flags merge; the size is the end of the last", () => {
    const r = parseExtents(
      [
        { start: 0, length: 1048576, zero: true, hole: false },
        { start: 1048576, length: 65536, zero: false, hole: false },
        { start: 1114112, length: 65536, zero: false, hole: false },
        { start: 1179648, length: 65994752, zero: true, hole: false },
      ],
      "zero",
    );
    if ("problem" in r) throw new Error(r.problem);
    expect(r.extents).toEqual([
      { start: 0, length: 1048576, zero: true, hole: false, dirty: false },
      { start: 1048576, length: 131072, zero: false, hole: false, dirty: false },
      { start: 1179648, length: 65994752, zero: true, hole: false, dirty: false },
    ]);
    expect(extentsSize(r.extents)).toBe(67174400);
  });

  it("imageio extents - dirty extents without zero (old servers) read as data", () => {
    const r = parseExtents(
      [
        { start: 0, length: 65536, dirty: true },
        { start: 65536, length: 65536, dirty: false },
      ],
      "dirty",
    );
    if ("problem" in r) throw new Error(r.problem);
    expect(r.extents.map((e) => [e.dirty, e.zero])).toEqual([
      [true, false],
      [false, false],
    ]);
  });

  it("imageio extents - gaps, overlaps, a late start and missing flags are problems", () => {
    expect(parseExtents([{ start: 4096, length: 4096, zero: true }], "zero")).toHaveProperty("problem");
    expect(
      parseExtents(
        [
          { start: 0, length: 8192, zero: true },
          { start: 4096, length: 4096, zero: false },
        ],
        "zero",
      ),
    ).toHaveProperty("problem");
    expect(parseExtents([{ start: 0, length: 4096, zero: true }], "dirty")).toHaveProperty("problem");
    expect(parseExtents([{ start: 0, length: 4096 }], "zero")).toHaveProperty("problem");
    expect(parseExtents({ start: 0 }, "zero")).toHaveProperty("problem");
    expect(parseExtents([{ start: "0", length: 4096, zero: true }], "zero")).toHaveProperty("problem");
  });

  it("imageio extents - an empty image has no extents; zero-length extents are dropped", () => {
    expect(parseExtents([], "zero")).toEqual({ extents: [] });
    const r = parseExtents(
      [
        { start: 0, length: 0, zero: false },
        { start: 0, length: 4096, zero: true },
      ],
      "zero",
    );
    expect(r).toEqual({ extents: [{ start: 0, length: 4096, zero: true, hole: false, dirty: false }] });
  });
});
