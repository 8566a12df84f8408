import { describe, expect, it } from "vitest";
import { SeededStream, seededBytes } from "./storage.ts";

describe("storage", () => {
  it("seededBytes - deterministic per seed, different across seeds, same bytes when streamed in odd pieces", () => {
    const a = seededBytes(7, 1000);
    expect(seededBytes(7, 1000).equals(a)).toBe(true);
    expect(seededBytes(8, 1000).equals(a)).toBe(false);
    const s = new SeededStream(7);
    const pieces = Buffer.concat([s.next(3), s.next(1), s.next(5), s.next(991)]);
    expect(pieces.equals(a)).toBe(true);
    expect(seededBytes(7, 10).equals(a.subarray(0, 10))).toBe(true);
  });
});
