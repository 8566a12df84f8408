import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { FAST_TIMINGS, RawApi, startTestLab, type TestLab } from "../lab/test-support.ts";

// ovirt-api.md §4 (VMs, disk attachments, disks), §8 (disk creation rules, VM from OVF), §9 (events),
// §10 (snapshots) against the lab, with raw HTTP.
const MiB = 1024 * 1024;
let t: TestLab;
let api: RawApi;
let sdFile: string;
let sdBlock: string;

beforeAll(async () => {
  t = await startTestLab({ timings: FAST_TIMINGS });
  api = new RawApi(t.prd);
  const sds = (await api.get("/storagedomains")).json.storage_domain as Array<{ id: string; name: string; storage: { type: string } }>;
  sdFile = sds.find((s) => s.name === "data")!.id;
  sdBlock = sds.find((s) => s.name === "data-block")!.id;
  expect(sds.find((s) => s.name === "data-block")!.storage.type).toBe("iscsi");
});
afterAll(async () => {
  await api?.close();
  await t?.stop();
});

const diskBody = (o: Record<string, unknown>) => ({
  provisioned_size: String(2 * MiB),
  storage_domains: { storage_domain: [{ id: sdFile }] },
  ...o,
});

describe("lab VMs", () => {
  it("vms - list, search by name (exact, wildcard, case), get; strings for ints and bools", async () => {
    const a = await t.prd.control.createVm({ name: "web01", disks: [{ size: 4 * MiB }], status: "up" });
    await t.prd.control.createVm({ name: "web02", disks: [] });
    await t.prd.control.createVm({ name: "db01", disks: [] });
    const all = await api.get("/vms");
    expect(all.json.vm.map((v: { name: string }) => v.name).sort()).toEqual(["db01", "web01", "web02"]);
    const one = await api.get("/vms?search=name%3Dweb01");
    expect(one.json.vm).toHaveLength(1);
    const vm = one.json.vm[0];
    expect(vm).toMatchObject({ id: a.id, href: `/ovirt-engine/api/vms/${a.id}`, name: "web01", status: "up", stateless: "false" });
    expect(vm.memory).toMatch(/^\d+$/);
    expect(typeof vm.creation_time).toBe("number");
    expect(vm.actions.link.map((l: { rel: string }) => l.rel)).toContain("start");
    expect(vm.link.map((l: { rel: string }) => l.rel)).toEqual(expect.arrayContaining(["diskattachments", "backups", "checkpoints", "snapshots"]));
    expect((await api.get("/vms?search=name%3Dweb*")).json.vm).toHaveLength(2);
    expect((await api.get("/vms?search=name%3DWEB01")).json).toEqual({});
    expect((await api.get("/vms?search=name%3DWEB01&case_sensitive=false")).json.vm).toHaveLength(1);
    expect((await api.get("/vms?search=name%3Dnothing")).json).toEqual({});
    expect((await api.get("/vms;max=1")).json.vm).toHaveLength(1);
    expect((await api.get(`/vms/${a.id}`)).json.initialization).toBeUndefined();
  });

  it("vms - all_content (query or All-Content header) adds the OVF listing the VM's disks", async () => {
    const vm = (await api.get("/vms?search=name%3Dweb01")).json.vm[0];
    const full = await api.get(`/vms/${vm.id}?all_content=true`);
    const conf = full.json.initialization.configuration;
    expect(conf.type).toBe("ovf");
    expect(conf.data).toMatch(/^<\?xml/);
    expect(conf.data).toContain("<Name>web01</Name>");
    const att = (await api.get(`/vms/${vm.id}/diskattachments`)).json.disk_attachment[0];
    expect(conf.data).toContain(`ovf:fileRef="${att.id}/`);
    const viaHeader = await api.get("/vms?search=name%3Dweb01", { "all-content": "true" });
    expect(viaHeader.json.vm[0].initialization.configuration.data).toContain(att.id);
  });

  it("vms - create from OVF: regenerate_ids, name override, disks listed in the OVF attach by id", async () => {
    const src = (await api.get("/vms?search=name%3Dweb01&all_content=true")).json.vm[0];
    const ovf = src.initialization.configuration.data as string;
    const body = (name?: string, regenerate = true) => ({
      cluster: { name: "Default" },
      ...(name ? { name } : {}),
      initialization: { configuration: { type: "ovf", data: ovf }, regenerate_ids: String(regenerate) },
    });
    // The OVF's name exists, and so does its VM id.
    const dupName = await api.post("/vms", body(undefined, true));
    expect(dupName.status).toBe(409);
    expect(dupName.json.detail).toMatch(/^\[Cannot import VM\. Import VM failed - VM Name already exists in the Data Center/);
    const dupId = await api.post("/vms", body("web01-copy", false));
    expect(dupId.status).toBe(409);
    expect(dupId.json.detail).toContain("VM ID already exists in the system");
    // A restored disk with the OVF's disk id (on another engine this is the restore flow) attaches itself.
    const dr = t.prd; // same engine: the source disk is attached, so detach it first
    const att = (await api.get(`/vms/${src.id}/diskattachments`)).json.disk_attachment[0];
    expect((await api.delete(`/vms/${src.id}/diskattachments/${att.id}`)).status).toBe(200);
    const made = await api.post("/vms", body("web01-restored", true));
    expect(made.status).toBe(201);
    expect(made.headers.location).toBe(`${dr.url}${made.json.href}`);
    expect(made.json.id).not.toBe(src.id);
    expect(made.json.name).toBe("web01-restored");
    expect(made.json.status).toBe("down");
    const atts = (await api.get(`/vms/${made.json.id}/diskattachments`)).json.disk_attachment;
    expect(atts.map((a: { id: string }) => a.id)).toEqual([att.id]);
    expect(atts[0]).toMatchObject({ bootable: "true", active: "true", interface: "virtio_scsi" });
    // Without the disk available, the VM is still created and an audit event says why.
    const again = await api.post("/vms", body("web01-nodisk", true));
    expect(again.status).toBe(201);
    expect((await api.get(`/vms/${again.json.id}/diskattachments`)).json).toEqual({});
    const ev = await api.get("/events?search=failed%20to%20attach");
    expect(ev.json.event[0].description).toContain("web01-nodisk");
  });

  it("vms - validation: cluster required, garbage OVF, duplicate plain name", async () => {
    const noCluster = await api.post("/vms", { name: "x" });
    expect(noCluster.json).toEqual({ reason: "Incomplete parameters", detail: "Vm [cluster.id|name] required for add" });
    const bad = await api.post("/vms", { cluster: { name: "Default" }, name: "y", initialization: { configuration: { type: "ovf", data: "<nope/>" } } });
    expect(bad.status).toBe(400);
    const badType = await api.post("/vms", { cluster: { name: "Default" }, initialization: { configuration: { type: "vmx", data: "x" } } });
    expect(badType.json.reason).toBe("Invalid value");
    const dup = await api.post("/vms", { cluster: { name: "Default" }, name: "db01" });
    expect(dup.status).toBe(409);
  });

  it("vms - start/stop/shutdown actions move the status; wrong states give 409", async () => {
    const vm = (await api.get("/vms?search=name%3Ddb01")).json.vm[0];
    expect((await api.post(`/vms/${vm.id}/stop`, {})).status).toBe(409);
    const start = await api.post(`/vms/${vm.id}/start`, {});
    expect(start.status).toBe(200);
    expect(start.json).toEqual({ status: "complete" });
    await api.waitFor(`/vms/${vm.id}`, (j) => j.status === "up");
    expect((await api.post(`/vms/${vm.id}/start`, {})).status).toBe(409);
    expect((await api.post(`/vms/${vm.id}/shutdown`, { async: "true" })).status).toBe(202);
    await api.waitFor(`/vms/${vm.id}`, (j) => j.status === "down");
    await api.post(`/vms/${vm.id}/start`, {});
    await api.waitFor(`/vms/${vm.id}`, (j) => j.status === "up");
    expect((await api.post(`/vms/${vm.id}/stop`, {})).status).toBe(200);
    expect((await api.get(`/vms/${vm.id}`)).json.status).toBe("down");
  });

  it("vms - remove is blocked during a backup and while running; detach_only keeps the disks", async () => {
    const vm = await t.prd.control.createVm({ name: "gone", disks: [{ size: 2 * MiB }], status: "up" });
    const b = await api.post(`/vms/${vm.id}/backups`, { disks: { disk: [{ id: vm.disks[0]!.id }] } });
    expect(b.status).toBe(201);
    const blocked = await api.delete(`/vms/${vm.id}`);
    expect(blocked.status).toBe(409);
    expect(blocked.json.detail).toBe("[Cannot remove VM. The VM is during a backup operation.]");
    await api.waitFor(`/vms/${vm.id}/backups/${b.json.id}`, (j) => j.phase === "ready");
    await api.post(`/vms/${vm.id}/backups/${b.json.id}/finalize`, {});
    await api.waitFor(`/vms/${vm.id}/backups/${b.json.id}`, (j) => j.phase === "succeeded");
    expect((await api.delete(`/vms/${vm.id}`)).json.detail).toBe("[Cannot remove VM. VM is running.]");
    await api.post(`/vms/${vm.id}/stop`, {});
    expect((await api.delete(`/vms/${vm.id};detach_only=true`)).status).toBe(200);
    expect((await api.get(`/vms/${vm.id}`)).status).toBe(404);
    expect((await api.get(`/disks/${vm.disks[0]!.id}`)).status).toBe(200);
  });
});

describe("lab disks and attachments", () => {
  it("disks - creation validation matrix (§8.1) answers 409 with the configuration", async () => {
    const cases: Array<[Record<string, unknown>, number, string?]> = [
      [{ format: "raw", backup: "incremental", sparse: "true" }, 409, "(RAW Sparse backup-Incremental)"],
      [{ format: "cow", sparse: "false", backup: "none" }, 409, "(COW Preallocated backup-None)"],
      [{ format: "raw", sparse: "true", storage_domains: { storage_domain: [{ id: sdBlock }] } }, 409, "(RAW Sparse backup-None)"],
      [{ format: "cow", sparse: "false", backup: "incremental" }, 202],
      [{ format: "raw", sparse: "true" }, 202],
      [{ format: "raw", sparse: "false", storage_domains: { storage_domain: [{ id: sdBlock }] } }, 202],
      [{ format: "cow", sparse: "true", storage_domains: { storage_domain: [{ name: "data-block" }] } }, 202],
    ];
    for (const [o, status, conf] of cases) {
      const r = await api.post("/disks", diskBody({ name: `m-${Math.random().toString(36).slice(2, 8)}`, ...o }));
      expect(r.status, JSON.stringify(o)).toBe(status);
      if (conf) {
        expect(r.json.reason).toBe("Operation Failed");
        expect(r.json.detail).toBe(`[Cannot add Virtual Disk. Disk configuration ${conf} is incompatible with the storage domain type.]`);
      }
    }
    const noSd = await api.post("/disks", { format: "cow", provisioned_size: "1048576" });
    expect(noSd.json.reason).toBe("Incomplete parameters");
  });

  it("disks - create answers 202 locked, then ok; a client id is kept; Expect 201-created blocks", async () => {
    const id = "11111111-2222-4333-8444-555555555555";
    const r = await api.post("/disks", diskBody({ id, name: "restore-1", format: "cow", backup: "incremental", content_type: "data" }));
    expect(r.status).toBe(202);
    expect(r.json).toMatchObject({ id, status: "locked", format: "cow", qcow_version: "qcow2_v3", backup: "incremental", sparse: "true" });
    expect(r.json.provisioned_size).toBe(String(2 * MiB));
    expect(r.json.storage_domains).toEqual({ storage_domain: [{ id: sdFile, href: `/ovirt-engine/api/storagedomains/${sdFile}` }] });
    await api.waitFor(`/disks/${id}`, (j) => j.status === "ok");
    expect((await api.post("/disks", diskBody({ id, format: "cow" }))).status).toBe(409);
    const blocking = await api.post("/disks", diskBody({ name: "blocking", format: "cow" }), { expect: "201-created" });
    expect(blocking.status).toBe(201);
    expect(blocking.json.status).toBe("ok");
    const found = await api.get("/disks?search=alias%3Drestore-1");
    expect(found.json.disk.map((d: { id: string }) => d.id)).toEqual([id]);
    expect((await api.get(`/storagedomains/${sdFile}/disks`)).json.disk.length).toBeGreaterThan(0);
  });

  it("disks - qcow2_v2 → v3 upgrade with PUT qcow_version; other fields only via attachments; raw cannot be incremental", async () => {
    const vm = await t.prd.control.createVm({ name: "old", disks: [{ size: 2 * MiB, qcowVersion: "qcow2_v2" }, { size: MiB, format: "raw" }] });
    const [v2, raw] = vm.disks;
    expect((await api.get(`/disks/${v2!.id}`)).json).toMatchObject({ qcow_version: "qcow2_v2", backup: "none" });
    expect((await api.get(`/disks/${raw!.id}`)).json.qcow_version).toBeUndefined();
    const other = await api.put(`/disks/${v2!.id}`, { alias: "renamed" });
    expect(other.status).toBe(409);
    expect(other.json.detail).toContain("Updating disk attributes other than QCOW version is permitted only for disk-attachments");
    const up = await api.put(`/disks/${v2!.id}`, { qcow_version: "qcow2_v3" });
    expect(up.status).toBe(200);
    expect(up.json.qcow_version).toBe("qcow2_v3");
    const info = await qemuImg.info(t.prd.engine.findDisk(v2!.id)!.volumes[0]!.path, { format: "qcow2" });
    expect(info.compat).toBe("1.1");
    const rawInc = await api.put(`/disks/${raw!.id}`, { backup: "incremental" });
    expect(rawInc.status).toBe(400);
    expect(rawInc.json.detail).toBe("[Cannot edit Virtual Disk. Incremental backup is not supported for RAW format disks.]");
    const viaAtt = await api.put(`/vms/${vm.id}/diskattachments/${v2!.id}`, { disk: { alias: "renamed", backup: "incremental" } });
    expect(viaAtt.status).toBe(200);
    expect((await api.get(`/disks/${v2!.id}`)).json).toMatchObject({ alias: "renamed", backup: "incremental" });
  });

  it("diskattachments - the attachment id is the disk id; nested refs; add, create-and-attach, detach, delete", async () => {
    const vm = await t.prd.control.createVm({ name: "att", disks: [] });
    expect((await api.get(`/vms/${vm.id}/diskattachments`)).json).toEqual({});
    const d = await api.post("/disks", diskBody({ name: "floating", format: "cow" }), { expect: "201-created" });
    const missingIface = await api.post(`/vms/${vm.id}/diskattachments`, { disk: { id: d.json.id } });
    expect(missingIface.json).toEqual({ reason: "Incomplete parameters", detail: "DiskAttachment [interface] required for add" });
    const a = await api.post(`/vms/${vm.id}/diskattachments`, { disk: { id: d.json.id }, interface: "virtio_scsi", bootable: "true", active: "true", pass_discard: "false" });
    expect(a.status).toBe(201);
    expect(a.json).toMatchObject({
      id: d.json.id,
      href: `/ovirt-engine/api/vms/${vm.id}/diskattachments/${d.json.id}`,
      active: "true",
      bootable: "true",
      interface: "virtio_scsi",
      pass_discard: "false",
      read_only: "false",
      disk: { id: d.json.id, href: `/ovirt-engine/api/disks/${d.json.id}` },
      vm: { id: vm.id, href: `/ovirt-engine/api/vms/${vm.id}` },
    });
    expect((await api.post(`/vms/${vm.id}/diskattachments`, { disk: { id: d.json.id }, interface: "virtio" })).status).toBe(409);
    const created = await api.post(`/vms/${vm.id}/diskattachments`, {
      disk: { name: "att-new", format: "cow", provisioned_size: String(MiB), storage_domains: { storage_domain: [{ id: sdFile }] } },
      interface: "virtio",
      active: "true",
    });
    expect(created.status).toBe(201);
    const list = (await api.get(`/vms/${vm.id}/diskattachments`)).json.disk_attachment;
    expect(list).toHaveLength(2);
    expect((await api.delete(`/vms/${vm.id}/diskattachments/${d.json.id}`)).status).toBe(200);
    expect((await api.get(`/disks/${d.json.id}`)).status).toBe(200);
    await api.waitFor(`/disks/${created.json.id}`, (j) => j.status === "ok");
    expect((await api.delete(`/vms/${vm.id}/diskattachments/${created.json.id}?detach_only=false`)).status).toBe(200);
    expect((await api.get(`/disks/${created.json.id}`)).status).toBe(404);
    expect((await api.delete(`/disks/${d.json.id}`)).status).toBe(200);
    expect((await api.get(`/disks/${d.json.id}`)).status).toBe(404);
  });
});

describe("lab snapshots", () => {
  it("snapshots - create without memory: locked → ok; list has the active snapshot; disks carry image_id", async () => {
    const vm = await t.prd.control.createVm({ name: "snap", disks: [{ size: 2 * MiB }, { size: MiB, format: "raw" }], status: "up" });
    await t.prd.control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 65536, pattern: 1 });
    const before = (await api.get(`/disks/${vm.disks[0]!.id}`)).json.image_id;
    expect((await api.post(`/vms/${vm.id}/snapshots`, { persist_memorystate: "false" })).json.reason).toBe("Incomplete parameters");
    const s = await api.post(`/vms/${vm.id}/snapshots`, {
      description: "backup-1",
      persist_memorystate: "false",
      disk_attachments: { disk_attachment: [{ disk: { id: vm.disks[0]!.id } }] },
    });
    expect(s.status).toBe(202);
    expect(s.json).toMatchObject({ description: "backup-1", snapshot_status: "locked", snapshot_type: "regular", persist_memorystate: "false" });
    expect(typeof s.json.date).toBe("number");
    await api.waitFor(`/vms/${vm.id}/snapshots/${s.json.id}`, (j) => j.snapshot_status === "ok");
    const list = (await api.get(`/vms/${vm.id}/snapshots`)).json.snapshot;
    expect(list.map((x: { snapshot_type: string }) => x.snapshot_type).sort()).toEqual(["active", "regular"]);
    expect(list.find((x: { snapshot_type: string }) => x.snapshot_type === "active").description).toBe("Active VM");
    const disks = (await api.get(`/vms/${vm.id}/snapshots/${s.json.id}/disks`)).json.disk;
    expect(disks).toHaveLength(1);
    expect(disks[0]).toMatchObject({ id: vm.disks[0]!.id, image_id: before, snapshot: { id: s.json.id } });
    // The disk's active volume moved on; the snapshot keeps the old one.
    expect((await api.get(`/disks/${vm.disks[0]!.id}`)).json.image_id).not.toBe(before);
    // Writes after the snapshot do not change it.
    await t.prd.control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 65536, pattern: 2 });
    const a = `${t.dir}/snap-a.raw`;
    const b = `${t.dir}/snap-b.raw`;
    await t.prd.control.exportImage(vm.disks[0]!.id, a, { format: "raw", atSnapshot: s.json.id });
    await t.prd.control.exportImage(vm.disks[0]!.id, b, { format: "raw" });
    expect((await qemuImg.compare(a, b, { formatA: "raw", formatB: "raw" })).identical).toBe(false);
    // Delete merges the snapshot away; the data stays current.
    expect((await api.delete(`/vms/${vm.id}/snapshots/${s.json.id}`)).status).toBe(200);
    await api.waitFor(`/vms/${vm.id}/snapshots/${s.json.id}`, (_j, status) => status === 404);
    const c = `${t.dir}/snap-c.raw`;
    await t.prd.control.exportImage(vm.disks[0]!.id, c, { format: "raw" });
    expect((await qemuImg.compare(b, c, { formatA: "raw", formatB: "raw" })).identical).toBe(true);
    expect(t.prd.engine.findDisk(vm.disks[0]!.id)!.volumes).toHaveLength(1);
  });

  it("snapshots - restore brings the data back and marks the VM's checkpoints invalid", async () => {
    const vm = await t.prd.control.createVm({ name: "restore", disks: [{ size: 2 * MiB }], status: "down" });
    const disk = vm.disks[0]!.id;
    await t.prd.control.writeGuestData(disk, { offset: 0, length: 65536, pattern: 3 });
    const b = await api.post(`/vms/${vm.id}/backups`, { disks: { disk: [{ id: disk }] } });
    await api.waitFor(`/vms/${vm.id}/backups/${b.json.id}`, (j) => j.phase === "ready");
    await api.post(`/vms/${vm.id}/backups/${b.json.id}/finalize`, {});
    await api.waitFor(`/vms/${vm.id}/backups/${b.json.id}`, (j) => j.phase === "succeeded");
    const s = await api.post(`/vms/${vm.id}/snapshots`, { description: "before", persist_memorystate: "false" }, { expect: "201-created" });
    expect(s.status).toBe(201);
    const want = `${t.dir}/restore-want.raw`;
    await t.prd.control.exportImage(disk, want, { format: "raw" });
    await t.prd.control.writeGuestData(disk, { offset: 0, length: 131072, pattern: 4 });
    const r = await api.post(`/vms/${vm.id}/snapshots/${s.json.id}/restore`, {});
    expect(r.status).toBe(200);
    const got = `${t.dir}/restore-got.raw`;
    await t.prd.control.exportImage(disk, got, { format: "raw" });
    expect((await qemuImg.compare(want, got, { formatA: "raw", formatB: "raw" })).identical).toBe(true);
    const cps = (await api.get(`/vms/${vm.id}/checkpoints`)).json.checkpoint;
    expect(cps.map((c: { state: string }) => c.state)).toEqual(["invalid"]);
    const inc = await api.post(`/vms/${vm.id}/backups`, { from_checkpoint_id: cps[0].id, disks: { disk: [{ id: disk }] } });
    expect(inc.status).toBe(400);
    expect(inc.json.detail).toBe(`[Cannot backup VM. Checkpoint ID ${cps[0].id} is invalid and should be removed.]`);
  });
});

describe("lab events", () => {
  it("events - POST needs description, severity, origin, custom_id; origin oVirt refused; (origin, custom_id) unique", async () => {
    const missing = await api.post("/events", { description: "x", custom_id: "1" });
    expect(missing.status).toBe(400);
    expect(missing.json).toEqual({ reason: "Incomplete parameters", detail: "Event [severity, origin] required for add" });
    const ovirt = await api.post("/events", { description: "x", severity: "alert", origin: "oVirt", custom_id: "1" });
    expect(ovirt.json.detail).toBe("[Illegal Origin for External Event : oVirt]");
    const vm = (await api.get("/vms?search=name%3Dweb02")).json.vm[0];
    const ok = await api.post("/events", { description: "Backup of VM web02 failed", severity: "alert", origin: "ferry", custom_id: "1714521600", vm: { id: vm.id }, flood_rate: "30" });
    expect(ok.status).toBe(201);
    expect(ok.json).toMatchObject({ severity: "alert", origin: "ferry", custom_id: "1714521600", vm: { id: vm.id }, flood_rate: "30" });
    expect(ok.json.index).toMatch(/^\d+$/);
    expect(typeof ok.json.time).toBe("number");
    const dup = await api.post("/events", { description: "again", severity: "normal", origin: "ferry", custom_id: 1714521600 });
    expect(dup.status).toBe(400);
    expect(dup.json.detail).toBe("[External Event with this custom id already exists.]");
    const other = await api.post("/events", { description: "again", severity: "normal", origin: "other", custom_id: "1714521600" });
    expect(other.status).toBe(201);
    const corr = await api.post("/events", { description: "c", severity: "normal", origin: "ferry", custom_id: "7" }, { "correlation-id": "run-42!/x" });
    expect(corr.json.correlation_id).toBe("run-42x");
    const badSev = await api.post("/events", { description: "x", severity: "fatal", origin: "ferry", custom_id: "5" });
    expect(badSev.json.reason).toBe("Invalid value");
  });

  it("events - list is newest first; from= returns later events only; search= matches text; the lab logs its own", async () => {
    const all = (await api.get("/events")).json.event as Array<{ index: string; description: string; origin: string }>;
    const idx = all.map((e) => Number(e.index));
    expect(idx).toEqual([...idx].sort((a, b) => b - a));
    const mid = idx[Math.floor(idx.length / 2)]!;
    const from = (await api.get(`/events?from=${mid}`)).json.event as Array<{ index: string }>;
    expect(from.every((e) => Number(e.index) > mid)).toBe(true);
    expect(from).toHaveLength(idx.filter((i) => i > mid).length);
    const backups = (await api.get("/events?search=Backup")).json.event as Array<{ description: string; origin: string }>;
    expect(backups.some((e) => e.origin === "oVirt" && /^Backup .* started$/.test(e.description))).toBe(true);
    expect((await api.get("/events?max=1")).json.event).toHaveLength(1);
  });
});
