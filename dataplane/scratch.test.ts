import { mkdir, mkdtemp, readdir, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { scratchDir, sweepScratch } from "./scratch.ts";

let dir: string | undefined;
afterEach(async () => dir && (await rm(dir, { recursive: true, force: true })));

/** A pid that surely belonged to a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(r.stdout);
}

describe("scratch dirs", () => {
  it("scratch - a dead process's dirs go, this process's and other live ones stay, legacy names only when old, other names never", async () => {
    dir = await mkdtemp(join(tmpdir(), "scratch-test-"));
    const mine = await scratchDir("dl", dir);
    expect(mine).toMatch(new RegExp(`ferry-dl-${process.pid}-`));
    const dead = join(dir, `ferry-src-${deadPid()}-abcDEF`);
    const alive = join(dir, "ferry-dl-1-abcdef"); // pid 1 is always there
    const legacyOld = join(dir, "ferry-dl-OLD123");
    const legacyNew = join(dir, "ferry-dl-new123");
    const foreign = join(dir, "ferry-backup-data");
    for (const d of [dead, alive, legacyOld, legacyNew, foreign]) await mkdir(d);
    await utimes(legacyOld, new Date(Date.now() - 2 * 86_400_000), new Date(Date.now() - 2 * 86_400_000));

    const removed = await sweepScratch({ dir });
    expect(removed.sort()).toEqual([dead, legacyOld].sort());
    expect((await readdir(dir)).sort()).toEqual(["ferry-backup-data", "ferry-dl-1-abcdef", "ferry-dl-new123", mine.slice(dir.length + 1)].sort());
  });
});
