/**
 * Issue 4 "done when": 30 simulated days of nightly backups with keep_daily 7, keep_weekly 4 keep
 * exactly the expected restore points, and every kept point restores bit-exact. Real qcow2 layers
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

describe("retention nightly", () => {
  it("retention - 30 nights, weekly full on Mondays, a disk added on day 10, keep_daily 7 + keep_weekly 4", async () => {
    tmp = await mkdtemp(join(tmpdir(), "ferry-retention-"));
    const store = openStore({ root: join(tmp, "store") });
    await store.init();
    const vm = new SimVm(store, tmp, { id: "11111111-2222-3333-4444-555555555555", name: "web01" }, 7);
    await vm.addDisk("disk-a", 2 * MiB);
    const start = Date.UTC(2025, 2, 3, 2, 0); // Monday 2025-03-03 02:00Z
    const taken: { id: string; time: Date }[] = [];
    let record!: ChainRecord;
    let merges = 0;
    for (let day = 0; day < 30; day++) {
      if (day === 10) await vm.addDisk("disk-b", 1 * MiB);
      const time = new Date(start + day * DAY);
      const weekday = time.getUTCDay();
      record = await vm.backup(time, { full: weekday === 1 });
      taken.push({ id: record.restorePoints.at(-1)!.id, time });
      const result = await store.applyRetention(record.vm, { keepDaily: 7, keepWeekly: 4 }, { now: new Date(time.getTime() + 3_600_000), timeZone: "UTC" });
      merges += result.plan.merges.length;
      record = result.record;
      expect(record.restorePoints.map((p) => p.id), `after night ${day}`).toEqual(expectedDailyWeekly(taken, 7, 4));
      if (day === 15) expect(await vm.mismatches(record), `night ${day}`).toEqual([]);
    }
    // 2025-04-01 (night 29) is a Tuesday: 7 daily points (Mar 26..Apr 1); the 4 newest weeks' newest points
    // are Apr 1 and Mar 30 (already daily), Mar 23 and Mar 16 (Sundays).
    expect(record.restorePoints.map((p) => p.time.slice(0, 10))).toEqual([
      "2025-03-16", "2025-03-23", "2025-03-26", "2025-03-27", "2025-03-28", "2025-03-29", "2025-03-30", "2025-03-31", "2025-04-01",
    ]);
    expect(merges).toBeGreaterThan(0);
    // Sundays are incrementals of their week's chain; with the Monday..Saturday points gone they were rolled forward into fulls.
    for (const p of record.restorePoints.slice(0, 2)) expect(p.kind, p.id).toBe("full");
    expect(await vm.mismatches(record)).toEqual([]);
    await plainQemuReads(store, record);
    // Nothing but what the manifest names is left on the volume.
    expect(await filesIn(store.root)).toEqual(referencedFiles(record));
    expect(await store.readManifest("web01")).toEqual(record);
  }, 300_000); // 70-80 s alone (30 nights of qemu-img work); twice that when CI runs other files beside it
});
