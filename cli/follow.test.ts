/**
 * The progress line of `ferry backup --wait` / `ferry restore --wait`: per disk by alias, sizes in
 * a unit that fits (a tiny incremental is not "0.0 MiB/0.0 MiB"), 100% with the final size once done.
 */
import { describe, expect, it } from "vitest";
import { progressLine, type DiskProgress } from "./follow.ts";

describe("progressLine", () => {
  it("progressLine - per disk by label; in flight bytes/total, done 100% with the final size; tiny sizes in B/KiB", () => {
    const disks = new Map<string, DiskProgress>([
      ["d-1", { label: "web01_d1", bytes: 3 * 1048576 + 524288, total: 8 * 1048576 }],
      ["d-2", { label: "web01_d2", bytes: 196608, total: 196608, done: true }],
      ["d-3", { label: "web01_d3", bytes: 0, total: 0 }],
    ]);
    expect(progressLine("web01", disks)).toBe("web01: web01_d1  43% 3.5 MiB/8.0 MiB  web01_d2 100% 192.0 KiB  web01_d3   0% 0 B/0 B");
    // A disk whose last progress event was throttled away is drawn at its total once done.
    disks.set("d-1", { label: "web01_d1", bytes: 4 * 1048576, total: 8 * 1048576, done: true });
    expect(progressLine("web01", disks)).toMatch(/^web01: web01_d1 100% 8\.0 MiB {2}web01_d2 100% 192\.0 KiB/);
    // An incremental of a few blocks.
    expect(progressLine("db01", new Map([["x", { label: "db01_d1", bytes: 512, total: 512, done: true }]]))).toBe("db01: db01_d1 100% 512 B");
  });
});
