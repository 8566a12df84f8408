/**
 * Orphan store files (issue 8 item 8): the reconciler removes store files that no restore point
 * and no live run references — a layer, its block digests, an OVF and a temp file a failed run
 * left — once untouched for the grace period, logs each with its size and counts them; files of a
 * restore point, unknown files, files younger than the grace, the files of a run in flight (a
 * real backup held mid-download by a throttled imageio) and the files of an incoming point are
 * never touched. A `.lock` left by this process (its release failed) is removed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdir, readdir, stat, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { hostname } from "node:os";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { createReconciler } from "../pipeline/reconcile.ts";
import { backupFunctionDeps } from "../pipeline/composition.ts";
import { addIncomingDisk } from "../domain/chain/mod.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1048576;
const HOUR = 3_600_000;
let p: Pipeline;

beforeAll(async () => {
  p = await startPipeline();
});

afterAll(async () => {
  await p?.stop();
});

async function exists(abs: string): Promise<boolean> {
  return stat(abs).then(() => true, () => false);
}

/** A file in the store, its mtime `ageMs` in the past. */
async function plant(rel: string, ageMs: number, o: { qcow2?: boolean } = {}): Promise<string> {
  const abs = join(p.storePath, rel);
  await mkdir(dirname(abs), { recursive: true, mode: 0o700 });
  if (o.qcow2) await qemuImg.create({ path: abs, format: "qcow2", size: 4 * MiB });
  else await writeFile(abs, Buffer.alloc(4096, 7), { mode: 0o600 });
  const t = new Date(Date.now() - ageMs);
  await utimes(abs, t, t);
  return abs;
}

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out.sort();
}

describe("orphan store files (lab)", () => {
  it("orphans - removed after the grace period, logged and counted; a live run's and an incoming point's files are untouched", async () => {
    const control = p.lab.engines.prd!.control;
    const logs: { o: Record<string, unknown>; m?: string }[] = [];
    const log = { info: (o: object, m?: string) => logs.push({ o: o as Record<string, unknown>, ...(m ? { m } : {}) }), warn: (o: object, m?: string) => logs.push({ o: o as Record<string, unknown>, ...(m ? { m } : {}) }), error() {} };
    const deps = backupFunctionDeps(p.wiring, log).reconciler;
    const reconcilerWith = (graceMs: number) => createReconciler({ ...deps, orphans: { ...deps.orphans, graceMs } });

    // VM A: one restore point, then what a run that failed for good left beside it.
    const a = await control.createVm({ name: "orph-a", disks: [{ alias: "oa_d1", size: 8 * MiB }], status: "up" });
    const aDisk = a.disks[0]!.id as string;
    await control.writeGuestData(aDisk, { offset: 0, length: 2 * MiB, pattern: 0x31 });
    const full = await p.backup("orph-a");
    expect(full.subject, JSON.stringify(full.event)).toBe("backup.completed");
    const pointFiles = await allFiles(join(p.storePath, "orph-a"));
    const old = [
      await plant(`orph-a/${aDisk}/20260101T000000Z.cp-failed.incremental.qcow2`, 2 * HOUR, { qcow2: true }),
      await plant(`orph-a/blockhashes/cp-failed.${aDisk}`, 2 * HOUR),
      await plant("orph-a/ovf/cp-failed.ovf", 2 * HOUR),
      await plant(`orph-a/${aDisk}/.20260101T000000Z.cp-failed.incremental.qcow2.part-0a1b2c`, 2 * HOUR),
    ];
    const fresh = await plant(`orph-a/${aDisk}/20260102T000000Z.cp-fresh.full.qcow2`, 0, { qcow2: true });
    const unknown = await plant("orph-a/notes.txt", 2 * HOUR);
    // A lock this process left (its release failed while the store was read-only): it would block `ferry verify` for 5 min.
    await writeFile(join(p.storePath, "orph-a/.lock"), JSON.stringify({ pid: process.pid, host: hostname(), label: "verify" }), { mode: 0o600 });

    // VM C: a point still being recorded (an incoming disk in KV, no lease): its files are kept.
    const cDisk = "c-disk-1";
    const incomingLayer = `orph-c/${cDisk}/20260103T000000Z.cp-c.full.qcow2`;
    await plant(incomingLayer, 2 * HOUR, { qcow2: true });
    await plant(`orph-c/blockhashes/cp-c.${cDisk}`, 2 * HOUR);
    const cOrphan = await plant(`orph-c/${cDisk}/20260101T000000Z.cp-gone.full.qcow2`, 2 * HOUR, { qcow2: true });
    await p.wiring.chains.change({ id: "vm-c-id", name: "orph-c" }, (cur) =>
      addIncomingDisk(cur, {
        id: "rp-c", time: new Date().toISOString(), checkpointId: "cp-c", diskCount: 2, ovfFile: "orph-c/ovf/cp-c.ovf",
        disk: { diskId: cDisk, alias: "c", virtualSize: 4 * MiB, layer: incomingLayer, kind: "full", size: 1, checksum: { algorithm: "sha256", blockSize: 4 * MiB, value: "0".repeat(64) }, digestsFile: `orph-c/blockhashes/cp-c.${cDisk}` },
      }).record,
    );

    // Pass 1, grace 1 h: the old orphans go, the fresh one stays.
    const r1 = await reconcilerWith(HOUR).reconcileOnce();
    expect(r1.clearedLocks).toEqual(["orph-a"]);
    expect(await exists(join(p.storePath, "orph-a/.lock"))).toBe(false);
    expect(r1.removedFiles.map((f) => f.path).sort()).toEqual([...old.map((f) => f.slice(p.storePath.length + 1)), cOrphan.slice(p.storePath.length + 1)].sort());
    expect(r1.removedBytes).toBe(r1.removedFiles.reduce((n, f) => n + f.bytes, 0));
    expect(r1.removedBytes).toBeGreaterThan(0);
    for (const f of [...old, cOrphan]) expect(await exists(f), f).toBe(false);
    for (const f of [...pointFiles, fresh, unknown, join(p.storePath, incomingLayer)]) expect(await exists(f), f).toBe(true);
    const logged = logs.filter((l) => l.m === "reconciler removed an orphan store file").map((l) => [l.o.path, typeof l.o.bytes]);
    expect(logged).toHaveLength(5);
    expect(logged.every(([, b]) => b === "number")).toBe(true);
    // The restore point still verifies.
    expect((await p.wiring.store.volume.verify("orph-a", "latest")).ok).toBe(true);

    // VM B: a real backup held mid-download (throttled imageio).
    const b = await control.createVm({ name: "orph-b", disks: [{ alias: "ob_d1", size: 16 * MiB }], status: "up" });
    const bDisk = b.disks[0]!.id as string;
    await control.writeGuestData(bDisk, { offset: 0, length: 12 * MiB, pattern: 0x42 });
    control.faults.throttleImageio(512 * 1024);
    const id = await p.request("orph-b");
    let inFlight: string[] = [];
    await waitFor(async () => {
      inFlight = await allFiles(join(p.storePath, "orph-b")).catch(() => []);
      const runs = await p.wiring.runs.list();
      return inFlight.some((f) => f.includes(".part-")) && runs.some((r) => r.vm.name === "orph-b" && r.disks.some((d) => d.state === "downloading"));
    }, { timeoutMs: 90_000, what: "orph-b's download in flight" });
    // Grace 0: only the live-run rule protects B now; A's fresh orphan goes.
    const r2 = await reconcilerWith(0).reconcileOnce();
    expect(r2.removedFiles.map((f) => f.path)).toEqual([fresh.slice(p.storePath.length + 1)]);
    for (const f of inFlight) expect(await exists(f), f).toBe(true);
    expect(await exists(join(p.storePath, incomingLayer))).toBe(true);
    control.faults.throttleImageio(0);
    const out = await p.outcome(id, 180_000);
    expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");
    expect((await p.wiring.store.volume.verify("orph-b", "latest")).ok).toBe(true);
  });
});
