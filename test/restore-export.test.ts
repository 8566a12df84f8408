/**
 * `ferry restore <vm> --to-dir DIR`: restore without an engine, on a real store (full +
 * incremental chains written through the store's own path, test/store-fixtures.ts) with real
 * qemu-img. What comes out must open with plain qemu-img and read exactly as the guest was at the
 * chosen point; the OVA must be a tar oVirt's tools can walk; nothing partial is ever left behind.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore, type Store } from "../adapters/store/mod.ts";
import type { CommandIO } from "../cli/command.ts";
import restore, { progressPrinter } from "../cli/commands/restore.ts";
import type { ChainRecord } from "../domain/chain/mod.ts";
import { spawnFerry } from "./harness/ferry-process.ts";
import { waitFor } from "./harness/wait-for.ts";
import { qemuIo, rotVisibleByte, SimVm } from "./store-fixtures.ts";

const MiB = 1024 * 1024;
let tmp: string;
let store: Store;
let web: SimVm;
let record: ChainRecord;

async function ferry(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: CommandIO = {
    stdout: new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }),
    stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }),
    env: { BACKUP_DIR: store.root },
    cwd: tmp,
    signal: new AbortController().signal,
  };
  return { code: await restore.run(args, io), out, err };
}

/** The engine's own OVF dialect, as backup-requested saves it: File href "<disk id>/<image id>". */
function engineOvf(pointId: string): string {
  const disk = (d: string, alias: string) => ({
    file: `<File ovf:href="${d}/img-${d}-${pointId}" ovf:id="img-${d}-${pointId}" ovf:size="1073741824" ovf:description="${alias}" ovf:disk_storage_type="IMAGE" ovf:cinder_volume_type=""></File>`,
    disk: `<Disk ovf:diskId="img-${d}-${pointId}" ovf:size="1" ovf:fileRef="${d}/img-${d}-${pointId}" ovf:volume-format="COW" ovf:disk-alias="${alias}"></Disk>`,
    item: `<Item><rasd:Caption>${alias}</rasd:Caption><rasd:InstanceId>img-${d}-${pointId}</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>${d}/img-${d}-${pointId}</rasd:HostResource></Item>`,
  });
  const ds = [disk("d1", "web01_d1"), disk("d2", "web01_d2")];
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1/" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" ovf:version="4.7.0.0">`,
    `<References>${ds.map((x) => x.file).join("")}<File ovf:href="lun-9" ovf:id="lun-9" ovf:disk_storage_type="LUN"></File></References>`,
    `<Section xsi:type="ovf:DiskSection_Type"><Info>List of Virtual Disks</Info>${ds.map((x) => x.disk).join("")}</Section>`,
    `<Content ovf:id="out" xsi:type="ovf:VirtualSystem_Type"><Name>web01</Name><Section xsi:type="ovf:VirtualHardwareSection_Type"><Info>2 CPU</Info>`,
    `<Item><rasd:Caption>2 virtual cpu</rasd:Caption><rasd:InstanceId>1</rasd:InstanceId><rasd:ResourceType>3</rasd:ResourceType></Item>`,
    ds.map((x) => x.item).join(""),
    `</Section></Content></ovf:Envelope>`,
  ].join("\n");
}

/**
 * How oVirt's extract_ova.py (ovirt-engine packaging/.../ovirt-ova-extract/files/extract_ova.py)
 * walks an OVA: header after header until a zero block; name = bytes 0-100, size = octal or GNU
 * base-256 (0x80 first byte); names ending in ovf/dat are skipped rounded up to 512, 'pad' by its
 * size, and anything else is a disk whose data starts right after its header and which is skipped
 * by exactly its size. Returns the disks it would extract.
 */
function extractOvaWalk(ova: Buffer): { name: string; offset: number; size: number }[] {
  const disks: { name: string; offset: number; size: number }[] = [];
  let pos = 0;
  for (;;) {
    const info = ova.subarray(pos, pos + 512);
    expect(info.length).toBe(512);
    pos += 512;
    if (info.equals(Buffer.alloc(512))) break;
    const name = info.subarray(0, 100).toString("utf8").split("\0")[0]!;
    const field = info.subarray(124, 136);
    const size = field[0] === 0x80 ? Number(field.subarray(1).readBigUInt64BE(3)) : parseInt(field.toString("ascii").replace(/\0.*$/, "").trim() || "0", 8);
    if (name.toLowerCase().endsWith("ovf") || name.toLowerCase().endsWith("dat")) pos += Math.ceil(size / 512) * 512;
    else if (name === "pad") pos += size;
    else {
      disks.push({ name, offset: pos, size });
      pos += size;
    }
  }
  return disks;
}

const refOf = (vm: SimVm, pointId: string, diskId: string) => vm.refs.get(pointId)!.get(diskId)!;

async function compare(image: string, format: "qcow2" | "raw", ref: string): Promise<string> {
  const r = await execa("qemu-img", ["compare", "-f", format, "-F", "raw", image, ref], { reject: false });
  return r.exitCode === 0 ? "identical" : `${r.stdout}${r.stderr}`.trim();
}

async function info(path: string, format: string): Promise<Record<string, unknown>> {
  return JSON.parse((await execa("qemu-img", ["info", "--output=json", "-f", format, path])).stdout) as Record<string, unknown>;
}

/** Every name in DIR, hidden ones included (temporary files start with '.'). */
const names = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).sort();

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "ferry-restore-"));
  store = openStore({ root: join(tmp, "store") });
  await store.init();
  web = new SimVm(store, tmp, { id: "vm-web-1", name: "web01" }, 31);
  await web.addDisk("d1", 8 * MiB);
  await web.addDisk("d2", 4 * MiB);
  // Real data on both disks (so sparse output and the checksum have something to say), then
  // full, incremental, incremental.
  await qemuIo("raw", web.disks.get("d1")!.guest, [{ offset: 0, length: 2 * MiB, pattern: 0x11 }]);
  await qemuIo("raw", web.disks.get("d2")!.guest, [{ offset: MiB, length: MiB, pattern: 0x22 }]);
  for (let i = 0; i < 3; i++) record = await web.backup(new Date(Date.UTC(2025, 0, 10 + i, 2)));
  for (const p of record.restorePoints) await writeFile(store.absolute(p.ovfFile!), engineOvf(p.id));
}, 120_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe("ferry restore --to-dir", () => {
  it("qcow2 (default) - latest point: one standalone qcow2 per disk + the OVF; plain qemu-img reads the guest as it was", async () => {
    const dir = join(tmp, "out-qcow2");
    const r = await ferry(["web01", "--to-dir", dir]);
    // Progress lines appear only when an export runs longer than a second (a loaded machine); nothing else.
    expect(r.err.split("\n").filter((l) => l && !/^ferry restore: \S+: .* (written|packed|checked)( \(\d+%\))?$/.test(l))).toEqual([]);
    expect(r.code).toBe(0);
    expect(await names(dir)).toEqual(["web01.ovf", "web01_d1.qcow2", "web01_d2.qcow2"]);
    const latest = record.restorePoints.at(-1)!;
    for (const d of ["d1", "d2"]) {
      const out = join(dir, `web01_${d}.qcow2`);
      const i = await info(out, "qcow2");
      expect(i.format).toBe("qcow2");
      expect(i["backing-filename"]).toBeUndefined();
      expect(i["virtual-size"]).toBe(web.disks.get(d)!.size);
      await execa("qemu-img", ["check", "-q", "-f", "qcow2", out]);
      expect(await compare(out, "qcow2", refOf(web, latest.id, d))).toBe("identical");
      // ... and equal to the point as the store holds it (its chain).
      const top = store.absolute(latest.disks.find((x) => x.diskId === d)!.layer);
      expect((await execa("qemu-img", ["compare", "-f", "qcow2", "-F", "qcow2", out, top], { reject: false })).exitCode).toBe(0);
      expect((await stat(out)).mode & 0o777).toBe(0o600);
    }
    expect(await readFile(join(dir, "web01.ovf"), "utf8")).toBe(engineOvf(latest.id));
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect(r.out).toMatch(/^restore point #3 of web01 \(2025-01-12 02:00:00 UTC, incremental\) → .* as qcow2$/m);
    expect(r.out).toMatch(/^ {2}web01_d1: .*web01_d1\.qcow2 .* checksum ok \(sha256 [0-9a-f]{16}…\)$/m);
    expect(r.out).toMatch(/^done: 2 disks written and verified$/m);
  });

  it("raw - an older point by number, sparse files, --json document", async () => {
    const dir = join(tmp, "out-raw");
    const r = await ferry(["web01", "--to-dir", dir, "--format", "raw", "--checkpoint", "1", "--json"]);
    expect(r.code).toBe(0);
    const first = record.restorePoints[0]!;
    const doc = JSON.parse(r.out);
    expect(doc).toMatchObject({ vm: "web01", point: { number: 1, id: first.id, time: first.time, kind: "full" }, format: "raw", dir, ok: true, ovf: join(dir, "web01.ovf") });
    expect(doc.files.map((f: { disk: string; alias: string; path: string; ok: boolean }) => [f.disk, f.alias, f.path, f.ok])).toEqual([
      ["d1", "web01_d1", join(dir, "web01_d1.raw"), true],
      ["d2", "web01_d2", join(dir, "web01_d2.raw"), true],
    ]);
    for (const f of doc.files as { disk: string; path: string; bytes: number; checksum: { expected: string; actual: string } }[]) {
      expect(f.checksum.actual).toBe(f.checksum.expected);
      expect(f.checksum.expected).toBe(first.disks.find((d) => d.diskId === f.disk)!.checksum.value);
      expect(f.bytes).toBe(web.disks.get(f.disk)!.size);
      expect(await compare(f.path, "raw", refOf(web, first.id, f.disk))).toBe("identical");
      const st = await stat(f.path);
      expect(st.blocks * 512).toBeLessThan(st.size); // holes where the guest never wrote
    }
    expect(doc.ova).toBeUndefined();
  });

  it("ova - one tar: the OVF first, qcow2 members named as its References say, sizes equal, data 4 KiB-aligned", async () => {
    const dir = join(tmp, "out-ova");
    const r = await ferry(["web01", "--to-dir", dir, "--format", "ova", "--checkpoint", "2", "--json"]);
    expect(r.code).toBe(0);
    expect(await names(dir)).toEqual(["web01.ova"]);
    const ova = join(dir, "web01.ova");
    const point = record.restorePoints[1]!;
    // The system tar reads it; the OVF is the first member.
    const listing = (await execa("tar", ["-tvf", ova])).stdout.split("\n");
    const members = listing.map((l) => {
      const f = l.trim().split(/\s+/);
      return { name: f.at(-1)!, size: Number(f[2]) };
    });
    expect(members[0]!.name).toBe("vm.ovf");
    const disks = members.filter((m) => m.name !== "vm.ovf" && m.name !== "pad");
    expect(disks.map((m) => m.name)).toEqual([`img-d1-${point.id}`, `img-d2-${point.id}`]);
    // Every File href in the OVF names a member, with the member's size; the LUN reference (no member) is gone.
    const ovf = (await execa("tar", ["-xOf", ova, "vm.ovf"])).stdout;
    const files = [...ovf.matchAll(/<File\b[^>]*?ovf:href="([^"]*)"[^>]*?ovf:size="([^"]*)"/g)].map((m) => ({ href: m[1]!, size: Number(m[2]) }));
    expect(files).toEqual(disks.map((m) => ({ href: m.name, size: m.size })));
    expect(ovf).not.toContain("lun-9");
    expect(ovf).toContain(`<rasd:HostResource>d1/img-d1-${point.id}</rasd:HostResource>`);
    // Each member is a standalone qcow2 reading as the guest did at point 2.
    const x = join(tmp, "ova-x");
    await mkdir(x);
    await execa("tar", ["-xf", ova, "-C", x]);
    for (const [i, d] of ["d1", "d2"].entries()) {
      const member = join(x, disks[i]!.name);
      expect((await info(member, "qcow2"))["backing-filename"]).toBeUndefined();
      expect(await compare(member, "qcow2", refOf(web, point.id, d))).toBe("identical");
    }
    // Where the JSON says the data lies: 4 KiB-aligned, right after a header naming the member.
    const doc = JSON.parse(r.out);
    const bytes = await readFile(ova);
    expect(doc.ova.bytes).toBe(bytes.length);
    expect(bytes.length % 512).toBe(0);
    expect(bytes.subarray(bytes.length - 1024).equals(Buffer.alloc(1024))).toBe(true);
    for (const m of doc.ova.members as { name: string; offset: number; bytes: number }[]) {
      if (m.name !== "vm.ovf") expect(m.offset % 4096).toBe(0);
      expect(bytes.subarray(m.offset - 512, m.offset - 512 + m.name.length).toString()).toBe(m.name);
      expect(m.bytes % 512 === 0 || m.name === "vm.ovf").toBe(true);
    }
    expect(doc.files.map((f: { member: string; ok: boolean }) => [f.member, f.ok])).toEqual(disks.map((m) => [m.name, true]));
    // oVirt's own extractor finds the same disks at the same places.
    expect(extractOvaWalk(bytes)).toEqual(doc.ova.members.filter((m: { name: string }) => m.name !== "vm.ovf").map((m: { name: string; offset: number; bytes: number }) => ({ name: m.name, offset: m.offset, size: m.bytes })));
  });

  it("--disk - only that disk (qcow2: its file and the OVF; ova: its member, the OVF naming only it)", async () => {
    const dir = join(tmp, "out-one");
    const r = await ferry(["web01", "--to-dir", dir, "--disk", "web01_d2"]);
    expect(r.code).toBe(0);
    expect(await names(dir)).toEqual(["web01.ovf", "web01_d2.qcow2"]);
    const latest = record.restorePoints.at(-1)!;
    expect(await compare(join(dir, "web01_d2.qcow2"), "qcow2", refOf(web, latest.id, "d2"))).toBe("identical");

    const ovaDir = join(tmp, "out-one-ova");
    expect((await ferry(["web01", "--to-dir", ovaDir, "--disk", "d1", "--format", "ova"])).code).toBe(0);
    const listing = (await execa("tar", ["-tf", join(ovaDir, "web01.ova")])).stdout.split("\n");
    expect(listing.filter((n) => n !== "pad")).toEqual(["vm.ovf", `img-d1-${latest.id}`]);
    const ovf = (await execa("tar", ["-xOf", join(ovaDir, "web01.ova"), "vm.ovf"])).stdout;
    expect(ovf).not.toContain("img-d2");
    expect(ovf).toContain(`ovf:href="img-d1-${latest.id}"`);
  });

  it("refuses to overwrite without --force (exit 1, naming the file, nothing touched); --force replaces", async () => {
    const dir = join(tmp, "out-qcow2");
    const before = await stat(join(dir, "web01_d1.qcow2"));
    const r = await ferry(["web01", "--to-dir", dir, "--checkpoint", "1"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${join(dir, "web01_d1.qcow2")} already exists; refusing to overwrite it`);
    expect(r.err).toContain("--force");
    expect(await names(dir)).toEqual(["web01.ovf", "web01_d1.qcow2", "web01_d2.qcow2"]);
    expect((await stat(join(dir, "web01_d1.qcow2"))).mtimeMs).toBe(before.mtimeMs);

    const f = await ferry(["web01", "--to-dir", dir, "--checkpoint", "1", "--force"]);
    expect(f.code).toBe(0);
    expect(await names(dir)).toEqual(["web01.ovf", "web01_d1.qcow2", "web01_d2.qcow2"]);
    expect(await compare(join(dir, "web01_d1.qcow2"), "qcow2", refOf(web, record.restorePoints[0]!.id, "d1"))).toBe("identical");
  });

  it("unknown VM, point or disk, a bad name: exit 4 and nothing written (not even DIR); no --to-dir: exit 2", async () => {
    const dir = join(tmp, "never");
    const cases: [string[], RegExp][] = [
      [["db99", "--to-dir", dir], /has no restore points for VM db99/],
      [["web01", "--to-dir", dir, "--checkpoint", "9"], /VM web01 has no restore point 9 \(restore points: 1-3\)/],
      [["web01", "--to-dir", dir, "--checkpoint", "rp-nope"], /has no restore point rp-nope/],
      [["web01", "--to-dir", dir, "--disk", "web01_d1", "--disk", "logs"], /has no disk 'logs'; its disks: web01_d1 \(d1\), web01_d2 \(d2\)/],
      [["../etc", "--to-dir", dir], /not a valid VM name/],
      [["web01", "--to-dir", dir, "--disk", "../d1"], /not a disk alias/],
    ];
    for (const [args, message] of cases) {
      const r = await ferry(args);
      expect(r.code, args.join(" ")).toBe(4);
      expect(r.err).toMatch(message);
    }
    await expect(stat(dir)).rejects.toThrow(/ENOENT/);
    expect((await ferry(["web01", "--to-dir", dir, "--format", "vmdk"])).code).toBe(2);
    // Without --to-dir it is a restore onto an engine (restore.requested): options of the directory path are refused.
    const mixed = await ferry(["web01", "--format", "ova"]);
    expect(mixed.code).toBe(2);
    expect(mixed.err).toMatch(/--format and --force go with --to-dir/);
    const missing = await ferry(["web01", "--to-dir", dir, "--store", join(tmp, "no-store")]);
    expect(missing.code).toBe(3);
    await expect(stat(dir)).rejects.toThrow(/ENOENT/);
  });

  it("a layer that rotted in the store: the disk is written but reported as a mismatch, exit 1", async () => {
    const rot = new SimVm(store, tmp, { id: "vm-rot-1", name: "rot01" }, 5);
    await rot.addDisk("d1", 4 * MiB);
    await qemuIo("raw", rot.disks.get("d1")!.guest, [{ offset: 0, length: MiB, pattern: 0x33 }]);
    const rec = await rot.backup(new Date(Date.UTC(2025, 0, 10, 2)));
    const layer = store.absolute(rec.restorePoints[0]!.disks[0]!.layer);
    await rotVisibleByte(layer, layer, 1);
    const dir = join(tmp, "out-rot");
    const r = await ferry(["rot01", "--to-dir", dir, "--json"]);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.out);
    expect(doc.ok).toBe(false);
    expect(doc.files[0]).toMatchObject({ disk: "d1", ok: false, badBlocks: 1 });
    expect(doc.files[0].checksum.actual).not.toBe(doc.files[0].checksum.expected);
    expect(doc.files[0].problem).toMatch(/differs from the one recorded at backup time \(1 of 16 blocks differ\)/);
  });
});

describe("ferry restore --to-dir, interrupted", () => {
  let big: SimVm;
  beforeAll(async () => {
    big = new SimVm(store, tmp, { id: "vm-big-1", name: "big01" }, 9);
    await big.addDisk("d1", 320 * MiB);
    await qemuIo("raw", big.disks.get("d1")!.guest, [
      { offset: 0, length: 128 * MiB, pattern: 0x44 },
      { offset: 160 * MiB, length: 128 * MiB, pattern: 0x55 },
    ]);
    await big.backup(new Date(Date.UTC(2025, 0, 10, 2)));
    await big.backup(new Date(Date.UTC(2025, 0, 11, 2)));
  }, 120_000);

  // SIGTERM while the disk is converted; SIGINT once the OVA itself is being written (pack or check).
  for (const [signal, code, format, phase] of [
    ["SIGTERM", 143, "qcow2", ".big01_d1.qcow2.part-"],
    ["SIGINT", 130, "ova", ".big01.ova.part-"],
  ] as const) {
    it(`${signal} during an export (${format}) of a larger disk: exit ${code}, "interrupted", no file left in DIR, no qemu left running`, async () => {
      const dir = join(tmp, `out-${signal}`);
      const p = spawnFerry(["restore", "big01", "--to-dir", dir, "--format", format], { BACKUP_DIR: store.root });
      await waitFor(async () => (await names(dir)).some((n) => n.startsWith(phase)), { what: `${phase}* in DIR`, timeoutMs: 30_000, intervalMs: 10 });
      const exit = await p.kill(signal);
      expect(exit.code).toBe(code);
      expect(p.stderr()).toMatch(/ferry restore: interrupted; nothing was written/);
      expect(await names(dir)).toEqual([]);
      // qemu-img (its output is in DIR) and qemu-nbd (reading the OVA in DIR) were stopped, not orphaned.
      const running = (await execa("ps", ["-eo", "args"])).stdout.split("\n").filter((l) => l.includes(dir));
      expect(running).toEqual([]);
    }, 60_000);
  }

  it("progress - on stderr at most once a second, from the first second on", () => {
    let err = "";
    const io = { stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }) } as unknown as CommandIO;
    let now = 0;
    const print = progressPrinter(io, () => now);
    const at = (t: number, bytes: number) => {
      now = t;
      print({ phase: t < 1600 ? "convert" : "verify", diskId: "d1", alias: "web01 boot", bytes, total: 4 * MiB });
    };
    at(0, 0);
    at(500, MiB);
    at(1000, 2 * MiB);
    at(1500, 3 * MiB);
    at(2100, 4 * MiB);
    at(2200, 4 * MiB);
    expect(err).toBe("ferry restore: web01 boot: 2.0 MiB of 4.0 MiB written (50%)\nferry restore: web01 boot: 4.0 MiB of 4.0 MiB checked (100%)\n");
  });

  it("an export that runs for seconds reports progress on stderr, at most once a second", async () => {
    const dir = join(tmp, "out-big");
    const started = performance.now();
    const p = spawnFerry(["restore", "big01", "--to-dir", dir, "--format", "raw"], { BACKUP_DIR: store.root });
    const exit = await p.exited;
    const seconds = (performance.now() - started) / 1000;
    expect(exit.code).toBe(0);
    const lines = p.stderr().split("\n").filter(Boolean);
    for (const l of lines) expect(l).toMatch(/^ferry restore: big01_d1: \d+(\.\d)? (B|KiB|MiB|GiB) of \d+(\.\d)? (B|KiB|MiB|GiB) (written|checked) \(\d+%\)$/);
    expect(lines.length).toBeLessThanOrEqual(Math.ceil(seconds));
    expect(await compare(join(dir, "big01_d1.raw"), "raw", refOf(big, [...big.refs.keys()].at(-1)!, "d1"))).toBe("identical");
  }, 60_000);
});
