/**
 * Restore end to end: a 2-disk VM backed up on the PRD lab engine (full + incremental with guest
 * writes), then restored through restore.requested onto the DR lab engine — the latest and an
 * older point — through the real runtime, dataplane upload, imageio and the engine REST API.
 * Each restored disk's imageio checksum equals the restore point's; the VM has the OVF's CPU and
 * memory and its disks attached; a wrong mapping changes nothing on DR; a restore test boots the
 * point, records the verdict and leaves nothing behind, also when the boot fails.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "../adapters/store/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";
import { PassThrough } from "node:stream";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { main } from "../cli/main.ts";

async function ferry(env: Record<string, string>, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (b) => (out += String(b)));
  stderr.on("data", (b) => (err += String(b)));
  const code = await main(args, { stdout, stderr, env: { NATS_URL: p.nats.url, ...env }, cwd: p.dir, signal: new AbortController().signal });
  return { code, out, err };
}

/** A config file for the commands that talk to the engines themselves (--dry-run). */
async function configFile(): Promise<{ file: string; env: Record<string, string> }> {
  const engine = (name: string) => {
    const e = p.lab.engines[name]!;
    return { url: e.url, user: e.user, passwordEnv: `FERRY_${name.toUpperCase()}_PASSWORD`, caFile: e.caFile };
  };
  const file = join(p.dir, "ferry-restore.json");
  await writeFile(file, JSON.stringify({ engines: { prd: engine("prd"), dr: engine("dr") }, store: { path: p.storePath }, restore: { cluster: "Default", storageDomain: "data" } }), { mode: 0o600 });
  return { file, env: { FERRY_PRD_PASSWORD: p.lab.engines.prd!.password, FERRY_DR_PASSWORD: p.lab.engines.dr!.password } };
}

const MiB = 1048576;
let p: Pipeline;
let source: { id: string; disks: { id: string; alias: string }[] };

/** Everything on the DR engine, read through its REST API: VM names and disk ids. */
async function drState() {
  const client = p.wiring.engines.get("dr")!.client;
  const vms = (await client.vms.list()).map((v) => v.name).sort();
  const disks = (await client.disks.list()).map((d) => d.id).sort();
  return { vms, disks, ...(await labState(p, "dr")) };
}

async function pointChecksums(number: number): Promise<Record<string, string>> {
  const r = await openStore({ root: p.storePath }).resolvePoint("web01", number);
  return Object.fromEntries(r.disks.map((d) => [d.disk.alias, d.disk.checksum.value]));
}

beforeAll(async () => {
  p = await startPipeline({ labEngines: ["prd", "dr"] });
  const control = p.lab.engines.prd!.control;
  control.addNetwork({ name: "lan" });
  // On DR the production LAN is called differently: its NICs must be mapped.
  p.lab.engines.dr!.control.addNetwork({ name: "dr-lan" });
  const vm = await control.createVm({
    name: "web01", disks: [{ alias: "web01_d1", size: 16 * MiB }, { alias: "web01_d2", size: 8 * MiB }], status: "up", memory: 2048 * MiB,
    cpu: { sockets: 2, cores: 2 }, bootDevices: ["network", "hd"], nics: [{ name: "nic1", network: "lan" }, { name: "nic2", network: "ovirtmgmt" }],
  });
  source = { id: vm.id, disks: vm.disks.map((d: { id: string; alias: string }) => ({ id: d.id, alias: d.alias })) };
  await control.writeGuestData(source.disks[0]!.id, { offset: 0, length: 3 * MiB, pattern: 0x11 });
  await control.writeGuestData(source.disks[1]!.id, { offset: 2 * MiB, length: MiB, pattern: 0x22 });
  expect((await p.backup("web01")).subject).toBe("backup.completed");
  await control.writeGuestData(source.disks[0]!.id, { offset: 5 * MiB, length: MiB, pattern: 0x33 });
  expect((await p.backup("web01")).subject).toBe("backup.completed");
}, 240_000);

afterAll(async () => {
  await p?.stop();
});

describe("restore (lab PRD → DR)", () => {
  it("restore - the latest point becomes a VM on DR whose disks carry the point's checksums, with the OVF's CPU, memory, boot order, mapped NICs and its disks attached", async () => {
    const out = await p.restore({ vm: "web01", mappings: { vnicProfiles: { lan: "dr-lan" } } });
    expect(out.subject, JSON.stringify(out.event)).toBe("restore.completed");
    expect(out.event).toMatchObject({ vm: "web01", target: "dr", mode: "restore", name: "web01_restored" });
    const want = await pointChecksums(2);
    const disks = out.event.disks as { alias: string; id: string; checksum: string }[];
    expect(Object.fromEntries(disks.map((d) => [d.alias, d.checksum]))).toEqual(want);

    const client = p.wiring.engines.get("dr")!.client;
    const vm = await client.vms.get(String(out.event.vmId));
    expect(vm.name).toBe("web01_restored");
    expect(vm.memory).toBe(2048 * MiB);
    expect(vm.cpu?.topology).toMatchObject({ sockets: 2, cores: 2 });
    expect(vm.os?.boot?.devices).toEqual(["network", "hd"]);
    const profiles = new Map((await client.vnicProfiles.list()).map((x) => [x.id, x.name]));
    const nics = Object.fromEntries((await client.nics.list(vm.id)).map((n) => [n.name, n.vnic_profile ? profiles.get(n.vnic_profile.id) : undefined]));
    expect(nics).toEqual({ nic1: "dr-lan", nic2: "ovirtmgmt" });
    const attached = (await client.diskAttachments.list(vm.id)).map((a) => a.disk.id).sort();
    expect(attached).toEqual(disks.map((d) => d.id).sort());
    // Incremental backup enabled on the copies, so the DR VM can itself be backed up.
    for (const d of disks) expect((await client.disks.get(d.id)).backup).toBe("incremental");
    expect(await labState(p, "dr")).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
    // Every step is in the run's restore log in the store.
    const logs = await readdir(join(p.storePath, "restore-logs"));
    const mine = logs.find((f) => f.includes(String(out.event.runId).replace(/[^A-Za-z0-9._-]/g, "_")));
    expect(mine, logs.join(", ")).toBeTruthy();
    const steps = (await readFile(join(p.storePath, "restore-logs", mine!), "utf8")).trim().split("\n").map((l) => JSON.parse(l).step);
    expect(steps).toEqual(expect.arrayContaining(["preflight ok", "disk restored and verified", "VM created", "done"]));
  });

  it("restore - an older point under another name has that point's data", async () => {
    const out = await p.restore({ vm: "web01", checkpoint: 1, name: "web01_point1", mappings: { vnicProfiles: { lan: "dr-lan" } } });
    expect(out.subject, JSON.stringify(out.event)).toBe("restore.completed");
    const want = await pointChecksums(1);
    expect(Object.fromEntries((out.event.disks as { alias: string; checksum: string }[]).map((d) => [d.alias, d.checksum]))).toEqual(want);
    expect(want).not.toEqual(await pointChecksums(2));
  });

  it("restore - a wrong mapping fails in preflight naming every missing thing, and nothing on DR changed", async () => {
    const before = await drState();
    const out = await p.restore({ vm: "web01", name: "web01_wrong", mappings: { storageDomains: { "*": "no-such-domain" } } });
    expect(out.subject).toBe("restore.failed");
    expect(out.event).toMatchObject({ code: "RESTORE_PREFLIGHT" });
    expect(String(out.event.message)).toMatch(/storage domain 'no-such-domain' does not exist on dr/);
    // Without a mapping, the production network has no profile on DR: named, with how to map it.
    expect(String(out.event.message)).toMatch(/network 'lan' of NIC nic1 has no vNIC profile on dr \(map it: mappings.vnicProfiles/);
    expect(await drState()).toEqual(before);
  });

  it("restore - start: the restored VM reaches up", async () => {
    const out = await p.restore({ vm: "web01", name: "web01_up", start: true, mappings: { vnicProfiles: { lan: "dr-lan" } } });
    expect(out.subject, JSON.stringify(out.event)).toBe("restore.completed");
    expect(out.event).toMatchObject({ started: true });
    expect((await p.wiring.engines.get("dr")!.client.vms.get(String(out.event.vmId))).status).toBe("up");
  });

  it("restore - an existing name is refused unless replace, and replace swaps in the new VM once its disks are verified", async () => {
    const refused = await p.restore({ vm: "web01", name: "web01_point1", mappings: { vnicProfiles: { lan: "dr-lan" } } });
    expect(refused.subject).toBe("restore.failed");
    expect(String(refused.event.message)).toMatch(/a VM named 'web01_point1' already exists on dr/);
    const client = p.wiring.engines.get("dr")!.client;
    const old = await client.vms.findByName("web01_point1");
    const replaced = await p.restore({ vm: "web01", name: "web01_point1", replace: true, mappings: { vnicProfiles: { lan: "dr-lan" } } });
    expect(replaced.subject, JSON.stringify(replaced.event)).toBe("restore.completed");
    const now = await client.vms.findByName("web01_point1");
    expect(now?.id).not.toBe(old?.id);
    expect(Object.fromEntries((replaced.event.disks as { alias: string; checksum: string }[]).map((d) => [d.alias, d.checksum]))).toEqual(await pointChecksums(2));
  });

  it("restore - a restore test boots the point, records the verdict on it, and leaves no VM or disk behind", async () => {
    const before = await drState();
    const out = await p.restore({ vm: "web01", mode: "test", mappings: { vnicProfiles: { lan: "dr-lan" } } });
    expect(out.subject, JSON.stringify(out.event)).toBe("restore.completed");
    expect(out.event).toMatchObject({ mode: "test", bootTest: { ok: true } });
    expect(await drState()).toEqual(before);
    const manifest = await openStore({ root: p.storePath }).readManifest("web01");
    expect(manifest?.restorePoints.at(-1)?.bootTested).toMatchObject({ ok: true });
  });

  it("restore - a restore test whose boot fails records the failure, fails the run, and still leaves nothing behind", async () => {
    const before = await drState();
    p.lab.engines.dr!.control.faults.failNextBoot();
    const out = await p.restore({ vm: "web01", mode: "test", mappings: { vnicProfiles: { lan: "dr-lan" } } });
    expect(out.subject).toBe("restore.failed");
    expect(out.event).toMatchObject({ code: "RESTORE_BOOT_FAILED" });
    expect(await drState()).toEqual(before);
    const manifest = await openStore({ root: p.storePath }).readManifest("web01");
    expect(manifest?.restorePoints.at(-1)?.bootTested).toMatchObject({ ok: false });
  });

  it("ferry restore --dry-run prints the plan and changes nothing; a missing mapping is refused with every problem (exit 4)", async () => {
    const before = await drState();
    const c = await configFile();
    const plan = await ferry(c.env, "restore", "web01", "--dry-run", "--json", "--config", c.file, "--map-network", "lan=dr-lan", "--name", "web01_plan");
    expect(plan.code, plan.err).toBe(0);
    const doc = JSON.parse(plan.out) as { name: string; storageDomain: string; disks: { alias: string; requiredBytes: number }[]; nics: { name: string; vnicProfile: string }[]; requiredBytes: number };
    expect(doc).toMatchObject({ name: "web01_plan", storageDomain: "data" });
    expect(doc.disks.map((d) => d.alias).sort()).toEqual(["web01_d1", "web01_d2"]);
    expect(doc.nics).toEqual([{ name: "nic1", network: "lan", vnicProfile: "dr-lan" }, { name: "nic2", network: "ovirtmgmt", vnicProfile: "ovirtmgmt" }]);
    expect(doc.requiredBytes).toBe(doc.disks.reduce((n, d) => n + d.requiredBytes, 0));
    const refused = await ferry(c.env, "restore", "web01", "--dry-run", "--config", c.file, "--storage-domain", "nope");
    expect(refused.code).toBe(4);
    expect(refused.err).toMatch(/storage domain 'nope' does not exist on dr/);
    expect(refused.err).toMatch(/network 'lan' of NIC nic1 has no vNIC profile on dr/);
    expect(await drState()).toEqual(before);
  });

  it("ferry restore --wait restores through the bus and prints the outcome", async () => {
    const r = await ferry({}, "restore", "web01", "--checkpoint", "1", "--name", "web01_cli", "--map-network", "lan=dr-lan", "--wait");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/restore of web01 completed on dr: VM web01_cli \(\S+\); .* 2 disk\(s\) verified with imageio's checksum/);
    expect(await p.wiring.engines.get("dr")!.client.vms.findByName("web01_cli")).toBeTruthy();
  });
});
