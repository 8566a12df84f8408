/**
 * Injected faults on the lab engine / imageio during backups. Each ends in success after a retry
 * (with a verified restore point) or in exactly one backup.failed plus one alert in the engine
 * audit log; never a hang, never a corrupt restore point, nothing left open on the engine.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { StorePaths, writeManifestFile } from "../adapters/store/mod.ts";
import { emptyChain } from "../domain/chain/mod.ts";
import { startPipeline, type Outcome, type Pipeline } from "./backup-support.ts";
import { ferryAudit, labState } from "./backup-lab.ts";

const MiB = 1048576;
let p: Pipeline;
let vmId: string;
let diskIds: string[];
let n = 0;

beforeAll(async () => {
  p = await startPipeline({ maxDeliver: 3, backoffMs: [300, 600, 1000] });
  const control = p.lab.engines.prd!.control;
  const vm = await control.createVm({ name: "db01", disks: [{ alias: "db01_d1", size: 16 * MiB }, { alias: "db01_d2", size: 8 * MiB }], status: "up" });
  vmId = vm.id;
  diskIds = vm.disks.map((d: { id: string }) => d.id);
  await control.writeGuestData(diskIds[0]!, { offset: 0, length: 6 * MiB, pattern: 0x21 });
  await control.writeGuestData(diskIds[1]!, { offset: MiB, length: 2 * MiB, pattern: 0x22 });
  const first = await p.backup("db01");
  expect(first.subject, JSON.stringify(first.event)).toBe("backup.completed");
});

afterAll(async () => {
  await p?.stop();
});

async function change(): Promise<void> {
  n++;
  await p.lab.engines.prd!.control.writeGuestData(diskIds[0]!, { offset: (n % 12) * MiB + 777, length: 200_000, pattern: 0x80 + n });
}

/** The restore point equals the lab's image at that backup, and the engine holds nothing open. */
async function expectGoodPoint(out: Outcome): Promise<void> {
  expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");
  const control = p.lab.engines.prd!.control;
  for (const d of out.disks) {
    const top = join(p.storePath, (d.layer as { path: string }).path);
    const chk = await qemuImg.check(top, { format: "qcow2" });
    expect(chk.checkErrors + chk.corruptions).toBe(0);
    const exported = join(p.dir, `f-${String(d.backupId)}-${(d.disk as { id: string }).id}.raw`);
    await control.exportImage((d.disk as { id: string }).id, exported, { format: "raw", atBackup: String(d.backupId) });
    expect((await qemuImg.compare(top, exported, { formatA: "qcow2", formatB: "raw" })).identical).toBe(true);
  }
  expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
}

describe("backup faults (lab)", () => {
  it("backup faults - a transfer the engine fails is retried and the backup succeeds", async () => {
    await change();
    p.lab.engines.prd!.control.faults.failNextTransfer("transferring");
    await expectGoodPoint(await p.backup("db01"));
  });

  it("backup faults - a connection dropped mid-range is retried and the backup succeeds", async () => {
    await change();
    p.lab.engines.prd!.control.faults.dropConnectionAfter(512 * 1024);
    await expectGoodPoint(await p.backup("db01"));
  });

  it("backup faults - 503s from the engine are retried and the backup succeeds", async () => {
    await change();
    p.lab.engines.prd!.control.faults.httpErrors(503, 3, "/backups");
    await expectGoodPoint(await p.backup("db01"));
  });

  it("backup faults - a stalled finalize is waited out and the backup succeeds", async () => {
    await change();
    p.lab.engines.prd!.control.faults.stallFinalize(3000);
    await expectGoodPoint(await p.backup("db01"));
  });

  it("backup faults - a missing bitmap turns the incremental into a full with the reason", async () => {
    await change();
    const rec = await p.wiring.chains.read(vmId);
    const cp = rec!.restorePoints.at(-1)!.checkpointId!;
    p.lab.engines.prd!.control.faults.deleteBitmap(diskIds[0]!, cp);
    const out = await p.backup("db01");
    await expectGoodPoint(out);
    const d0 = out.disks.find((d) => (d.disk as { id: string }).id === diskIds[0]);
    expect(d0?.mode).toBe("full");
    expect(String(d0?.reason)).toMatch(/bitmap|checkpoint|incremental/i);
  });

  it("backup faults - a fault that outlasts every retry gives exactly one backup.failed and one alert", async () => {
    await change();
    const alertsBefore = (await ferryAudit(p)).filter((e) => e.severity === "alert").length;
    // 500, not 503: an engine outage (503) is waited out for its time budget instead of failing.
    p.lab.engines.prd!.control.faults.httpErrors(500, 1000, "/backups");
    const id = await p.request("db01");
    const out = await p.outcome(id, 60_000);
    p.lab.engines.prd!.control.faults.clear();
    expect(out.subject).toBe("backup.failed");
    await new Promise((r) => setTimeout(r, 1500));
    expect(p.seen.filter((s) => s.subject === "backup.failed" && s.event.correlationId === id)).toHaveLength(1);
    const alerts = (await ferryAudit(p)).filter((e) => e.severity === "alert");
    expect(alerts.length - alertsBefore).toBe(1);
    expect(alerts.at(0)?.description ?? "").toMatch(/db01/);
    // And the next run works.
    await expectGoodPoint(await p.backup("db01"));
  });

  it("backup faults - a permanent failure recording the restore point (disk-transferred) gives exactly one backup.failed and one alert", async () => {
    // The store folder of web09 already belongs to another VM (same name, other id): recording the
    // point fails for good at the disk-transferred step, after the disks were downloaded.
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "web09", disks: [{ alias: "web09_d1", size: 4 * MiB }], status: "up" });
    await control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: MiB, pattern: 0x33 });
    await writeManifestFile(new StorePaths(p.storePath), emptyChain({ id: "another-vm-named-web09", name: "web09" }));
    const alertsBefore = (await ferryAudit(p)).filter((e) => e.severity === "alert").length;
    const id = await p.request("web09");
    const out = await p.outcome(id, 60_000);
    expect(out.subject, JSON.stringify(out.event)).toBe("backup.failed");
    expect(out.event).toMatchObject({ vm: "web09", code: "STORE_VM_MISMATCH", step: "disk.transferred" });
    expect(out.disks).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 1500));
    expect(p.seen.filter((s) => s.subject === "backup.failed" && s.event.correlationId === id)).toHaveLength(1);
    expect(p.seen.filter((s) => s.subject === "chain.updated" && s.event.correlationId === id)).toHaveLength(0);
    const alerts = (await ferryAudit(p)).filter((e) => e.severity === "alert");
    expect(alerts.length - alertsBefore).toBe(1);
    expect(alerts.filter((a) => /web09/.test(a.description))).toHaveLength(1);
    expect(alerts.find((a) => /web09/.test(a.description))!.description).toMatch(/STORE_VM_MISMATCH/);
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
    // The store refused the point, so KV must not list it either (else the next incremental
    // would build on a layer the store does not have: STORE_PARENT_GONE until a state rebuild).
    const failedPoint = String(out.disks[0]!.restorePoint);
    const kvAfter = await p.wiring.chains.read(vm.id);
    expect(kvAfter?.restorePoints.map((r) => r.id) ?? []).not.toContain(failedPoint);
    expect(kvAfter?.restorePoints ?? []).toEqual([]);

    // Obstacle removed (the other VM's manifest goes away): the next backup of web09 succeeds.
    await rm(join(p.storePath, "web09", "restore-points.json"));
    const next = await p.backup("web09");
    await expectGoodPoint(next);
    const rp = (next.chain as { restorePoint: { id: string; kind: string } } | undefined)?.restorePoint;
    expect(rp?.id).toBe(String(next.disks[0]!.restorePoint));
    expect(rp?.id).not.toBe(failedPoint);
    if (rp?.kind === "full") expect(String(next.chain?.reason ?? next.disks[0]!.reason ?? "")).not.toBe("");
    const kvNext = await p.wiring.chains.read(vm.id);
    const stored = await p.wiring.store.volume.readManifest("web09");
    expect(kvNext?.restorePoints.map((r) => r.id)).toEqual([rp!.id]);
    expect(stored?.vm.id).toBe(vm.id);
    expect(stored?.restorePoints.map((r) => r.id)).toEqual([rp!.id]);
    expect((await p.wiring.store.volume.verify("web09", "latest")).ok).toBe(true);
  });
});
