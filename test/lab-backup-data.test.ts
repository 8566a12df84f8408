import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { FAST_TIMINGS, imageioDownload, RawApi, startTestLab, type Extent, type TestLab } from "../lab/test-support.ts";

// The lab's disk semantics behind the API: hybrid point-in-time views, bitmaps that stay right
// across backups, merges at finalize, and exportImage(atBackup) — checked through imageio with
// plain reads, and with qemu-img compare.
const MiB = 1024 * 1024;
let t: TestLab;
let api: RawApi;

beforeAll(async () => {
  t = await startTestLab({ timings: FAST_TIMINGS });
  api = new RawApi(t.prd);
});
afterAll(async () => {
  await api?.close();
  await t?.stop();
});

interface Run {
  backupId: string;
  checkpoint: string;
  files: Record<string, string>;
  extents: Record<string, Extent[]>;
  modes: Record<string, string>;
}

/** One backup: start, wait ready, optional writes while it is open, download every disk, finalize. */
async function backup(
  vmId: string,
  diskIds: string[],
  label: string,
  o: { from?: string; previous?: Run; duringBackup?: () => Promise<void> } = {},
): Promise<Run> {
  const r = await api.post(`/vms/${vmId}/backups`, { ...(o.from ? { from_checkpoint_id: o.from } : {}), disks: { disk: diskIds.map((id) => ({ id })) } });
  expect(r.status, r.text).toBe(201);
  const ready = await api.waitFor(`/vms/${vmId}/backups/${r.json.id}`, (j) => j.phase === "ready");
  await o.duringBackup?.();
  const disks = (await api.get(`/vms/${vmId}/backups/${r.json.id}/disks`)).json.disk as Array<{ id: string; backup_mode: string }>;
  const run: Run = { backupId: r.json.id, checkpoint: ready.json.to_checkpoint_id, files: {}, extents: {}, modes: {} };
  for (const d of disks) {
    run.modes[d.id] = d.backup_mode;
    const tr = await api.post("/imagetransfers", { disk: { id: d.id }, backup: { id: r.json.id }, direction: "download", format: "raw", inactivity_timeout: "30" });
    expect(tr.status, tr.text).toBe(201);
    expect(tr.json.phase).toBe("transferring");
    const out = join(t.dir, `${label}-${d.id}.raw`);
    const incremental = d.backup_mode === "incremental";
    run.extents[d.id] = await imageioDownload(api, tr.json.transfer_url, out, {
      incremental,
      ...(incremental ? { base: o.previous!.files[d.id]! } : {}),
    });
    run.files[d.id] = out;
    expect((await api.post(`/imagetransfers/${tr.json.id}/finalize`, {})).status).toBe(200);
    await api.waitFor(`/imagetransfers/${tr.json.id}`, (j) => j.phase === "finished_success");
  }
  expect((await api.post(`/vms/${vmId}/backups/${r.json.id}/finalize`, {})).status).toBe(200);
  await api.waitFor(`/vms/${vmId}/backups/${r.json.id}`, (j) => j.phase === "succeeded");
  return run;
}

async function same(a: string, b: string): Promise<boolean> {
  return (await qemuImg.compare(a, b, { formatA: "raw", formatB: "raw" })).identical;
}

function dirtyRanges(ex: Extent[]): Array<[number, number, boolean]> {
  return ex.filter((e) => e.dirty).map((e) => [e.start, e.length, e.zero]);
}

describe("lab backup data", () => {
  it("backup data - full then two incrementals: point-in-time views, dirty extents, bitmaps carried across merges", async () => {
    const vm = await t.prd.control.createVm({ name: "data", disks: [{ size: 8 * MiB }, { size: 4 * MiB, format: "raw" }], status: "up" });
    const [q, r] = vm.disks.map((d) => d.id) as [string, string];
    const c = t.prd.control;
    await c.writeGuestData(q, { offset: 0, length: MiB, seed: 1 });
    await c.writeGuestData(r, { offset: MiB, length: 512 * 1024, pattern: 0x33 });

    // Full backup; a guest write while it is open must not be in it (the frozen view), but must be
    // dirty for the next incremental.
    const b1 = await backup(vm.id, [q, r], "b1", {
      duringBackup: () => c.writeGuestData(q, { offset: 2 * MiB, length: 128 * 1024, seed: 2 }).then(() => undefined),
    });
    expect(b1.modes).toEqual({ [q]: "full", [r]: "full" });
    for (const id of [q, r]) {
      const pit = join(t.dir, `b1-pit-${id}.raw`);
      const res = await c.exportImage(id, pit, { format: "raw", atBackup: b1.backupId });
      expect(res.source).toBe("backup");
      expect(await same(b1.files[id]!, pit)).toBe(true);
    }
    const now1 = join(t.dir, "now1.raw");
    await c.exportImage(q, now1, { format: "raw" });
    expect(await same(b1.files[q]!, now1)).toBe(false);
    expect(b1.extents[q]!.filter((e) => !e.zero).map((e) => [e.start, e.length])).toEqual([[0, MiB]]);

    // Writes between backups: new data, overwritten data, zeroed data.
    await c.writeGuestData(q, { offset: 4 * MiB, length: 64 * 1024, seed: 3 });
    await c.writeGuestData(q, { offset: 0, length: 64 * 1024, zero: true });
    const b2 = await backup(vm.id, [q, r], "b2", { from: b1.checkpoint, previous: b1 });
    expect(b2.modes).toEqual({ [q]: "incremental", [r]: "full" });
    expect(dirtyRanges(b2.extents[q]!)).toEqual([
      [0, 64 * 1024, true],
      [2 * MiB, 128 * 1024, false],
      [4 * MiB, 64 * 1024, false],
    ]);
    const pit2 = join(t.dir, "b2-pit.raw");
    await c.exportImage(q, pit2, { format: "raw", atBackup: b2.backupId });
    expect(await same(b2.files[q]!, pit2)).toBe(true);

    // A third backup after more writes: the bitmap of b2's checkpoint survived b2's merge.
    await c.writeGuestData(q, { offset: 6 * MiB, length: 64 * 1024, pattern: 0x66 });
    const b3 = await backup(vm.id, [q], "b3", { from: b2.checkpoint, previous: b2 });
    expect(dirtyRanges(b3.extents[q]!)).toEqual([[6 * MiB, 64 * 1024, false]]);
    const pit3 = join(t.dir, "b3-pit.raw");
    await c.exportImage(q, pit3, { format: "raw", atBackup: b3.backupId });
    expect(await same(b3.files[q]!, pit3)).toBe(true);
    const now3 = join(t.dir, "now3.raw");
    await c.exportImage(q, now3, { format: "raw" });
    expect(await same(b3.files[q]!, now3)).toBe(true);

    // An incremental from the first checkpoint covers everything since b1 (bitmaps merged through two merges).
    const b4 = await backup(vm.id, [q], "b4", { from: b1.checkpoint, previous: b1 });
    expect(dirtyRanges(b4.extents[q]!).map(([s]) => s)).toEqual([0, 2 * MiB, 4 * MiB, 6 * MiB]);
    expect(await same(b4.files[q]!, now3)).toBe(true);

    // The disk is back to one clean volume holding every checkpoint bitmap, none in use.
    const disk = t.prd.engine.findDisk(q)!;
    expect(disk.volumes).toHaveLength(1);
    const info = await qemuImg.info(disk.volumes[0]!.path, { format: "qcow2" });
    expect(info.bitmaps.map((b) => b.name).sort()).toEqual([b1.checkpoint, b2.checkpoint, b3.checkpoint, b4.checkpoint].sort());
    expect(info.bitmaps.every((b) => b.flags.includes("auto") && !b.flags.includes("in-use"))).toBe(true);
    expect((await qemuImg.check(disk.volumes[0]!.path, { format: "qcow2" })).corruptions).toBe(0);
    expect(c.backgroundErrors()).toEqual([]);
  });

  it("backup data - a lost bitmap fails the incremental transfer like vdsm (finished_failure, disk ok), a full still works", async () => {
    const vm = await t.prd.control.createVm({ name: "lost", disks: [{ size: 2 * MiB }], status: "up" });
    const d = vm.disks[0]!.id;
    await t.prd.control.writeGuestData(d, { offset: 0, length: 65536, seed: 9 });
    const b1 = await backup(vm.id, [d], "lost1");
    expect(await t.prd.control.faults.deleteBitmap(d, b1.checkpoint)).toBe(1);
    const r = await api.post(`/vms/${vm.id}/backups`, { from_checkpoint_id: b1.checkpoint, disks: { disk: [{ id: d }] } });
    expect(r.status).toBe(201);
    await api.waitFor(`/vms/${vm.id}/backups/${r.json.id}`, (j) => j.phase === "ready");
    expect((await api.get(`/vms/${vm.id}/backups/${r.json.id}/disks`)).json.disk[0].backup_mode).toBe("incremental");
    const tr = await api.post("/imagetransfers", { disk: { id: d }, backup: { id: r.json.id }, direction: "download", format: "raw" });
    expect(tr.status).toBe(201);
    const end = await api.waitFor(`/imagetransfers/${tr.json.id}`, (j) => j.phase === "finished_failure");
    expect(end.json.transfer_url).toBeUndefined();
    expect((await api.get(`/disks/${d}`)).json.status).toBe("ok");
    const ev = (await api.get("/events?search=Bitmap%20does%20not%20exist")).json.event;
    expect(ev[0].severity).toBe("error");
    await api.post(`/vms/${vm.id}/backups/${r.json.id}/finalize`, {});
    await api.waitFor(`/vms/${vm.id}/backups/${r.json.id}`, (j) => j.phase === "succeeded");
    const full = await backup(vm.id, [d], "lost-full");
    const now = join(t.dir, "lost-now.raw");
    await t.prd.control.exportImage(d, now, { format: "raw" });
    expect(await same(full.files[d]!, now)).toBe(true);
  });

  it("backup data - snapshot transfer by volume id: full chain or shallow layer", async () => {
    const vm = await t.prd.control.createVm({ name: "snapxfer", disks: [{ size: 2 * MiB }], status: "up" });
    const d = vm.disks[0]!.id;
    await t.prd.control.writeGuestData(d, { offset: 0, length: 65536, pattern: 0x11 });
    const s1 = await api.post(`/vms/${vm.id}/snapshots`, { description: "s1", persist_memorystate: "false" });
    await api.waitFor(`/vms/${vm.id}/snapshots/${s1.json.id}`, (j) => j.snapshot_status === "ok");
    await t.prd.control.writeGuestData(d, { offset: MiB, length: 65536, pattern: 0x22 });
    const s2 = await api.post(`/vms/${vm.id}/snapshots`, { description: "s2", persist_memorystate: "false" });
    await api.waitFor(`/vms/${vm.id}/snapshots/${s2.json.id}`, (j) => j.snapshot_status === "ok");
    const vol = (await api.get(`/vms/${vm.id}/snapshots/${s2.json.id}/disks`)).json.disk[0].image_id;
    // The active disk of a running VM cannot be transferred outside a backup; its snapshot volume can.
    const refused = await api.post("/imagetransfers", { disk: { id: d }, direction: "download", format: "raw" });
    expect(refused.status).toBe(409);
    for (const shallow of [false, true]) {
      const tr = await api.post("/imagetransfers", { snapshot: { id: vol }, direction: "download", format: "raw", shallow: String(shallow) });
      expect(tr.status, tr.text).toBe(201);
      expect(tr.json.image.id).toBe(d);
      const out = join(t.dir, `snapxfer-${shallow}.raw`);
      const ex = await imageioDownload(api, tr.json.transfer_url, out);
      await api.post(`/imagetransfers/${tr.json.id}/finalize`, {});
      await api.waitFor(`/imagetransfers/${tr.json.id}`, (j) => j.phase === "finished_success");
      const data = ex.filter((e) => !e.zero).map((e) => e.start);
      expect(data).toEqual(shallow ? [MiB] : [0, MiB]);
      if (!shallow) {
        const want = join(t.dir, "snapxfer-want.raw");
        await t.prd.control.exportImage(d, want, { format: "raw", atSnapshot: s2.json.id });
        expect(await same(out, want)).toBe(true);
      } else {
        expect(ex.some((e) => e.hole)).toBe(true);
      }
    }
  });
});
