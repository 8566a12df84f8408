import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { addRestorePoint, digestsPath, emptyChain, layerPath, ovfPath, type ChainRecord } from "../../domain/chain/mod.ts";
import { clearStaleLock, LOCK_FILE, withDirLock } from "./lock.ts";
import { findOrphans, referencedFiles } from "./orphans.ts";
import { StorePaths } from "./paths.ts";

const VM = { id: "vm-1", name: "web01" };
const HOUR = 3_600_000;
let root: string;
let paths: StorePaths;

function record(): ChainRecord {
  const time = "2026-01-01T00:00:00.000Z";
  return addRestorePoint(emptyChain(VM, new Date(time)), {
    id: "rp1", time, checkpointId: "cp1", ovfFile: ovfPath(VM.name, "cp1"),
    disks: [{ diskId: "d1", alias: "d1", virtualSize: 1 << 20, layer: layerPath(VM.name, "d1", time, "cp1", "full"), kind: "full", size: 1, checksum: { algorithm: "sha256", blockSize: 4 << 20, value: "a".repeat(64) }, digestsFile: digestsPath(VM.name, "cp1", "d1") }],
  });
}

async function plant(rel: string, ageMs = 2 * HOUR): Promise<void> {
  const abs = join(root, rel);
  await mkdir(dirname(abs), { recursive: true });
  await writeFile(abs, "x".repeat(100));
  const t = new Date(Date.now() - ageMs);
  await utimes(abs, t, t);
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "ferry-orphans-"));
  paths = new StorePaths(root);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("findOrphans", () => {
  it("orphans - unreferenced layers, digests, OVFs and temp files past the grace; never a point's files, unknown files, young files, kept files or symlinks", async () => {
    const r = record();
    for (const f of referencedFiles(r)) await plant(f);
    await plant("web01/restore-points.json");
    await plant("web01/d1/20260102T000000Z.cp2.incremental.qcow2");
    await plant("web01/blockhashes/cp2.d1");
    await plant("web01/ovf/cp2.ovf");
    await plant("web01/d1/.20260102T000000Z.cp2.incremental.qcow2.part-0abc");
    await plant("web01/.tmp-1234");
    await plant("web01/d1/20260103T000000Z.cp3.full.qcow2", 60_000); // younger than the grace
    await plant("web01/d1/20260104T000000Z.cp4.full.qcow2"); // an incoming point's
    await plant("web01/notes.txt");
    await plant("web01/d1/readme.txt");
    await symlink("/etc/hostname", join(root, "web01/d1/20260105T000000Z.cp5.full.qcow2"));
    const found = await findOrphans(paths, VM.name, r, { olderThanMs: HOUR, keep: new Set(["web01/d1/20260104T000000Z.cp4.full.qcow2"]) });
    expect(found.map((f) => [f.path, f.kind, f.bytes]).sort()).toEqual([
      ["web01/.tmp-1234", "temp", 100],
      ["web01/blockhashes/cp2.d1", "digests", 100],
      ["web01/d1/.20260102T000000Z.cp2.incremental.qcow2.part-0abc", "temp", 100],
      ["web01/d1/20260102T000000Z.cp2.incremental.qcow2", "layer", 100],
      ["web01/ovf/cp2.ovf", "ovf", 100],
    ]);
  });

  it("orphans - a pending retention run's steps and cleanup, and incoming points, are referenced", () => {
    const r = record();
    const withIncoming: ChainRecord = { ...r, incoming: [{ id: "rp2", time: r.updatedAt, diskCount: 2, ovfFile: "web01/ovf/cp2.ovf", disks: [{ ...r.restorePoints[0]!.disks[0]!, layer: "web01/d1/20260102T000000Z.cp2.full.qcow2", digestsFile: "web01/blockhashes/cp2.d1" }] }] };
    const refs = referencedFiles(withIncoming);
    for (const f of ["web01/ovf/cp2.ovf", "web01/d1/20260102T000000Z.cp2.full.qcow2", "web01/blockhashes/cp2.d1", r.restorePoints[0]!.disks[0]!.layer]) expect(refs.has(f), f).toBe(true);
  });
});

describe("clearStaleLock", () => {
  it("stale lock - a lock naming this process that nothing here holds is removed; a held one or a live process's is not", async () => {
    const dir = join(root, "web01");
    await mkdir(dir, { recursive: true });
    const lock = join(dir, LOCK_FILE);
    // Left by this process (its release failed, e.g. on a read-only store).
    await writeFile(lock, JSON.stringify({ pid: process.pid, host: hostname(), label: "verify" }));
    expect(await clearStaleLock(dir)).toBe(true);
    await expect(stat(lock)).rejects.toThrow();
    // Held right now by this process: left alone.
    await withDirLock(dir, "busy", async () => {
      expect(await clearStaleLock(dir)).toBe(false);
      expect(JSON.parse(await readFile(lock, "utf8")).label).toBe("busy");
    });
    // Another live process on this host (the test runner's parent): left to age.
    await writeFile(lock, JSON.stringify({ pid: process.ppid, host: hostname(), label: "other" }));
    expect(await clearStaleLock(dir)).toBe(false);
    // Another host: left to age.
    await writeFile(lock, JSON.stringify({ pid: 1, host: "elsewhere.example", label: "other" }));
    expect(await clearStaleLock(dir)).toBe(false);
  });
});
