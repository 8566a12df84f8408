/**
 * DR replication: a VM with replicateToDr gets a standing powered-off copy on the DR engine after
 * each backup (chain-updated → restore.requested mode replicate). After the first full restore,
 * each refresh uploads only what changed (the new point's layers above the replicated one), and
 * imageio's checksum of every DR disk equals the new point's. A DR disk changed behind Ferry's
 * back is found (its checksum) and uploaded whole; a running DR copy is never overwritten.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "../adapters/store/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";

const MiB = 1048576;
let p: Pipeline;
let disks: { id: string; alias: string }[];

async function pointChecksums(vm: string): Promise<Record<string, string>> {
  const r = await openStore({ root: p.storePath }).resolvePoint(vm, "latest");
  return Object.fromEntries(r.disks.map((d) => [d.disk.alias, d.disk.checksum.value]));
}

/** A backup of rep01 and the replication it causes. */
async function backupAndReplicate() {
  const b = await p.backup("rep01");
  expect(b.subject, JSON.stringify(b.event)).toBe("backup.completed");
  return { backup: b, replica: await p.restoreOutcome(String(b.event.correlationId), 120_000) };
}

beforeAll(async () => {
  p = await startPipeline({ labEngines: ["prd", "dr"], replicates: (vm) => vm === "rep01" });
  const control = p.lab.engines.prd!.control;
  const vm = await control.createVm({ name: "rep01", disks: [{ alias: "rep01_d1", size: 64 * MiB }, { alias: "rep01_d2", size: 32 * MiB }], status: "up" });
  disks = vm.disks.map((d: { id: string; alias: string }) => ({ id: d.id, alias: d.alias }));
  await control.writeGuestData(disks[0]!.id, { offset: 0, length: 24 * MiB, seed: 3 });
  await control.writeGuestData(disks[1]!.id, { offset: 0, length: 12 * MiB, seed: 4 });
}, 120_000);

afterAll(async () => {
  await p?.stop();
});

describe("DR replication (lab)", () => {
  it("replicate - the first backup creates the DR copy; three refreshes move only what changed and end equal to each new point", async () => {
    const first = await backupAndReplicate();
    expect(first.replica.subject, JSON.stringify(first.replica.event)).toBe("restore.completed");
    expect(first.replica.event).toMatchObject({ mode: "replicate", name: "rep01_dr", target: "dr" });
    const dr = p.wiring.engines.get("dr")!.client;
    const copy = await dr.vms.findByName("rep01_dr");
    expect(copy?.status).toBe("down");
    expect(Object.fromEntries((first.replica.event.disks as { alias: string; checksum: string }[]).map((d) => [d.alias, d.checksum]))).toEqual(await pointChecksums("rep01"));

    const ratios: number[] = [];
    for (let i = 0; i < 3; i++) {
      // Small guest writes, cluster aligned: 1 MiB on one disk, 512 KiB on the other.
      await p.lab.engines.prd!.control.writeGuestData(disks[0]!.id, { offset: (30 + i * 4) * MiB, length: MiB, seed: 10 + i });
      await p.lab.engines.prd!.control.writeGuestData(disks[1]!.id, { offset: (14 + i) * MiB, length: 512 * 1024, seed: 20 + i });
      const { replica } = await backupAndReplicate();
      expect(replica.subject, JSON.stringify(replica.event)).toBe("restore.completed");
      expect(replica.event.vmId).toBe(copy!.id); // refreshed in place, not recreated
      expect(Object.fromEntries((replica.event.disks as { alias: string; checksum: string }[]).map((d) => [d.alias, d.checksum]))).toEqual(await pointChecksums("rep01"));
      ratios.push(Number(replica.event.bytes) / (1.5 * MiB));
    }
    console.log(JSON.stringify({ replicationBytesPerChangedByte: ratios.map((r) => Math.round(r * 1000) / 1000) }));
    for (const r of ratios) expect(r).toBeLessThanOrEqual(1.2);
    expect(await labState(p, "dr")).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
  });

  it("replicate - a DR disk changed behind Ferry's back is found by its checksum and uploaded whole", async () => {
    const dr = p.wiring.engines.get("dr")!.client;
    const copy = (await dr.vms.findByName("rep01_dr"))!;
    const drDisk = (await dr.diskAttachments.list(copy.id))[0]!.disk.id;
    await p.lab.engines.dr!.control.writeGuestData(drDisk, { offset: 2 * MiB, length: MiB, seed: 99 });
    await p.lab.engines.prd!.control.writeGuestData(disks[0]!.id, { offset: 50 * MiB, length: MiB, seed: 31 });
    const { replica } = await backupAndReplicate();
    expect(replica.subject, JSON.stringify(replica.event)).toBe("restore.completed");
    expect(Number(replica.event.bytes)).toBeGreaterThan(20 * MiB); // the changed disk went whole
    expect(Object.fromEntries((replica.event.disks as { alias: string; checksum: string }[]).map((d) => [d.alias, d.checksum]))).toEqual(await pointChecksums("rep01"));
  });

  it("replicate - a running DR copy is never overwritten: the replication fails, the VM and its disks stay as they were", async () => {
    const dr = p.wiring.engines.get("dr")!.client;
    const copy = (await dr.vms.findByName("rep01_dr"))!;
    await dr.vms.start(copy.id);
    const up = async () => (await dr.vms.get(copy.id)).status === "up";
    for (let i = 0; i < 100 && !(await up()); i++) await new Promise((r) => setTimeout(r, 100));
    const disksBefore = (await dr.diskAttachments.list(copy.id)).map((a) => a.disk.id).sort();
    await p.lab.engines.prd!.control.writeGuestData(disks[0]!.id, { offset: 52 * MiB, length: MiB, seed: 32 });
    const { replica } = await backupAndReplicate();
    expect(replica.subject).toBe("restore.failed");
    expect(replica.event).toMatchObject({ code: "REPLICA_RUNNING" });
    expect((await dr.vms.get(copy.id)).status).toBe("up");
    expect((await dr.diskAttachments.list(copy.id)).map((a) => a.disk.id).sort()).toEqual(disksBefore);
  });
});
