import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { seededBytes } from "../lab/mod.ts";
import { FAST_TIMINGS, imageioUpload, RawApi, startTestLab, type TestLab } from "../lab/test-support.ts";

// ovirt-api.md §6 (image transfers) and §8.2 (upload) against the lab and its imageio daemon.
const MiB = 1024 * 1024;
let t: TestLab;
let api: RawApi;
let sd: string;

beforeAll(async () => {
  t = await startTestLab({ timings: FAST_TIMINGS });
  api = new RawApi(t.prd);
  sd = (await api.get("/storagedomains?search=name%3Ddata")).json.storage_domain[0].id;
});
afterAll(async () => {
  await api?.close();
  await t?.stop();
});

async function newDisk(name: string, o: Record<string, unknown> = {}): Promise<string> {
  const r = await api.post("/disks", {
    name,
    format: "cow",
    sparse: "true",
    backup: "incremental",
    provisioned_size: String(4 * MiB),
    storage_domains: { storage_domain: [{ id: sd }] },
    ...o,
  });
  expect(r.status, r.text).toBe(202);
  await api.waitFor(`/disks/${r.json.id}`, (j) => j.status === "ok");
  return r.json.id as string;
}

async function uploadTransfer(diskId: string, extra: Record<string, unknown> = {}) {
  const r = await api.post("/imagetransfers", { disk: { id: diskId }, direction: "upload", format: "raw", timeout_policy: "cancel", ...extra });
  expect(r.status, r.text).toBe(201);
  return r.json;
}

async function downVmDisk(name: string): Promise<{ vmId: string; diskId: string }> {
  const vm = await t.prd.control.createVm({ name, disks: [{ size: 2 * MiB }], status: "down" });
  await t.prd.control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: MiB, seed: 5 });
  return { vmId: vm.id, diskId: vm.disks[0]!.id };
}

describe("lab image transfers", () => {
  it("create - POST already answers transferring with transfer_url on imageio, proxy_url, and `image` (not disk)", async () => {
    const { diskId } = await downVmDisk("shape");
    const r = await api.post("/imagetransfers", { disk: { id: diskId }, direction: "download", format: "raw", inactivity_timeout: "120", timeout_policy: "cancel" });
    expect(r.status).toBe(201);
    expect(r.headers.location).toBe(`${t.prd.url}${r.json.href}`);
    const x = r.json;
    expect(x).toMatchObject({
      phase: "transferring",
      direction: "download",
      format: "raw",
      shallow: "false",
      active: "false",
      transferred: "0",
      inactivity_timeout: "120",
      timeout_policy: "cancel",
      image: { id: diskId },
    });
    expect(x.disk).toBeUndefined();
    expect(x.backup).toBeUndefined();
    expect(x.transfer_url).toMatch(new RegExp(`^${t.prd.imageioUrl}/images/[0-9a-f-]{36}$`));
    expect(x.proxy_url.split("/images/")[1]).toBe(x.transfer_url.split("/images/")[1]);
    expect(x.host.href).toMatch(/^\/ovirt-engine\/api\/hosts\//);
    expect((await api.get(`/disks/${diskId}`)).json.status).toBe("locked");
    const again = await api.post("/imagetransfers", { disk: { id: diskId }, direction: "download", format: "raw" });
    expect(again.status).toBe(409);
    expect(again.json.detail).toBe("[Cannot transfer Virtual Disk. Disk shape_Disk1 is being transferred.]");
    const list = await api.get("/imagetransfers");
    expect(list.json.image_transfer.map((i: { id: string }) => i.id)).toContain(x.id);
    expect((await api.post(`/imagetransfers/${x.id}/finalize`, {})).json).toEqual({ status: "complete" });
    const done = await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_success");
    expect(done.json.phase).toBe("finished_success");
    expect((await api.get(`/disks/${diskId}`)).json.status).toBe("ok");
    // The ticket is gone: imageio answers 403.
    expect((await api.raw("OPTIONS", x.transfer_url)).status).toBe(403);
  });

  it("create - validation: no image for a download, cow with a backup, unknown or unready backup, locked disk", async () => {
    const noImage = await api.post("/imagetransfers", { direction: "download", format: "raw" });
    expect(noImage.status).toBe(400);
    expect(noImage.json.detail).toBe("[Cannot transfer Virtual Disk. image not specified for download]");
    const vm = await t.prd.control.createVm({ name: "xv", disks: [{ size: MiB }], status: "up" });
    const d = vm.disks[0]!.id;
    // Slow phases and disk creation for this test, so "not ready" and "locked" are not races.
    const saved = { ...t.prd.engine.timings };
    t.prd.engine.timings.backupPhaseMs = 1500;
    t.prd.engine.timings.diskCreateMs = 3000;
    const b = await api.post(`/vms/${vm.id}/backups`, { disks: { disk: [{ id: d }] } });
    const locked = await api.post("/disks", { name: "lk", format: "cow", provisioned_size: String(MiB), storage_domains: { storage_domain: [{ id: sd }] } });
    t.prd.engine.timings.backupPhaseMs = saved.backupPhaseMs;
    t.prd.engine.timings.diskCreateMs = saved.diskCreateMs;
    const early = await api.post("/imagetransfers", { disk: { id: d }, backup: { id: b.json.id }, direction: "download", format: "raw" });
    expect(early.status).toBe(409);
    expect(early.json.detail).toMatch(/^\[Cannot transfer Virtual Disk\. The VM backup is not in READY phase, backup phase is (INITIALIZING|STARTING)\.\]$/);
    const lockedXfer = await api.post("/imagetransfers", { disk: { id: locked.json.id }, direction: "upload", format: "raw" });
    expect(lockedXfer.status).toBe(409);
    expect(lockedXfer.json.detail).toBe("[Cannot transfer Virtual Disk. Disk is locked. Please try again later.]");

    await api.waitFor(`/vms/${vm.id}/backups/${b.json.id}`, (j) => j.phase === "ready");
    const cow = await api.post("/imagetransfers", { disk: { id: d }, backup: { id: b.json.id }, direction: "download", format: "cow" });
    expect(cow.status).toBe(400);
    expect(cow.json.detail).toBe("[Cannot transfer Virtual Disk. The specified format is not applicable for VM backup.]");
    const missing = await api.post("/imagetransfers", { disk: { id: d }, backup: { id: "0b0b0b0b-0000-4000-8000-000000000000" }, direction: "download", format: "raw" });
    expect(missing.status).toBe(400);
    expect(missing.json.detail).toBe("[Cannot transfer Virtual Disk. The specified VM backup does not exist.]");
    await api.post(`/vms/${vm.id}/backups/${b.json.id}/finalize`, {});
    await api.waitFor(`/vms/${vm.id}/backups/${b.json.id}`, (j) => j.phase === "succeeded");
    const unknown = await api.post("/imagetransfers", { disk: { id: "0b0b0b0b-0000-4000-8000-000000000001" }, direction: "upload" });
    expect(unknown.status).toBe(404);
  });

  it("upload - PUT raw data, finalize: the engine verifies the volume, disk ok, finished_success, data identical", async () => {
    const diskId = await newDisk("up-ok");
    const src = join(t.dir, "up-src.raw");
    const data = Buffer.alloc(4 * MiB);
    seededBytes(77, MiB).copy(data, MiB);
    data.fill(0x5a, 3 * MiB, 3 * MiB + 4096);
    await writeFile(src, data);
    const x = await uploadTransfer(diskId);
    expect(x.phase).toBe("transferring");
    const opts = await api.raw("OPTIONS", x.transfer_url);
    expect(opts.json.features).toEqual(expect.arrayContaining(["extents", "zero", "flush"]));
    await imageioUpload(api, x.transfer_url, src);
    await api.post(`/imagetransfers/${x.id}/finalize`, {});
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_success");
    expect((await api.get(`/disks/${diskId}`)).json.status).toBe("ok");
    const out = join(t.dir, "up-out.raw");
    await t.prd.control.exportImage(diskId, out, { format: "raw" });
    expect((await qemuImg.compare(src, out, { formatA: "raw", formatB: "raw" })).identical).toBe(true);
  });

  it("upload - cancel deletes the disk (finished_cleanup)", async () => {
    const diskId = await newDisk("up-cancel");
    const x = await uploadTransfer(diskId);
    expect((await api.post(`/imagetransfers/${x.id}/cancel`, {})).status).toBe(200);
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_cleanup");
    expect((await api.get(`/disks/${diskId}`)).status).toBe(404);
  });

  it("upload - a system failure pauses the upload (paused_system); cancel then deletes the disk", async () => {
    const diskId = await newDisk("up-fail");
    t.prd.control.faults.failNextTransfer("initializing", "upload");
    const r = await api.post("/imagetransfers", { disk: { id: diskId }, direction: "upload", format: "raw" });
    expect(r.status).toBe(201);
    expect(r.json.phase).toBe("paused_system");
    expect(r.json.transfer_url).toBeUndefined();
    // Pausing is a no-op outside `transferring`.
    expect((await api.post(`/imagetransfers/${r.json.id}/pause`, {})).status).toBe(200);
    expect((await api.get(`/imagetransfers/${r.json.id}`)).json.phase).toBe("paused_system");
    await api.post(`/imagetransfers/${r.json.id}/cancel`, {});
    await api.waitFor(`/imagetransfers/${r.json.id}`, (j) => j.phase === "finished_cleanup");
    expect((await api.get(`/disks/${diskId}`)).status).toBe(404);
  });

  it("upload - a failed verification at finalize ends finished_failure and deletes the disk", async () => {
    const diskId = await newDisk("up-verify");
    const x = await uploadTransfer(diskId);
    t.prd.control.faults.failNextTransfer("finalizing");
    // Armed after creation: only a later transfer picks it up, so use a second disk.
    const d2 = await newDisk("up-verify-2");
    const y = await uploadTransfer(d2);
    await api.post(`/imagetransfers/${y.id}/finalize`, {});
    await api.waitFor(`/imagetransfers/${y.id}`, (j) => j.phase === "finished_failure");
    expect((await api.get(`/disks/${d2}`)).status).toBe(404);
    await api.post(`/imagetransfers/${x.id}/finalize`, {});
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_success");
    expect((await api.get(`/disks/${diskId}`)).json.status).toBe("ok");
  });

  it("upload - pause and resume; resume when not paused is 409; extend is a keepalive", async () => {
    const diskId = await newDisk("up-pause");
    const x = await uploadTransfer(diskId);
    expect((await api.post(`/imagetransfers/${x.id}/extend`, {})).status).toBe(200);
    const notPaused = await api.post(`/imagetransfers/${x.id}/resume`, {});
    expect(notPaused.status).toBe(409);
    expect((await api.post(`/imagetransfers/${x.id}/pause`, {})).status).toBe(200);
    expect((await api.get(`/imagetransfers/${x.id}`)).json.phase).toBe("paused_user");
    await api.post(`/imagetransfers/${x.id}/resume`, {});
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "transferring");
    await api.post(`/imagetransfers/${x.id}/finalize`, {});
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_success");
  });

  it("download - cannot be paused (400); a system failure cancels it and the disk returns to ok", async () => {
    const { diskId } = await downVmDisk("dl-fail");
    t.prd.control.faults.failNextTransfer("transferring", "download");
    const x = (await api.post("/imagetransfers", { disk: { id: diskId }, direction: "download", format: "raw" })).json;
    const pause = await api.post(`/imagetransfers/${x.id}/pause`, {});
    expect(pause.status).toBe(400);
    expect(pause.json.detail).toBe("[Cannot pause image download.]");
    const r = await request(x.transfer_url, { dispatcher: api.agent, headers: { range: "bytes=0-65535" } });
    expect(r.statusCode).toBe(206);
    await r.body.arrayBuffer();
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_failure");
    expect((await api.get(`/disks/${diskId}`)).json.status).toBe("ok");
    expect((await api.raw("OPTIONS", x.transfer_url)).status).toBe(403);
  });

  it("inactivity - an idle download with timeout_policy cancel is cancelled by the system", async () => {
    const { diskId } = await downVmDisk("idle-dl");
    const x = (await api.post("/imagetransfers", { disk: { id: diskId }, direction: "download", format: "raw", inactivity_timeout: "1", timeout_policy: "cancel" })).json;
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_failure", 10_000);
    expect((await api.get(`/disks/${diskId}`)).json.status).toBe("ok");
    const ev = (await api.get("/events?max=5")).json.event as Array<{ description: string }>;
    expect(ev.some((e) => e.description.includes("no activity"))).toBe(true);
  });

  it("inactivity - an idle upload with the legacy policy is paused by the system", async () => {
    const diskId = await newDisk("idle-up");
    const x = await uploadTransfer(diskId, { inactivity_timeout: "1", timeout_policy: "legacy" });
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "paused_system", 10_000);
    await api.post(`/imagetransfers/${x.id}/cancel`, {});
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_cleanup");
  });

  it("tickets - an expired ticket gets 403 from imageio and the engine cancels the download", async () => {
    const { diskId } = await downVmDisk("expire");
    const x = (await api.post("/imagetransfers", { disk: { id: diskId }, direction: "download", format: "raw" })).json;
    expect(await t.prd.control.faults.expireTicket(x.id)).toBe(1);
    const r = await api.raw("GET", x.transfer_url, { headers: { range: "bytes=0-511" } });
    expect(r.status).toBe(403);
    // "expired" until the engine notices and removes the ticket ("No such ticket" afterwards).
    expect(r.text).toMatch(/expired|No such ticket/);
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_failure");
  });

  it("faults - dropConnectionAfter is delegated to imageio and cuts a read", async () => {
    const { diskId } = await downVmDisk("drop");
    const x = (await api.post("/imagetransfers", { disk: { id: diskId }, direction: "download", format: "raw" })).json;
    t.prd.control.faults.dropConnectionAfter(1000);
    const cut = request(x.transfer_url, { dispatcher: api.agent, headers: { range: `bytes=0-${MiB - 1}` } }).then((r) => r.body.arrayBuffer());
    await expect(cut).rejects.toThrow();
    const whole = await request(x.transfer_url, { dispatcher: api.agent, headers: { range: "bytes=0-4095" } });
    expect((await whole.body.arrayBuffer()).byteLength).toBe(4096);
    t.prd.control.faults.stallFinalize(300, "transfer");
    await api.post(`/imagetransfers/${x.id}/finalize`, {});
    expect((await api.get(`/imagetransfers/${x.id}`)).json.phase).toBe("finalizing_success");
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_success");
  });

  it("actions - a well-formed unknown id answers 200; a malformed id 404; GET of an unknown id 404", async () => {
    const unknown = "0b0b0b0b-0000-4000-8000-0000000000ff";
    expect((await api.post(`/imagetransfers/${unknown}/finalize`, {})).status).toBe(200);
    expect((await api.post(`/imagetransfers/${unknown}/cancel`, {})).status).toBe(200);
    const bad = await api.post("/imagetransfers/nope/finalize", {});
    expect(bad.status).toBe(404);
    expect(bad.text).toBe("");
    expect((await api.get(`/imagetransfers/${unknown}`)).status).toBe(404);
  });

  it("create - with a slow host the POST answers initializing and the transfer moves to transferring", async () => {
    const { diskId } = await downVmDisk("slow");
    t.prd.engine.timings.transferInitMs = 200;
    try {
      const x = (await api.post("/imagetransfers", { disk: { id: diskId }, direction: "download", format: "raw" })).json;
      expect(x.phase).toBe("initializing");
      expect(x.transfer_url).toBeUndefined();
      const ready = await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "transferring");
      expect(ready.json.transfer_url).toBeTruthy();
      await api.post(`/imagetransfers/${x.id}/finalize`, {});
      await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_success");
    } finally {
      t.prd.engine.timings.transferInitMs = 0;
    }
    expect(t.prd.control.backgroundErrors()).toEqual([]);
  });

  it("retention - finished transfers stay queryable, then disappear after the retention time (404)", async () => {
    const { diskId } = await downVmDisk("keep");
    const x = (await api.post("/imagetransfers", { disk: { id: diskId }, direction: "download", format: "raw" })).json;
    await api.post(`/imagetransfers/${x.id}/finalize`, {});
    await api.waitFor(`/imagetransfers/${x.id}`, (j) => j.phase === "finished_success");
    // This sleep is the test itself (a finished transfer does not vanish at once; the default
    // retention is 15 minutes), so it stays.
    await new Promise((r) => setTimeout(r, 300));
    expect((await api.get(`/imagetransfers/${x.id}`)).status).toBe(200);
    const saved = t.prd.engine.timings.successRetentionMs;
    t.prd.engine.timings.successRetentionMs = 100;
    try {
      await api.waitFor(`/imagetransfers/${x.id}`, (_j, status) => status === 404, 5000);
    } finally {
      t.prd.engine.timings.successRetentionMs = saved;
    }
  });
});
