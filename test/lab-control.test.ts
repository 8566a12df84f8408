import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { qemuImg } from "../adapters/qemu/mod.ts";
import labCommand from "../cli/commands/lab.ts";
import type { CommandIO } from "../cli/command.ts";
import { startLab } from "../lab/mod.ts";
import { FAST_TIMINGS, RawApi, startTestLab, type TestLab } from "../lab/test-support.ts";
import { waitFor } from "./harness/wait-for.ts";

// The lab's control API (in-process and HTTP under /ferry-lab/), CA rotation, two engines with
// their own CAs, persistence across a restart, and the `ferry lab` command.
const MiB = 1024 * 1024;
let t: TestLab;
let api: RawApi;

beforeAll(async () => {
  t = await startTestLab({ engines: ["prd", "dr"], timings: FAST_TIMINGS });
  api = new RawApi(t.prd);
});
afterAll(async () => {
  await api?.close();
  await t?.stop();
});

async function control(method: "GET" | "POST", path: string, body?: unknown, auth = true) {
  const basic = `Basic ${Buffer.from(`${t.prd.user}:${t.prd.password}`).toString("base64")}`;
  return api.raw(method, `${t.prd.controlUrl}/${path}`, {
    headers: { accept: "application/json", ...(auth ? { authorization: basic } : {}), ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
}

describe("lab control API", () => {
  it("control http - needs the admin credentials; creates VMs, writes data, exports images", async () => {
    expect((await control("GET", "status", undefined, false)).status).toBe(401);
    const vm = await control("POST", "vms", { name: "ctl", status: "up", disks: [{ size: 2 * MiB }, { size: MiB, format: "raw", alias: "ctl-raw" }] });
    expect(vm.status).toBe(200);
    expect(vm.json.disks).toHaveLength(2);
    expect(existsSync(vm.json.disks[0].imagePath)).toBe(true);
    const w = await control("POST", `disks/${vm.json.disks[0].id}/write`, { offset: MiB, length: 4096, pattern: 0xee });
    expect(w.json.sha256).toMatch(/^[0-9a-f]{64}$/);
    const zero = await control("POST", "disks/ctl-raw/write", { offset: 0, length: 4096, zero: true });
    expect(zero.status).toBe(200);
    const out = join(t.dir, "ctl.qcow2");
    const ex = await control("POST", `disks/${vm.json.disks[0].id}/export`, { path: out, format: "qcow2" });
    expect(ex.json).toMatchObject({ path: out, format: "qcow2", virtualSize: 2 * MiB, source: "current" });
    const raw = await readFile(join(t.dir, "ctl.raw")).catch(() => undefined);
    expect(raw).toBeUndefined();
    await qemuImg.convert({ path: out, format: "qcow2" }, { path: join(t.dir, "ctl.raw"), format: "raw" });
    const bytes = await readFile(join(t.dir, "ctl.raw"));
    expect(bytes[MiB]).toBe(0xee);
    expect(bytes[0]).toBe(0);
    const st = await control("GET", "status");
    expect(st.json.vms.find((v: { name: string }) => v.name === "ctl").disks).toHaveLength(2);
    expect((await control("POST", "disks/ctl-raw/write", { offset: 0, length: 10 * MiB, pattern: 1 })).status).toBe(400);
    expect((await control("POST", "vms/nope/snapshots", {})).status).toBe(404);
    expect((await control("POST", "nothing", {})).status).toBe(404);
    const ev = await control("GET", "events?max=3");
    expect(ev.json.event).toHaveLength(3);
  });

  it("control http - a VM with one bad disk is refused whole: no VM, no disk, no event left behind", async () => {
    const before = (await control("GET", "status")).json;
    const eventsBefore = (await control("GET", "events")).json.event?.length ?? 0;
    const bad = [
      [{ size: 2 * MiB }, { size: -1 }],
      [{ size: 2 * MiB }, { size: MiB, storageDomain: "nope" }],
      [{ size: 2 * MiB }, { size: MiB, format: "raw", backup: "incremental" }],
    ];
    for (const disks of bad) {
      const r = await control("POST", "vms", { name: "half", disks });
      expect(r.status, JSON.stringify(disks)).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
    }
    const badOther = [
      { nics: [{ name: "nic1", network: "nope" }] },
      { nics: [{ name: "nic1", network: "ovirtmgmt", interface: "tulip" }] },
      { bootDevices: ["floppy"] },
      { cpu: { sockets: 0 } },
      { cluster: "nope" },
      { disks: [{ size: 2048 * 1024 * MiB, format: "raw", sparse: false }] },
    ];
    for (const extra of badOther) {
      const r = await control("POST", "vms", { name: "half", disks: [{ size: MiB }], ...extra });
      expect(r.status, JSON.stringify(extra)).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
    }
    const after = (await control("GET", "status")).json;
    expect(after.vms).toEqual(before.vms);
    expect((await control("GET", "events")).json.event?.length ?? 0).toBe(eventsBefore);
    expect((await control("POST", "vms", { name: "half", disks: [{ size: MiB }] })).status).toBe(200);
  });

  it("control http - snapshots, restore, invalidate checkpoints, fault endpoints", async () => {
    const vm = await t.prd.control.createVm({ name: "ctl2", disks: [{ size: MiB }], status: "down" });
    const snap = await control("POST", `vms/${vm.id}/snapshots`, { description: "s" });
    expect(snap.json.id).toMatch(/^[0-9a-f-]{36}$/);
    await control("POST", `disks/${vm.disks[0]!.id}/write`, { offset: 0, length: 4096, pattern: 9 });
    expect((await control("POST", `vms/${vm.id}/snapshots/${snap.json.id}/restore`, {})).status).toBe(200);
    const out = join(t.dir, "ctl2.raw");
    await t.prd.control.exportImage(vm.disks[0]!.id, out, { format: "raw" });
    expect((await readFile(out))[0]).toBe(0);
    expect((await control("POST", "faults/http-errors", { status: 500, count: 1, path: "^/ovirt-engine/api/clusters" })).status).toBe(200);
    const hit = await api.get("/clusters");
    expect(hit.status).toBe(500);
    expect(hit.json).toBeUndefined();
    expect((await api.get("/clusters")).status).toBe(200);
    expect((await control("POST", "faults/fail-next-transfer", { phase: "later" })).status).toBe(400);
    expect((await control("POST", "faults/fail-next-transfer", { phase: "initializing", direction: "download" })).status).toBe(200);
    expect((await control("POST", "faults/stall-finalize", { ms: 10 })).status).toBe(200);
    expect((await control("POST", "faults/clear", {})).status).toBe(200);
    expect(t.prd.engine.faults.failTransfer).toEqual([]);
    expect((await control("POST", `vms/${vm.id}/invalidate-checkpoints`, {})).json).toEqual({ invalidated: 0 });
    expect((await control("POST", "backup-support", { mode: "bogus" })).status).toBe(400);
  });

  it("control http - networks, clusters, storage domains, free space, NICs/CPU/boot of new VMs, fail-next-boot", async () => {
    const net = await control("POST", "networks", { name: "ctl-net", vnicProfiles: ["ctl-a", "ctl-b"] });
    expect(net.status).toBe(200);
    expect(net.json.vnicProfiles.map((p: { name: string }) => p.name)).toEqual(["ctl-a", "ctl-b"]);
    expect((await control("POST", "networks", { name: "ctl-net" })).status).toBe(409);
    expect((await control("POST", "clusters", { name: "ctl-cluster" })).status).toBe(200);
    expect((await control("POST", "storagedomains", { name: "ctl-sd", availableBytes: 10 * 1024 * MiB, storage: "iscsi" })).status).toBe(200);
    expect((await control("POST", "storagedomains", { name: "ctl-sd2", availableBytes: 1, storage: "tape" })).status).toBe(400);
    expect((await control("POST", "storagedomains/ctl-sd/available", { bytes: 8 * 1024 * MiB })).status).toBe(200);
    expect((await control("POST", "storagedomains/nope/available", { bytes: 1 })).status).toBe(404);
    const vm = await control("POST", "vms", {
      name: "ctl-net-vm",
      disks: [{ size: MiB, storageDomain: "ctl-sd" }],
      cpu: { sockets: 2, cores: 2 },
      bootDevices: ["network", "hd"],
      nics: [{ name: "eth0", network: "ctl-net", vnicProfile: "ctl-b", interface: "e1000" }, { name: "eth1", network: "ovirtmgmt" }],
      cluster: "ctl-cluster",
    });
    expect(vm.status).toBe(200);
    expect(vm.json.nics.map((n: { name: string }) => n.name)).toEqual(["eth0", "eth1"]);
    const st = (await control("GET", "status")).json;
    expect(st.vms.find((v: { name: string }) => v.name === "ctl-net-vm").nics.map((n: { network: string; vnicProfile: string }) => `${n.network}/${n.vnicProfile}`)).toEqual([
      "ctl-net/ctl-b",
      "ovirtmgmt/ovirtmgmt",
    ]);
    expect(st.clusters.map((c: { name: string }) => c.name)).toContain("ctl-cluster");
    // 8 GiB minus the 1 GiB a new qcow2 disk takes on block storage.
    expect(st.storageDomains.find((d: { name: string }) => d.name === "ctl-sd").available).toBe(7 * 1024 * MiB);
    const got = await api.get(`/vms/${vm.json.id}`);
    expect(got.json.cpu.topology).toEqual({ cores: "2", sockets: "2", threads: "1" });
    expect(got.json.os.boot.devices.device).toEqual(["network", "hd"]);
    expect((await control("POST", "faults/fail-next-boot", { vm: "nope" })).status).toBe(404);
    expect((await control("POST", "faults/fail-next-boot", { vm: "ctl-net-vm" })).status).toBe(200);
    expect(t.prd.engine.faults.failBoot).toEqual([{ vm: "ctl-net-vm" }]);
    expect((await control("POST", "faults/clear", {})).status).toBe(200);
    expect(t.prd.engine.faults.failBoot).toEqual([]);
  });

  it("pki - PRD and DR have their own CAs; rotate-ca serves a new CA and the old one no longer verifies", async () => {
    const dr = t.engine("dr");
    expect(dr.caPem).not.toBe(t.prd.caPem);
    const drWithPrdCa = new Agent({ connect: { ca: t.prd.caPem } });
    await expect(request(`${dr.url}/ovirt-engine/api`, { dispatcher: drWithPrdCa })).rejects.toThrow();
    await drWithPrdCa.close();
    const oldCa = dr.caPem;
    const drApi = new RawApi(dr);
    const vm = await dr.control.createVm({ name: "rot", disks: [{ size: MiB }], status: "down" });
    const open = (await drApi.post("/imagetransfers", { disk: { id: vm.disks[0]!.id }, direction: "download", format: "raw" })).json;
    await expect(dr.control.rotateCa()).rejects.toThrow(/open transfer/);
    await drApi.post(`/imagetransfers/${open.id}/finalize`, {});
    await drApi.waitFor(`/imagetransfers/${open.id}`, (j) => j.phase === "finished_success");
    await drApi.close();
    const rotated = await dr.control.rotateCa();
    expect(rotated.fingerprint256).toMatch(/^[0-9A-F:]+$/);
    expect(dr.caPem).not.toBe(oldCa);
    expect(await readFile(dr.caFile, "utf8")).toBe(dr.caPem);
    const pem = await (await request(`${dr.plainUrl}/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA`)).body.text();
    expect(pem).toBe(dr.caPem);
    const withOld = new Agent({ connect: { ca: oldCa } });
    await expect(request(`${dr.url}/ovirt-engine/api`, { dispatcher: withOld })).rejects.toThrow();
    await withOld.close();
    const withNew = new Agent({ connect: { ca: dr.caPem } });
    const ok = await request(`${dr.url}/ovirt-engine/api`, { dispatcher: withNew, headers: { accept: "application/json" } });
    expect(ok.statusCode).toBe(401);
    await ok.body.text();
    await withNew.close();
    // imageio got a certificate from the new CA as well.
    const after = new RawApi(dr);
    const x = (await after.post("/imagetransfers", { disk: { id: vm.disks[0]!.id }, direction: "download", format: "raw" })).json;
    expect(x.transfer_url.startsWith(dr.imageioUrl)).toBe(true);
    expect((await after.raw("OPTIONS", x.transfer_url)).status).toBe(200);
    await after.post(`/imagetransfers/${x.id}/finalize`, {});
    await after.close();
  });
});

describe("lab persistence and CLI", () => {
  it("restart - state survives in the data dir; an open backup becomes failed (unmonitored), disks unlocked", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ferry-lab-restart-"));
    try {
      let lab = await startLab({ dataDir: dir, engines: ["prd"], engineOptions: { timings: FAST_TIMINGS } });
      const e1 = lab.engines.prd!;
      const password = e1.password;
      const vm = await e1.control.createVm({ name: "keep", disks: [{ size: MiB }], status: "up" });
      await e1.control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 4096, pattern: 5 });
      const a1 = new RawApi(e1);
      const b = await a1.post(`/vms/${vm.id}/backups`, { disks: { disk: [{ id: vm.disks[0]!.id }] } });
      await a1.waitFor(`/vms/${vm.id}/backups/${b.json.id}`, (j) => j.phase === "ready");
      await a1.close();
      await lab.stop();
      lab = await startLab({ dataDir: dir, engines: ["prd"], engineOptions: { timings: FAST_TIMINGS } });
      const e2 = lab.engines.prd!;
      try {
        expect(e2.password).toBe(password);
        const a2 = new RawApi(e2);
        const vms = (await a2.get("/vms")).json.vm;
        expect(vms.map((v: { name: string }) => v.name)).toEqual(["keep"]);
        expect((await a2.get(`/vms/${vm.id}/backups/${b.json.id}`)).json.phase).toBe("failed");
        const ev = (await a2.get("/events?search=no%20longer%20monitored")).json.event;
        expect(ev).toHaveLength(1);
        const out = join(dir, "keep.raw");
        await e2.control.exportImage(vm.disks[0]!.id, out, { format: "raw" });
        expect((await readFile(out))[0]).toBe(5);
        // A new backup works after the leftover one was marked failed.
        const nb = await a2.post(`/vms/${vm.id}/backups`, { disks: { disk: [{ id: vm.disks[0]!.id }] } });
        expect(nb.status).toBe(201);
        await a2.waitFor(`/vms/${vm.id}/backups/${nb.json.id}`, (j) => j.phase === "ready");
        await a2.post(`/vms/${vm.id}/backups/${nb.json.id}/finalize`, {});
        await a2.waitFor(`/vms/${vm.id}/backups/${nb.json.id}`, (j) => j.phase === "succeeded");
        await a2.close();
      } finally {
        await lab.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("ferry lab - up prints the engines and runs until aborted; status, write and fault talk to it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ferry-lab-cli-"));
    const io = (signal: AbortSignal) => {
      const stdout = new PassThrough();
      const stderr = new PassThrough();
      let out = "";
      let err = "";
      stdout.on("data", (d: Buffer) => (out += d.toString()));
      stderr.on("data", (d: Buffer) => (err += d.toString()));
      const value: CommandIO = { stdout, stderr, env: {}, cwd: dir, signal };
      return { value, out: () => out, err: () => err };
    };
    const ac = new AbortController();
    const upIo = io(ac.signal);
    const running = labCommand.run(["up", "--data", dir, "--engines", "prd", "--vms", "1", "--disk-size", "4M", "--json"], upIo.value);
    try {
      // `lab up --json` prints its record after writing lab.json: wait for the printed JSON.
      await waitFor(() => JSON.parse(upIo.out()) as unknown, {
        timeoutMs: 30_000,
        what: () => `ferry lab up to print its JSON (stdout ${JSON.stringify(upIo.out().slice(-300))}, stderr ${JSON.stringify(upIo.err().slice(-500))})`,
      });
      const file = JSON.parse(await readFile(join(dir, "lab.json"), "utf8"));
      expect(file.engines.prd.apiUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/ovirt-engine\/api$/);
      expect(JSON.parse(upIo.out()).engines.prd.password).toBe(file.engines.prd.password);
      const status = io(new AbortController().signal);
      expect(await labCommand.run(["status", "--data", dir, "--json"], status.value)).toBe(0);
      const s = JSON.parse(status.out());
      expect(s.vms.map((v: { name: string }) => v.name)).toEqual(["vm01"]);
      expect(s.vms[0].disks).toHaveLength(2);
      const write = io(new AbortController().signal);
      expect(await labCommand.run(["write", "vm01", "--disk", "2", "--offset", "0", "--length", "4096", "--seed", "3", "--data", dir], write.value)).toBe(0);
      expect(write.out()).toMatch(/wrote 4096 bytes at 0 to vm01_data/);
      const fault = io(new AbortController().signal);
      expect(await labCommand.run(["fault", "stall-finalize", "100", "--data", dir], fault.value)).toBe(0);
      const boot = io(new AbortController().signal);
      expect(await labCommand.run(["fault", "fail-next-boot", "vm01", "--data", dir], boot.value)).toBe(0);
      const net = io(new AbortController().signal);
      expect(await labCommand.run(["add-network", "backend", "--profiles", "backend,backend-qos", "--data", dir], net.value)).toBe(0);
      expect(net.out()).toMatch(/profiles backend, backend-qos/);
      const cl = io(new AbortController().signal);
      expect(await labCommand.run(["add-cluster", "Second", "--data", dir], cl.value)).toBe(0);
      const sd = io(new AbortController().signal);
      expect(await labCommand.run(["add-storage-domain", "fast", "--available", "20G", "--storage", "iscsi", "--data", dir], sd.value)).toBe(0);
      const free = io(new AbortController().signal);
      expect(await labCommand.run(["set-storage-available", "fast", "6G", "--data", dir], free.value)).toBe(0);
      const text = io(new AbortController().signal);
      expect(await labCommand.run(["status", "--data", dir], text.value)).toBe(0);
      expect(text.out()).toContain("networks: ovirtmgmt (profiles ovirtmgmt), backend (profiles backend, backend-qos)");
      expect(text.out()).toContain("fast (iscsi, 6.0 GiB free)");
      expect(text.out()).toMatch(/nic1 56:6f(:[0-9a-f]{2}){4} on ovirtmgmt\/ovirtmgmt/);
      const bad = io(new AbortController().signal);
      expect(await labCommand.run(["fault", "fail-next-transfer", "sometime", "--data", dir], bad.value)).toBe(4);
      expect(bad.err()).toContain("phase");
      const usage = io(new AbortController().signal);
      expect(await labCommand.run(["write", "vm01", "--data", dir], usage.value)).toBe(2);
    } finally {
      ac.abort();
      expect(await running).toBe(0);
    }
    expect(existsSync(join(dir, "lab.json"))).toBe(false);
    const gone = io(new AbortController().signal);
    expect(await labCommand.run(["status", "--data", dir], gone.value)).toBe(3);
    await rm(dir, { recursive: true, force: true });
  });
});
