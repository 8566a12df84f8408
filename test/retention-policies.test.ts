/**
 * Retention with real qcow2 layers: keep_last, keep_days and max_age, and crash safety — a run
 * interrupted at every qemu call leaves each kept point readable and is finished by replay.
 */
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openStore, type Store } from "../adapters/store/mod.ts";
import { qemuImg } from "../adapters/qemu/mod.ts";
import type { QemuImg } from "../adapters/qemu/mod.ts";
import type { ChainRecord } from "../domain/chain/mod.ts";
import { compareRaw, SimVm } from "./store-fixtures.ts";

const DAY = 86_400_000;
const MiB = 1024 * 1024;
const VM = { id: "vm-policies", name: "app01" };

let tmp: string | undefined;
afterEach(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
  tmp = undefined;
});

async function setup(nights: number, fullOn: (n: number) => boolean, times?: Date[], disks = 2): Promise<{ store: Store; vm: SimVm; record: ChainRecord }> {
  tmp = await mkdtemp(join(tmpdir(), "ferry-retpol-"));
  const store = openStore({ root: join(tmp, "store") });
  await store.init();
  const vm = new SimVm(store, tmp, VM, 3);
  await vm.addDisk("d1", 1 * MiB);
  if (disks > 1) await vm.addDisk("d2", 1 * MiB);
  let record!: ChainRecord;
  for (let n = 0; n < nights; n++) record = await vm.backup(times?.[n] ?? new Date(Date.UTC(2025, 0, 1, 2) + n * DAY), { full: fullOn(n) });
  return { store, vm, record };
}

async function storeFiles(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1))
    .sort();
}

function referenced(r: ChainRecord): string[] {
  return [`${r.vm.name}/restore-points.json`, ...r.restorePoints.flatMap((p) => [...p.disks.flatMap((d) => [d.layer, d.digestsFile]), p.ovfFile!])].sort();
}

/** A qemu-img whose `failAt`-th call (1-based, counting every method) throws, like a crash at that moment. */
function crashingQemu(failAt: number): { qemu: QemuImg; calls: () => number } {
  let n = 0;
  const qemu = new Proxy(qemuImg, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        n++;
        if (n === failAt) return Promise.reject(new Error(`simulated crash at qemu call ${n} (${String(prop)})`));
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as QemuImg;
  return { qemu, calls: () => n };
}

describe("retention policies", () => {
  it("retention - keep_last 3 over 8 nights keeps the 3 newest, rolled forward onto a full", async () => {
    const { store, vm, record } = await setup(8, (n) => n === 0);
    const r = await store.applyRetention(record.vm, { keepLast: 3 }, { now: new Date(Date.UTC(2025, 0, 9)) });
    expect(r.removed).toHaveLength(5);
    expect(r.record.restorePoints.map((p) => p.time.slice(0, 10))).toEqual(["2025-01-06", "2025-01-07", "2025-01-08"]);
    expect(r.record.restorePoints.map((p) => p.kind)).toEqual(["full", "incremental", "incremental"]);
    expect(r.record.restorePoints[0]!.disks.every((d) => d.layer.endsWith(".full.qcow2") && d.mergedFrom?.length === 5)).toBe(true);
    expect(r.plan.checkpointsToRemove).toHaveLength(7);
    expect(await vm.mismatches(r.record)).toEqual([]);
    expect(await storeFiles(store.root)).toEqual(referenced(r.record));
  });

  it("retention - keep_days 3 keeps what is younger than 3 days; max_age 2 then trims it, newest always kept", async () => {
    const { store, vm, record } = await setup(7, (n) => n === 0 || n === 4);
    const now = new Date(Date.UTC(2025, 0, 7, 12));
    const r = await store.applyRetention(record.vm, { keepDays: 3 }, { now });
    expect(r.record.restorePoints.map((p) => p.time.slice(0, 10))).toEqual(["2025-01-05", "2025-01-06", "2025-01-07"]);
    // Night 4 was a full: nights 0..3 were a chain nothing kept needs, deleted without merging.
    expect(r.plan.merges).toEqual([]);
    expect(await vm.mismatches(r.record)).toEqual([]);
    const r2 = await store.applyRetention(record.vm, { keepDays: 3, maxAgeDays: 2 }, { now });
    expect(r2.record.restorePoints.map((p) => p.time.slice(0, 10))).toEqual(["2025-01-06", "2025-01-07"]);
    expect(await vm.mismatches(r2.record)).toEqual([]);
    const r3 = await store.applyRetention(record.vm, { keepLast: 5, maxAgeDays: 1 }, { now: new Date(Date.UTC(2025, 2, 1)) });
    expect(r3.record.restorePoints.map((p) => p.time.slice(0, 10))).toEqual(["2025-01-07"]);
    expect(r3.record.restorePoints[0]!.kind).toBe("full");
    expect(await vm.mismatches(r3.record)).toEqual([]);
    expect(await storeFiles(store.root)).toEqual(referenced(r3.record));
  });

  it("retention - a run interrupted at any qemu call leaves every kept point readable, and replay finishes it", async () => {
    // Two points on Jan 3 and on Jan 4: keep_daily 3 keeps Jan 2 (merged onto the Jan 1 full: link +
    // rebase) and the evening points of Jan 3 and Jan 4 (their morning increments are renamed in).
    const times = ["2025-01-01T02:00:00Z", "2025-01-02T02:00:00Z", "2025-01-03T02:00:00Z", "2025-01-03T14:00:00Z", "2025-01-04T02:00:00Z", "2025-01-04T14:00:00Z"].map((t) => new Date(t));
    const { store, vm, record } = await setup(times.length, (n) => n === 0, times, 1);
    const policy = { keepDaily: 3 };
    const now = new Date("2025-01-05T00:00:00Z");
    const plan = await store.planRetention(VM.name, policy, { now });
    expect(plan.steps.map((s) => s.op)).toEqual(["commit", "link", "rebase", "commit", "replace", "commit", "replace"]);
    const kept = plan.target.restorePoints.map((p) => p.id);
    const pristine = join(tmp!, "pristine");
    await cp(store.root, pristine, { recursive: true });

    // How many qemu calls a full run makes, then a crash at each of them.
    const probe = crashingQemu(0);
    const probeStore = openStore({ root: join(tmp!, "probe") });
    await cp(pristine, probeStore.root, { recursive: true });
    await openStore({ root: probeStore.root, qemuImg: probe.qemu }).applyRetention(record.vm, policy, { now });
    const total = probe.calls();
    expect(total).toBeGreaterThan(8);

    for (let failAt = 1; failAt <= total; failAt++) {
      await rm(store.root, { recursive: true, force: true });
      await cp(pristine, store.root, { recursive: true });
      const crashing = openStore({ root: store.root, qemuImg: crashingQemu(failAt).qemu });
      await expect(crashing.applyRetention(record.vm, policy, { now }), `crash at ${failAt}`).rejects.toThrow(/simulated crash/);
      // Mid-run: readers see the kept points only, and each reads bit-exact.
      const mid = (await store.readManifest(VM.name))!;
      for (const id of kept) {
        const point = await store.resolvePoint(VM.name, id);
        for (const d of point.disks) {
          const r = await compareRaw(d.top, vm.refs.get(id)!.get(d.disk.diskId)!);
          expect(r.identical, `crash at ${failAt}: ${id}/${d.disk.diskId} ${r.detail}`).toBe(true);
        }
      }
      if (mid.pending) expect(mid.pending.removing.every((id) => !kept.includes(id))).toBe(true);
      const done = await store.replayPending(VM.name);
      const finished = mid.pending ? done! : (await store.applyRetention(record.vm, policy, { now })).record;
      expect(finished.pending).toBeUndefined();
      expect(finished.restorePoints.map((p) => p.id), `crash at ${failAt}`).toEqual(kept);
      expect(await vm.mismatches(finished), `crash at ${failAt}`).toEqual([]);
      expect(await storeFiles(store.root), `crash at ${failAt}`).toEqual(referenced(finished));
    }
  });
});
