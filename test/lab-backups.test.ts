import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { FAST_TIMINGS, RawApi, startTestLab, type TestLab } from "../lab/test-support.ts";
import { waitFor } from "./harness/wait-for.ts";

// ovirt-api.md §5 (backups, checkpoints) and §12 (backup state machine) against the lab.
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

/**
 * Count the engine's phase timers (Engine.later) started from now on and how many have run to the
 * end. A timer that starts another counts the new one before it counts itself done, so
 * `finished === started` means no phase timer is pending.
 */
function watchEngineTimers(engine: TestLab["prd"]["engine"]): { readonly started: number; readonly finished: number; restore(): void } {
  let started = 0;
  let finished = 0;
  const later = engine.later.bind(engine);
  const spy = vi.spyOn(engine, "later").mockImplementation((ms, fn) => {
    started++;
    later(ms, async () => {
      try {
        await fn();
      } finally {
        finished++;
      }
    });
  });
  return {
    get started() {
      return started;
    },
    get finished() {
      return finished;
    },
    restore: () => spy.mockRestore(),
  };
}

async function fullCycle(vmId: string, diskIds: string[], from?: string) {
  const r = await api.post(`/vms/${vmId}/backups`, { ...(from ? { from_checkpoint_id: from } : {}), disks: { disk: diskIds.map((id) => ({ id })) } });
  expect(r.status, r.text).toBe(201);
  const ready = await api.waitFor(`/vms/${vmId}/backups/${r.json.id}`, (j) => j.phase === "ready");
  const disks = (await api.get(`/vms/${vmId}/backups/${r.json.id}/disks`)).json.disk as Array<{ id: string; backup_mode: string }>;
  expect((await api.post(`/vms/${vmId}/backups/${r.json.id}/finalize`, {})).status).toBe(200);
  await api.waitFor(`/vms/${vmId}/backups/${r.json.id}`, (j) => j.phase === "succeeded");
  return { id: r.json.id as string, checkpoint: ready.json.to_checkpoint_id as string, modes: Object.fromEntries(disks.map((d) => [d.id, d.backup_mode])) };
}

describe("lab backups", () => {
  it("backups - phases initializing → starting → ready; to_checkpoint_id only at ready; hybrid snapshot reference", async () => {
    const vm = await t.prd.control.createVm({ name: "phases", disks: [{ size: 2 * MiB }], status: "up" });
    const r = await api.post(`/vms/${vm.id}/backups`, { description: "nightly", disks: { disk: [{ id: vm.disks[0]!.id }] } });
    expect(r.status).toBe(201);
    expect(r.headers.location).toBe(`${t.prd.url}/ovirt-engine/api/vms/${vm.id}/backups/${r.json.id}`);
    expect(r.json).toMatchObject({ phase: "initializing", description: "nightly", vm: { id: vm.id } });
    expect(r.json.to_checkpoint_id).toBeUndefined();
    expect(typeof r.json.creation_date).toBe("number");
    const seen = new Set<string>();
    const ready = await api.waitFor(`/vms/${vm.id}/backups/${r.json.id}`, (j) => {
      seen.add(j.phase);
      return j.phase === "ready";
    });
    expect([...seen].every((p) => ["initializing", "starting", "ready"].includes(p))).toBe(true);
    expect(ready.json.to_checkpoint_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(ready.json.snapshot.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(ready.json.host).toBeUndefined();
    expect(ready.json.link).toEqual([{ href: `/ovirt-engine/api/vms/${vm.id}/backups/${r.json.id}/disks`, rel: "disks" }]);
    // The auto snapshot shows on the VM while the backup is open.
    const snaps = (await api.get(`/vms/${vm.id}/snapshots`)).json.snapshot as Array<{ description: string }>;
    expect(snaps.map((s) => s.description)).toContain("Auto-generated for Backup VM");
    // READY lasts until finalized. This sleep is the test itself (nothing may move the backup on
    // while time passes), so it stays: 300 ms is six phase periods (FAST_TIMINGS.backupPhaseMs 50).
    await new Promise((res) => setTimeout(res, 300));
    expect((await api.get(`/vms/${vm.id}/backups/${r.json.id}`)).json.phase).toBe("ready");
    expect((await api.get(`/disks/${vm.disks[0]!.id}`)).json.backup_mode).toBe("full");
    const fin = await api.post(`/vms/${vm.id}/backups/${r.json.id}/finalize`, {});
    expect(fin.json).toEqual({ status: "complete" });
    await api.waitFor(`/vms/${vm.id}/backups/${r.json.id}`, (j) => j.phase === "succeeded");
    expect((await api.get(`/disks/${vm.disks[0]!.id}`)).json.backup_mode).toBeUndefined();
    expect(((await api.get(`/vms/${vm.id}/snapshots`)).json.snapshot as unknown[]).length).toBe(1);
    // Finished backups stay listed.
    expect((await api.get(`/vms/${vm.id}/backups`)).json.backup.map((b: { id: string }) => b.id)).toEqual([r.json.id]);
  });

  it("backups - finalize: 400 when already finalizing or finished; hybrid finalize passes through finalizing", async () => {
    const vm = await t.prd.control.createVm({ name: "fin", disks: [{ size: MiB }], status: "up" });
    const r = await api.post(`/vms/${vm.id}/backups`, { disks: { disk: [{ id: vm.disks[0]!.id }] } });
    await api.waitFor(`/vms/${vm.id}/backups/${r.json.id}`, (j) => j.phase === "ready");
    t.prd.control.faults.stallFinalize(400);
    expect((await api.post(`/vms/${vm.id}/backups/${r.json.id}/finalize`, {})).status).toBe(200);
    expect((await api.get(`/vms/${vm.id}/backups/${r.json.id}`)).json.phase).toBe("finalizing");
    const again = await api.post(`/vms/${vm.id}/backups/${r.json.id}/finalize`, {});
    expect(again.status).toBe(400);
    expect(again.json.detail).toBe(`[VM 'fin' backup '${r.json.id}' is already in 'finalizing' phase, no need to stop the backup again]`);
    await api.waitFor(`/vms/${vm.id}/backups/${r.json.id}`, (j) => j.phase === "succeeded");
    const done = await api.post(`/vms/${vm.id}/backups/${r.json.id}/finalize`, {});
    expect(done.json.detail).toContain("is already in 'succeeded' phase");
  });

  it("backups - finalize is refused with 409 while a transfer of the backup is open", async () => {
    const vm = await t.prd.control.createVm({ name: "xfer", disks: [{ size: MiB }], status: "up" });
    const r = await api.post(`/vms/${vm.id}/backups`, { disks: { disk: [{ id: vm.disks[0]!.id }] } });
    await api.waitFor(`/vms/${vm.id}/backups/${r.json.id}`, (j) => j.phase === "ready");
    const tr = await api.post("/imagetransfers", { disk: { id: vm.disks[0]!.id }, backup: { id: r.json.id }, direction: "download", format: "raw" });
    expect(tr.status).toBe(201);
    const blocked = await api.post(`/vms/${vm.id}/backups/${r.json.id}/finalize`, {});
    expect(blocked.status).toBe(409);
    expect(blocked.json).toEqual({ reason: "Operation Failed", detail: "[Cannot stop VM backup. There is an active image transfer for VM backup]" });
    await api.post(`/imagetransfers/${tr.json.id}/finalize`, {});
    await api.waitFor(`/imagetransfers/${tr.json.id}`, (j) => j.phase === "finished_success");
    expect((await api.post(`/vms/${vm.id}/backups/${r.json.id}/finalize`, {})).status).toBe(200);
    await api.waitFor(`/vms/${vm.id}/backups/${r.json.id}`, (j) => j.phase === "succeeded");
  });

  it("backups - validations answer the engine's messages verbatim", async () => {
    const vm = await t.prd.control.createVm({ name: "val", disks: [{ size: MiB }, { size: MiB, active: false }], status: "up" });
    const [d1, d2] = vm.disks;
    const post = (b: unknown) => api.post(`/vms/${vm.id}/backups`, b);
    expect((await post({})).json).toEqual({ reason: "Incomplete parameters", detail: "Backup [disks] required for add" });
    const missingCp = "3f2a0000-0000-4000-8000-000000000000";
    expect((await post({ from_checkpoint_id: missingCp, disks: { disk: [{ id: d1!.id }] } })).json).toEqual({
      reason: "Operation Failed",
      detail: `[Cannot backup VM. Checkpoint ID ${missingCp} doesn't exist.]`,
    });
    const noDisk = await post({ disks: { disk: [{ id: "3f2a0000-0000-4000-8000-000000000001" }] } });
    expect(noDisk.status).toBe(400);
    expect(noDisk.json.detail).toBe("[Cannot backup VM. The specified disk does not exist.]");
    const inactive = await post({ disks: { disk: [{ id: d2!.id }] } });
    expect(inactive.status).toBe(409);
    expect(inactive.json.detail).toBe(`[Cannot backup VM. The following disks are not active on VM val: ${d2!.id}]`);
    const long = await post({ description: "x".repeat(1025), disks: { disk: [{ id: d1!.id }] } });
    expect(long.status).toBe(400);
    const first = await post({ disks: { disk: [{ id: d1!.id }] } });
    expect(first.status).toBe(201);
    const second = await post({ disks: { disk: [{ id: d1!.id }] } });
    expect(second.status).toBe(409);
    expect(second.json.detail).toBe("[Cannot backup VM. The VM is during a backup operation.]");
    await api.waitFor(`/vms/${vm.id}/backups/${first.json.id}`, (j) => j.phase === "ready");
    await api.post(`/vms/${vm.id}/backups/${first.json.id}/finalize`, {});
    await api.waitFor(`/vms/${vm.id}/backups/${first.json.id}`, (j) => j.phase === "succeeded");
    const dupId = await post({ id: first.json.id, disks: { disk: [{ id: d1!.id }] } });
    expect(dupId.status).toBe(400);
    expect(dupId.json.detail).toBe(`[Cannot backup VM. The specified VM backup ID ${first.json.id} already exists.]`);
    expect((await api.post(`/vms/${vm.id}/suspend`, {})).status).toBe(200);
    const status = await post({ disks: { disk: [{ id: d1!.id }] } });
    expect(status.status).toBe(409);
    expect(status.json.detail).toBe("[Cannot backup VM. The Virtual Machine should be in Up or Down status.]");
  });

  it("backups - per-disk backup_mode: incremental only for v3 qcow2 disks in from_checkpoint; raw, v2 and new disks are full", async () => {
    const vm = await t.prd.control.createVm({
      name: "modes",
      disks: [{ size: 2 * MiB }, { size: MiB, format: "raw" }, { size: MiB, qcowVersion: "qcow2_v2" }],
      status: "up",
    });
    const ids = vm.disks.map((d) => d.id);
    const full = await fullCycle(vm.id, ids);
    expect(Object.values(full.modes)).toEqual(["full", "full", "full"]);
    const cps = (await api.get(`/vms/${vm.id}/checkpoints/${full.checkpoint}/disks`)).json.disk as Array<{ id: string }>;
    expect(cps.map((d) => d.id)).toEqual([ids[0]]);
    const added = await t.prd.control.addDisk(vm.id, { size: MiB });
    const inc = await fullCycle(vm.id, [...ids, added.id], full.checkpoint);
    expect(inc.modes).toEqual({ [ids[0]!]: "incremental", [ids[1]!]: "full", [ids[2]!]: "full", [added.id]: "full" });
    // The v2 disk cannot carry bitmaps; raw disks have none.
    const v2 = t.prd.engine.findDisk(ids[2]!)!;
    expect((await qemuImg.info(v2.volumes[0]!.path, { format: "qcow2" })).bitmaps).toEqual([]);
    const d0 = t.prd.engine.findDisk(ids[0]!)!;
    expect((await qemuImg.info(d0.volumes[0]!.path, { format: "qcow2" })).bitmaps.map((b) => b.name).sort()).toEqual(
      [full.checkpoint, inc.checkpoint].sort(),
    );
  });

  it("checkpoints - listed as a chain with parent_id and state; delete relinks; unknown 400; during backup 409", async () => {
    const vm = await t.prd.control.createVm({ name: "chain", disks: [{ size: MiB }], status: "down" });
    const d = vm.disks[0]!.id;
    const a = await fullCycle(vm.id, [d]);
    const b = await fullCycle(vm.id, [d], a.checkpoint);
    const c = await fullCycle(vm.id, [d], b.checkpoint);
    let list = (await api.get(`/vms/${vm.id}/checkpoints`)).json.checkpoint as Array<{ id: string; parent_id?: string; state: string; href: string }>;
    expect(list.map((x) => [x.id, x.parent_id, x.state])).toEqual([
      [a.checkpoint, undefined, "created"],
      [b.checkpoint, a.checkpoint, "created"],
      [c.checkpoint, b.checkpoint, "created"],
    ]);
    expect(list[0]!.href).toBe(`/ovirt-engine/api/vms/${vm.id}/checkpoints/${a.checkpoint}`);
    expect((await api.get(`/vms/${vm.id}/checkpoints/${b.checkpoint}`)).json.vm.id).toBe(vm.id);
    expect((await api.delete(`/vms/${vm.id}/checkpoints/${b.checkpoint}`)).status).toBe(200);
    await api.waitFor(`/vms/${vm.id}/checkpoints/${b.checkpoint}`, (_j, s) => s === 404);
    list = (await api.get(`/vms/${vm.id}/checkpoints`)).json.checkpoint;
    expect(list.map((x) => [x.id, x.parent_id])).toEqual([
      [a.checkpoint, undefined],
      [c.checkpoint, a.checkpoint],
    ]);
    const disk = t.prd.engine.findDisk(d)!;
    expect((await qemuImg.info(disk.volumes[0]!.path, { format: "qcow2" })).bitmaps.map((x) => x.name).sort()).toEqual([a.checkpoint, c.checkpoint].sort());
    const unknown = await api.delete(`/vms/${vm.id}/checkpoints/${b.checkpoint}`);
    expect(unknown.status).toBe(400);
    expect(unknown.json.detail).toBe(`[Cannot remove checkpoint. Checkpoint ID ${b.checkpoint} doesn't exist.]`);
    const open = await api.post(`/vms/${vm.id}/backups`, { disks: { disk: [{ id: d }] } });
    const busy = await api.delete(`/vms/${vm.id}/checkpoints/${a.checkpoint}`);
    expect(busy.status).toBe(409);
    expect(busy.json.detail).toBe("[Cannot remove checkpoint. The VM is during a backup operation.]");
    await api.waitFor(`/vms/${vm.id}/backups/${open.json.id}`, (j) => j.phase === "ready");
    await api.post(`/vms/${vm.id}/backups/${open.json.id}/finalize`, {});
    await api.waitFor(`/vms/${vm.id}/backups/${open.json.id}`, (j) => j.phase === "succeeded");
    // The first checkpoint's removal relinks the chain root.
    await api.delete(`/vms/${vm.id}/checkpoints/${a.checkpoint}`);
    await api.waitFor(`/vms/${vm.id}/checkpoints/${a.checkpoint}`, (_j, s) => s === 404);
    list = (await api.get(`/vms/${vm.id}/checkpoints`)).json.checkpoint;
    expect(list[0]!.parent_id).toBeUndefined();
  });

  it("backups - a finalize before ready ends the backup failed and leaves no snapshot or checkpoint", async () => {
    const vm = await t.prd.control.createVm({ name: "early", disks: [{ size: MiB }], status: "up" });
    const saved = t.prd.engine.timings.backupPhaseMs;
    const timers = watchEngineTimers(t.prd.engine);
    try {
      t.prd.engine.timings.backupPhaseMs = 1000; // so the finalize surely comes before ready
      const r = await api.post(`/vms/${vm.id}/backups`, { disks: { disk: [{ id: vm.disks[0]!.id }] } });
      t.prd.engine.timings.backupPhaseMs = saved;
      expect((await api.post(`/vms/${vm.id}/backups/${r.json.id}/finalize`, {})).status).toBe(200);
      await api.waitFor(`/vms/${vm.id}/backups/${r.json.id}`, (j) => j.phase === "failed");
      // Let the phase timers run out: the backup's own (1 s) timer fires on a failed backup and
      // must leave nothing behind.
      await waitFor(() => timers.started > 0 && timers.finished === timers.started, {
        what: () => `the engine's phase timers to run out (${timers.finished} of ${timers.started} done)`,
      });
      expect((await api.get(`/vms/${vm.id}/checkpoints`)).json).toEqual({});
      expect(((await api.get(`/vms/${vm.id}/snapshots`)).json.snapshot as unknown[]).length).toBe(1);
      expect(t.prd.engine.findDisk(vm.disks[0]!.id)!.volumes).toHaveLength(1);
      const ev = (await api.get(`/events?search=${r.json.id}`)).json.event as Array<{ description: string; severity: string }>;
      expect(ev.some((e) => e.severity === "error" && e.description.includes("failed"))).toBe(true);
    } finally {
      t.prd.engine.timings.backupPhaseMs = saved;
      timers.restore();
    }
  });

  it("backups - an engine without incremental backup or without the backup API", async () => {
    const vm = await t.prd.control.createVm({ name: "nobackup", disks: [{ size: MiB }], status: "up" });
    const full = await fullCycle(vm.id, [vm.disks[0]!.id]);
    t.prd.control.setBackupSupport("no-incremental");
    try {
      const r = await api.post(`/vms/${vm.id}/backups`, { from_checkpoint_id: full.checkpoint, disks: { disk: [{ id: vm.disks[0]!.id }] } });
      expect(r.status).toBe(400);
      expect(r.json.detail).toBe("[Cannot backup VM. Incremental backup is not supported.]");
      t.prd.control.setBackupSupport("none");
      expect((await api.post(`/vms/${vm.id}/backups`, { disks: { disk: [{ id: vm.disks[0]!.id }] } })).status).toBe(404);
    } finally {
      t.prd.control.setBackupSupport("hybrid");
    }
    expect(t.prd.control.backgroundErrors()).toEqual([]);
  });
});
