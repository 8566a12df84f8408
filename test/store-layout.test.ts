/**
 * The backup store with real qemu-img: layout and modes, atomic placement, name checks, hostile
 * manifests and qcow2 files, verify (bit rot), the startup sweep, and manifest sync from KV.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openStore, StoreError, type Store } from "../adapters/store/mod.ts";
import { addRestorePoint, type ChainRecord } from "../domain/chain/mod.ts";
import { rotVisibleByte, SimVm } from "./store-fixtures.ts";

const MiB = 1024 * 1024;
const VM = { id: "vm-layout", name: "web01" };

let tmp: string;
let store: Store;

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), "ferry-store-"));
  store = openStore({ root: join(tmp, "store") });
  await store.init();
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function twoPoints(): Promise<{ vm: SimVm; record: ChainRecord }> {
  const vm = new SimVm(store, tmp, VM, 5);
  await vm.addDisk("d1", 2 * MiB);
  await vm.backup(new Date("2025-01-01T02:00:00Z"));
  const record = await vm.backup(new Date("2025-01-02T02:00:00Z"));
  return { vm, record };
}

async function tree(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true })).map(String).sort();
}

describe("store", () => {
  it("store - writes the architecture §5 layout with relative backing files, 0700 folders and 0600 files", async () => {
    const { record } = await twoPoints();
    const [p1, p2] = record.restorePoints;
    expect(p1!.disks[0]!.layer).toBe("web01/d1/20250101T020000Z.cp-20250101T020000000Z.full.qcow2");
    expect(p2!.disks[0]!.layer).toBe("web01/d1/20250102T020000Z.cp-20250102T020000000Z.incremental.qcow2");
    expect(p2!.disks[0]!.parentLayer).toBe(p1!.disks[0]!.layer);
    expect(await tree(store.root)).toEqual([
      "restore-logs",
      "web01",
      "web01/blockhashes",
      "web01/blockhashes/cp-20250101T020000000Z.d1",
      "web01/blockhashes/cp-20250102T020000000Z.d1",
      "web01/d1",
      "web01/d1/20250101T020000Z.cp-20250101T020000000Z.full.qcow2",
      "web01/d1/20250102T020000Z.cp-20250102T020000000Z.incremental.qcow2",
      "web01/ovf",
      "web01/ovf/cp-20250101T020000000Z.ovf",
      "web01/ovf/cp-20250102T020000000Z.ovf",
      "web01/restore-points.json",
    ]);
    for (const rel of await tree(store.root)) {
      const st = await stat(join(store.root, rel));
      expect((st.mode & 0o777).toString(8), rel).toBe(st.isDirectory() ? "700" : "600");
    }
    const info = JSON.parse((await execa("qemu-img", ["info", "--output=json", "-f", "qcow2", store.absolute(p2!.disks[0]!.layer)])).stdout);
    expect(info["backing-filename"]).toBe("20250101T020000Z.cp-20250101T020000000Z.full.qcow2");
    const manifest = JSON.parse(await readFile(join(store.root, "web01/restore-points.json"), "utf8"));
    expect(manifest).toEqual(record);
  });

  it("store - placeLayer makes an absolute backing relative, and refuses a wrong parent without placing anything", async () => {
    const { record } = await twoPoints();
    const parent = record.restorePoints[1]!.disks[0]!.layer;
    const prep = await store.prepareLayer({ vmName: "web01", diskId: "d1", time: "2025-01-03T02:00:00Z", key: "c3", kind: "incremental", parentLayer: parent });
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-b", store.absolute(parent), "-F", "qcow2", prep.tempPath]);
    const placed = await store.placeLayer({ tempPath: prep.tempPath, relPath: prep.relPath, parentLayer: parent });
    expect(placed.backing).toBe(parent);
    const info = JSON.parse((await execa("qemu-img", ["info", "--output=json", "-f", "qcow2", prep.finalPath])).stdout);
    expect(info["backing-filename"]).toBe(parent.split("/").pop());

    const wrong = await store.prepareLayer({ vmName: "web01", diskId: "d1", time: "2025-01-04T02:00:00Z", key: "c4", kind: "incremental", parentLayer: parent });
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-b", record.restorePoints[0]!.disks[0]!.layer.split("/").pop()!, "-F", "qcow2", wrong.tempPath]);
    await expect(store.placeLayer({ tempPath: wrong.tempPath, relPath: wrong.relPath, parentLayer: parent })).rejects.toMatchObject({ code: "STORE_LAYER_MISMATCH" });
    await expect(stat(wrong.finalPath)).rejects.toMatchObject({ code: "ENOENT" });
    // A recorded layer is never replaced.
    const again = await store.prepareLayer({ vmName: "web01", diskId: "d1", time: "2025-01-01T02:00:00Z", key: "cp-20250101T020000000Z", kind: "full" });
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", again.tempPath, String(2 * MiB)]);
    await expect(store.placeLayer({ tempPath: again.tempPath, relPath: again.relPath })).rejects.toMatchObject({ code: "STORE_LAYER_RECORDED" });
  });

  it("store - bad names are refused with a clear error and nothing is created", async () => {
    const before = await tree(store.root);
    for (const vmName of ["../etc", "a/b", ".", "..", "", "x\0y", "web 01"]) {
      await expect(store.prepareLayer({ vmName, diskId: "d1", time: "2025-01-01T00:00:00Z", key: "c1", kind: "full" })).rejects.toThrow(/VM name .* is not allowed/);
      await expect(store.readManifest(vmName)).rejects.toThrow(/not allowed/);
    }
    await expect(store.saveOvf("web01", "../../x", "<ovf/>")).rejects.toThrow(/checkpoint "..\/..\/x" is not allowed/);
    await expect(store.saveDigests("web01", "c1", "d/1", Buffer.alloc(32))).rejects.toThrow(/disk id "d\/1" is not allowed/);
    expect(() => store.absolute("/etc/passwd")).toThrow(StoreError);
    expect(() => store.absolute("web01/../../etc/passwd")).toThrow(/'\.\.'/);
    expect(await tree(store.root)).toEqual(before);
  });

  it("store - a hostile manifest is refused: escaping paths, wrong VM, garbage", async () => {
    const { record } = await twoPoints();
    const path = join(store.root, "web01/restore-points.json");
    const tamper = async (r: unknown) => writeFile(path, JSON.stringify(r));
    const d = record.restorePoints[0]!.disks[0]!;
    await tamper({ ...record, restorePoints: [{ ...record.restorePoints[0], disks: [{ ...d, layer: "../../etc/passwd" }] }] });
    await expect(store.readManifest("web01")).rejects.toMatchObject({ code: "STORE_MANIFEST_INVALID" });
    await tamper({ ...record, restorePoints: [{ ...record.restorePoints[0], disks: [{ ...d, layer: "db01/d1/20250101T020000Z.c1.full.qcow2" }] }] });
    await expect(store.readManifest("web01")).rejects.toThrow(/not a layer file under web01\/d1/);
    await tamper({ ...record, vm: { ...record.vm, name: "db01" } });
    await expect(store.readManifest("web01")).rejects.toThrow(/not under db01\//);
    await writeFile(path, "{");
    await expect(store.readManifest("web01")).rejects.toThrow(/not valid JSON/);
  });

  it("store - a hostile qcow2 is refused before qemu follows it: absolute, escaping, protocol and looping backing files, data files, symlinks", async () => {
    const { record } = await twoPoints();
    const top = record.restorePoints[1]!.disks[0]!;
    const base = record.restorePoints[0]!.disks[0]!;
    const topAbs = store.absolute(top.layer);
    const rebase = (b: string, f = "qcow2") => execa("qemu-img", ["rebase", "-u", "-f", "qcow2", "-b", b, "-F", f, topAbs]);
    const expectHostile = async (re: RegExp) => {
      await expect(store.resolvePoint("web01", 2)).rejects.toMatchObject({ code: "STORE_HOSTILE_IMAGE" });
      await expect(store.resolvePoint("web01", 2)).rejects.toThrow(re);
      await expect(store.verify("web01", 2)).rejects.toThrow(re);
    };
    await rebase("/etc/passwd", "raw");
    await expectHostile(/backing file "\/etc\/passwd"/);
    await rebase("../d2/x.full.qcow2");
    await expectHostile(/not a layer file name in its own folder/);
    await rebase('json:{"file":{"driver":"nbd","host":"127.0.0.1"}}');
    await expectHostile(/json:/);
    await rebase(base.layer.split("/").pop()!, "raw");
    await expectHostile(/format raw/);
    // A loop: the base points back at the top.
    await rebase(base.layer.split("/").pop()!);
    await execa("qemu-img", ["rebase", "-u", "-f", "qcow2", "-b", top.layer.split("/").pop()!, "-F", "qcow2", store.absolute(base.layer)]);
    await expect(store.resolvePoint("web01", 2)).rejects.toThrow(/loops/);
    await execa("qemu-img", ["rebase", "-u", "-f", "qcow2", "-b", "", store.absolute(base.layer)]);
    expect((await store.resolvePoint("web01", 2)).disks[0]!.chain).toEqual([top.layer, base.layer]);
    // An external data file.
    await rm(topAbs);
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-o", `data_file=${join(tmp, "data.raw")}`, topAbs, String(2 * MiB)]);
    await expect(store.resolvePoint("web01", 2)).rejects.toThrow(/external data file/);
    // A symlink in place of a layer.
    await rm(topAbs);
    await symlink("/etc/hostname", topAbs);
    await expect(store.resolvePoint("web01", 2)).rejects.toMatchObject({ code: "STORE_HOSTILE_PATH" });
  });

  it("store - verify re-reads a chain: ok, then the flipped block is named after bit rot", async () => {
    const { record } = await twoPoints();
    const ok = await store.verify("web01", "latest", { record: true });
    expect(ok.ok).toBe(true);
    expect(ok.disks[0]).toMatchObject({ diskId: "d1", ok: true, layers: 2, blocks: 8, badBlockCount: 0 });
    expect(ok.disks[0]!.checksum.actual).toBe(record.restorePoints[1]!.disks[0]!.checksum.value);
    expect((await store.readManifest("web01"))!.restorePoints[1]!.verified).toMatchObject({ ok: true });

    // Rot one byte of guest data inside the full layer, where point 2 still reads it.
    const start = await rotVisibleByte(store.absolute(record.restorePoints[1]!.disks[0]!.layer), store.absolute(record.restorePoints[0]!.disks[0]!.layer), 2);
    const hit = { start };
    const bad = await store.verify("web01", 2, { record: true });
    expect(bad.ok).toBe(false);
    expect(bad.disks[0]!.badBlocks).toEqual([{ index: Math.floor(hit.start / (256 * 1024)), offset: Math.floor(hit.start / (256 * 1024)) * 256 * 1024, length: 256 * 1024 }]);
    expect(bad.disks[0]!.problems.join(" ")).toMatch(/1 of 8 blocks differ/);
    expect((await store.readManifest("web01"))!.restorePoints[1]!.verified).toMatchObject({ ok: false });
  });

  it("store - sweep removes stale temp files, keeps fresh ones, and reports unrecorded layers", async () => {
    await twoPoints();
    const dir = join(store.root, "web01/d1");
    const old = new Date(Date.now() - 7 * 3_600_000);
    for (const n of [".tmp-1111", ".x.qcow2.part-abcd", "x.tmp-123-abc"]) {
      await writeFile(join(dir, n), "partial");
      await utimes(join(dir, n), old, old);
    }
    await writeFile(join(dir, ".tmp-fresh"), "in progress");
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", join(dir, "20250109T020000Z.c9.full.qcow2"), "1M"]);
    const r = await store.sweep();
    expect(r.removedTemp.sort()).toEqual(["web01/d1/.tmp-1111", "web01/d1/.x.qcow2.part-abcd", "web01/d1/x.tmp-123-abc"]);
    expect(r.orphans).toEqual(["web01/d1/20250109T020000Z.c9.full.qcow2"]);
    expect(r.removedOrphans).toEqual([]);
    expect((await readdir(dir)).sort()).toContain(".tmp-fresh");
  });

  it("store - a manifest write interrupted before its rename leaves the previous manifest intact", async () => {
    const { record } = await twoPoints();
    const before = await readFile(join(store.root, "web01/restore-points.json"), "utf8");
    // The state a crash between writing the temp file and renaming it leaves behind.
    await writeFile(join(store.root, "web01", ".tmp-crashed"), before.slice(0, 100));
    expect(await store.readManifest("web01")).toEqual(record);
    expect(await store.listVms()).toEqual(["web01"]);
  });

  it("store - writeManifest appends points from a KV record and never brings back removed ones", async () => {
    const { vm, record } = await twoPoints();
    // KV is one point ahead of the store (the manifest write after the KV update did not happen).
    const third = await vm.backup(new Date("2025-01-03T02:00:00Z"));
    const kvRecord = third;
    await writeFile(join(store.root, "web01/restore-points.json"), JSON.stringify(record));
    const synced = await store.writeManifest(kvRecord);
    expect(synced.restorePoints.map((p) => p.id)).toEqual(kvRecord.restorePoints.map((p) => p.id));
    // Retention removed the first point from the store; a stale KV record still has it.
    const after = (await store.applyRetention(VM, { keepLast: 2 }, { now: new Date("2025-01-04T00:00:00Z") })).record;
    const again = await store.writeManifest(kvRecord);
    expect(again.restorePoints.map((p) => p.id)).toEqual(after.restorePoints.map((p) => p.id));
    // A record of another VM under the same name is refused.
    await expect(store.writeManifest({ ...kvRecord, vm: { id: "other", name: "web01" } })).rejects.toMatchObject({ code: "STORE_VM_MISMATCH" });
    // A point whose layer file is missing is refused.
    const p = after.restorePoints.at(-1)!;
    const ghost = addRestorePoint(after, {
      ...p,
      id: "ghost",
      seq: p.seq + 1,
      time: "2025-01-05T02:00:00Z",
      disks: p.disks.map((d) => ({ ...d, layer: "web01/d1/20250105T020000Z.ghost.incremental.qcow2", parentLayer: d.layer, kind: "incremental" as const })),
    });
    await expect(store.writeManifest(ghost)).rejects.toMatchObject({ code: "STORE_FILE_MISSING" });
  });

  it("store - concurrent writers of one VM are serialized by the folder lock; a dead holder's lock is taken over", async () => {
    const { vm } = await twoPoints();
    await mkdir(join(store.root, "web01"), { recursive: true });
    // A lock left by a process that no longer exists.
    await writeFile(join(store.root, "web01/.lock"), JSON.stringify({ pid: 2 ** 22 + 17, host: (await import("node:os")).hostname(), label: "crashed" }));
    const order: string[] = [];
    await Promise.all([
      store.withVmLock("web01", "a", async () => {
        order.push("a+");
        await new Promise((r) => setTimeout(r, 50));
        order.push("a-");
      }),
      store.withVmLock("web01", "b", async () => {
        order.push("b+");
        order.push("b-");
      }),
    ]);
    // One after the other, never interleaved (which one goes first is not specified).
    expect([order.join(","), order.slice(2).concat(order.slice(0, 2)).join(",")]).toContain("a+,a-,b+,b-");
    await expect(stat(join(store.root, "web01/.lock"))).rejects.toMatchObject({ code: "ENOENT" });
    // A live holder on another host makes a writer give up with a retryable error.
    await writeFile(join(store.root, "web01/.lock"), JSON.stringify({ pid: 1, host: "elsewhere", label: "backup" }));
    const impatient = openStore({ root: store.root, lock: { waitMs: 100 } });
    await expect(impatient.withVmLock("web01", "c", async () => undefined)).rejects.toMatchObject({ code: "STORE_BUSY" });
    await rm(join(store.root, "web01/.lock"));
    expect((await vm.mismatches((await store.readManifest("web01"))!))).toEqual([]);
  });
});
