/**
 * 30 simulated days of nightly backups (one disk, guest writes every day) with retention
 * keepDaily 7 + keepWeekly 4, through the real pipeline: exactly the expected restore points are
 * kept, every kept point still reads bit-exact against the lab's image of that night, and the
 * store holds no layer the chain does not name.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readdir } from "node:fs/promises";
import { join, relative } from "node:path";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";

const MiB = 1048576;
const DAY = 86_400_000;
const start = Date.parse("2025-03-03T02:00:00Z"); // a Monday
let now = start;
let p: Pipeline;

beforeAll(async () => {
  p = await startPipeline({
    clock: () => new Date(now),
    retention: () => ({ keepDaily: 7, keepWeekly: 4 }),
    labTimings: { backupPhaseMs: 20, backupFinalizeMs: 20, transferFinalizeMs: 20, snapshotMs: 20, monitorIntervalMs: 100 },
    pollMs: 40,
  });
});

afterAll(async () => {
  await p?.stop();
});

/** The nights keepDaily 7 + keepWeekly 4 keep, computed independently of domain/retention. */
function expectedKept(days: number[]): number[] {
  const iso = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  const week = (ms: number) => {
    const d = new Date(ms);
    const monday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) - ((d.getUTCDay() + 6) % 7) * DAY;
    return monday;
  };
  const newestFirst = [...days].sort((a, b) => b - a);
  const keep = new Set<number>();
  const seenDays = new Set<string>();
  for (const d of newestFirst) if (!seenDays.has(iso(d)) && seenDays.size < 7) (seenDays.add(iso(d)), keep.add(d));
  const seenWeeks = new Set<number>();
  for (const d of newestFirst) if (!seenWeeks.has(week(d)) && seenWeeks.size < 4) (seenWeeks.add(week(d)), keep.add(d));
  return [...keep].sort((a, b) => a - b);
}

describe("backup retention (lab)", () => {
  it("backup retention - 30 nightly backups with keepDaily 7 + keepWeekly 4 keep exactly the expected points, each bit-exact", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "ret01", disks: [{ alias: "ret01_d1", size: 4 * MiB }], status: "up" });
    const diskId = vm.disks[0]!.id;
    const nights: { time: number; backupId: string; restorePoint: string }[] = [];
    for (let day = 0; day < 30; day++) {
      now = start + day * DAY;
      await control.writeGuestData(diskId, { offset: (day % 16) * 256 * 1024, length: 65536, seed: day + 1 });
      const out = await p.backup("ret01");
      expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");
      nights.push({ time: now, backupId: String(out.disks[0]!.backupId), restorePoint: String(out.event.restorePoint) });
    }
    const rec = (await p.wiring.chains.read(vm.id))!;
    const keptTimes = rec.restorePoints.map((r) => Date.parse(r.time));
    expect(keptTimes).toEqual(expectedKept(nights.map((n) => n.time)));

    for (const point of rec.restorePoints) {
      const night = nights.find((n) => n.restorePoint === point.id)!;
      const top = join(p.storePath, point.disks[0]!.layer);
      expect((await qemuImg.check(top, { format: "qcow2" })).corruptions).toBe(0);
      const exported = join(p.dir, `r-${point.id}.raw`);
      await control.exportImage(diskId, exported, { format: "raw", atBackup: night.backupId });
      const cmp = await qemuImg.compare(top, exported, { formatA: "qcow2", formatB: "raw" });
      expect(cmp.identical, `${point.id}: ${cmp.detail}`).toBe(true);
    }
    const files: string[] = [];
    for (const e of await readdir(join(p.storePath, "ret01", diskId), { withFileTypes: true })) if (e.isFile()) files.push(e.name);
    const named = new Set(rec.restorePoints.map((r) => relative(join("ret01", diskId), r.disks[0]!.layer)));
    expect(files.sort()).toEqual([...named].sort());
  }, 400_000); // 115-140 s alone on 2 cores (30 lab backups and their retention); CI runs other files beside it
});
