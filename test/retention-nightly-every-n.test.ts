/**
 * Issue 4 "done when": 30 simulated days of nightly backups with keep_daily 7, keep_weekly 4 and a
 * full every 10 days (chains that cross ISO weeks), every kept point restoring bit-exact. Real qcow2 layers
 * (qemu-img, qemu-io), the real retention executor (qemu-img commit / rebase), and plain
 * `qemu-img compare` of each kept point's chain against the raw guest image saved that night.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openStore } from "../adapters/store/mod.ts";
import type { ChainRecord } from "../domain/chain/mod.ts";
import { expectedDailyWeekly, filesIn, plainQemuReads, referencedFiles, SimVm } from "./store-fixtures.ts";

const DAY = 86_400_000;
const MiB = 1024 * 1024;

let tmp: string | undefined;
afterEach(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
  tmp = undefined;
});

describe("retention nightly, full every N days", () => {
  it("retention - 30 nights with a full every 10 days: chains that cross weeks are merged, never broken", async () => {
    tmp = await mkdtemp(join(tmpdir(), "ferry-retention-"));
    const store = openStore({ root: join(tmp, "store") });
    await store.init();
    const vm = new SimVm(store, tmp, { id: "vm-2", name: "db01" }, 11);
    await vm.addDisk("disk-a", 1 * MiB);
    const start = Date.UTC(2025, 5, 4, 1, 30); // Wednesday
    const taken: { id: string; time: Date }[] = [];
    let record!: ChainRecord;
    for (let day = 0; day < 30; day++) {
      const time = new Date(start + day * DAY);
      record = await vm.backup(time, { full: day % 10 === 0 });
      taken.push({ id: record.restorePoints.at(-1)!.id, time });
      record = (await store.applyRetention(record.vm, { keepDaily: 7, keepWeekly: 4 }, { now: time, timeZone: "UTC" })).record;
      expect(record.restorePoints.map((p) => p.id), `after night ${day}`).toEqual(expectedDailyWeekly(taken, 7, 4));
    }
    // Night 29 is Thursday 2025-07-03: 7 daily (Jun 27..Jul 3) + the Sundays Jun 22 and Jun 15.
    expect(record.restorePoints.map((p) => p.time.slice(0, 10))).toEqual([
      "2025-06-15", "2025-06-22", "2025-06-27", "2025-06-28", "2025-06-29", "2025-06-30", "2025-07-01", "2025-07-02", "2025-07-03",
    ]);
    expect(await vm.mismatches(record)).toEqual([]);
    await plainQemuReads(store, record);
    expect(await filesIn(store.root)).toEqual(referencedFiles(record));
  }, 300_000); // ~50 s alone; more when CI runs other files beside it
});
