/**
 * End to end through the real runtime (nats-server), the lab engine + imageio, the dataplane and
 * the store: a 2-disk VM gets a full and 3 incrementals with guest writes in between; every restore
 * point is checked with plain qemu-img against the lab's own image at that backup. Then a disk
 * added after the last checkpoint, and a restored snapshot (invalid checkpoints).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { digestLocalImage } from "../dataplane/mod.ts";
import { startPipeline, type Outcome, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";

const MiB = 1048576;
let p: Pipeline;
let vmId: string;
let disks: { id: string; alias: string }[];

beforeAll(async () => {
  p = await startPipeline();
  const vm = await p.lab.engines.prd!.control.createVm({
    name: "web01",
    disks: [{ alias: "web01_d1", size: 16 * MiB }, { alias: "web01_d2", size: 8 * MiB }],
    status: "up",
  });
  vmId = vm.id;
  disks = vm.disks.map((d: { id: string; alias: string }) => ({ id: d.id, alias: d.alias }));
  const control = p.lab.engines.prd!.control;
  await control.writeGuestData(disks[0]!.id, { offset: 0, length: 3 * MiB, pattern: 0x11 });
  await control.writeGuestData(disks[1]!.id, { offset: 2 * MiB, length: 1 * MiB, pattern: 0x22 });
});

afterAll(async () => {
  await p?.stop();
});

/** Every layer of the outcome: check, chain depth, and content equal to the lab's image at that backup. */
async function verifyPoint(out: Outcome, expectDepth: Record<string, number>): Promise<void> {
  const control = p.lab.engines.prd!.control;
  for (const d of out.disks) {
    const disk = d.disk as { id: string };
    const layer = d.layer as { path: string };
    const top = join(p.storePath, layer.path);
    const check = await qemuImg.check(top, { format: "qcow2" });
    expect(check.checkErrors + check.corruptions).toBe(0);
    const chain = await qemuImg.info(top, { format: "qcow2", backingChain: true });
    expect(chain.length).toBe(expectDepth[disk.id]);
    const exported = join(p.dir, `export-${String(d.backupId)}-${disk.id}.raw`);
    await control.exportImage(disk.id, exported, { format: "raw", atBackup: String(d.backupId) });
    const cmp = await qemuImg.compare(top, exported, { formatA: "qcow2", formatB: "raw" });
    expect(cmp.identical, cmp.detail).toBe(true);
    // The restore point's checksum is imageio's checksum of the engine's image at that moment.
    const local = await digestLocalImage({ image: exported, format: "raw" });
    expect((d.checksum as { value: string }).value).toBe(local.checksum);
  }
}

describe("backup pipeline (lab)", () => {
  it("backup pipeline - full then 3 incrementals with guest writes: each point verified with plain qemu-img", async () => {
    const control = p.lab.engines.prd!.control;
    const full = await p.backup("web01");
    expect(full.subject, JSON.stringify(full.event)).toBe("backup.completed");
    expect(full.event.kind).toBe("full");
    expect(full.disks).toHaveLength(2);
    await verifyPoint(full, { [disks[0]!.id]: 1, [disks[1]!.id]: 1 });

    for (let i = 1; i <= 3; i++) {
      await control.writeGuestData(disks[0]!.id, { offset: i * 4 * MiB + 12345, length: 300_000, pattern: 0x30 + i });
      await control.writeGuestData(disks[1]!.id, { offset: (i - 1) * MiB, length: 65536, pattern: 0x40 + i });
      const inc = await p.backup("web01");
      expect(inc.subject, JSON.stringify(inc.event)).toBe("backup.completed");
      expect(inc.event.kind).toBe("incremental");
      for (const d of inc.disks) {
        expect(d.mode).toBe("incremental");
        // Only changed data moves: far less than the disk.
        expect((d.layer as { size: number }).size).toBeLessThan(4 * MiB);
      }
      await verifyPoint(inc, { [disks[0]!.id]: i + 1, [disks[1]!.id]: i + 1 });
    }
    const rec = await p.wiring.chains.read(vmId);
    expect(rec?.restorePoints.map((r) => r.kind)).toEqual(["full", "incremental", "incremental", "incremental"]);
    // Ferry released the engine checkpoints it no longer needs: only the newest point's is left.
    const cps = await p.wiring.engines.get("prd")!.checkpoints(vmId);
    expect(cps?.map((c) => c.id)).toEqual([rec!.restorePoints.at(-1)!.checkpointId]);
    // Nothing left open on the engine.
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
  });

  it("backup pipeline - a disk added after the last checkpoint gets a full layer, the others stay incremental", async () => {
    const control = p.lab.engines.prd!.control;
    const added = await control.addDisk(vmId, { alias: "web01_d3", size: 4 * MiB });
    const addedId = (added as { id: string }).id;
    await control.writeGuestData(addedId, { offset: 0, length: MiB, pattern: 0x55 });
    await control.writeGuestData(disks[0]!.id, { offset: 0, length: 4096, pattern: 0x66 });
    const out = await p.backup("web01");
    expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");
    expect(out.event.kind).toBe("incremental");
    const byDisk = Object.fromEntries(out.disks.map((d) => [(d.disk as { id: string }).id, d]));
    expect(byDisk[addedId]?.mode).toBe("full");
    expect(String(byDisk[addedId]?.reason)).toMatch(/new disk|not in checkpoint|no previous layer/);
    expect(byDisk[disks[0]!.id]?.mode).toBe("incremental");
    expect(byDisk[disks[1]!.id]?.mode).toBe("incremental");
    await verifyPoint(out, { [disks[0]!.id]: 5, [disks[1]!.id]: 5, [addedId]: 1 });
  });

  it("backup pipeline - after a snapshot restore (checkpoints invalid) the next backup is full with the reason", async () => {
    const control = p.lab.engines.prd!.control;
    await control.invalidateCheckpoints(vmId);
    const out = await p.backup("web01");
    expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");
    expect(out.event.kind).toBe("full");
    for (const d of out.disks) {
      expect(d.mode).toBe("full");
      expect(String(d.reason)).toMatch(/invalid|no longer exists/);
    }
    const rec = await p.wiring.chains.read(vmId);
    expect(rec?.restorePoints.at(-1)?.reason).toMatch(/invalid|no longer exists/);
    const depth = Object.fromEntries(out.disks.map((d) => [(d.disk as { id: string }).id, 1]));
    await verifyPoint(out, depth);
    // The next one is incremental again on the new chain.
    await control.writeGuestData(disks[1]!.id, { offset: 0, length: 4096, pattern: 0x77 });
    const next = await p.backup("web01");
    expect(next.event.kind).toBe("incremental");
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
  });
});
