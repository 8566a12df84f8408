/**
 * Self-healing state (issue 8 item 8): the NATS store is lost (a new nats-server with an empty
 * store under the same lab and backup store), the functions start again, and the next backup of a
 * VM with restore points is incremental and succeeds — its chain record is rebuilt from the store
 * first (as `ferry state rebuild` does), once, with no full download and no
 * STORE_POINT_NOT_RECORDED.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rm } from "node:fs/promises";
import { startPipeline, type Pipeline } from "./backup-support.ts";

const MiB = 1048576;
let first: Pipeline | undefined;
let second: Pipeline | undefined;

beforeAll(async () => {
  first = await startPipeline();
});

afterAll(async () => {
  await second?.stop();
  await first?.stop({ keep: true });
  await first?.lab.stop().catch(() => undefined);
  if (first) await rm(first.dir, { recursive: true, force: true });
});

describe("self-healing chain records", () => {
  it("self-heal - after the NATS store is lost, the next backup rebuilds the chain record from the store and is incremental", async () => {
    const p1 = first!;
    const control = p1.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "heal01", disks: [{ alias: "heal01_d1", size: 16 * MiB }], status: "up" });
    const diskId = vm.disks[0]!.id as string;
    await control.writeGuestData(diskId, { offset: 0, length: 6 * MiB, pattern: 0x5a });
    const full = await p1.backup("heal01");
    expect(full.subject, JSON.stringify(full.event)).toBe("backup.completed");
    expect(full.event.kind).toBe("full");
    await control.writeGuestData(diskId, { offset: 8 * MiB, length: 65536, pattern: 0x21 });
    const inc = await p1.backup("heal01");
    expect(inc.subject, JSON.stringify(inc.event)).toBe("backup.completed");
    expect(inc.event.kind).toBe("incremental");

    // The bus loses its data: the functions stop, and a nats-server with an empty store takes over.
    await p1.stop({ keep: true });
    const p2 = (second = await startPipeline({ reuse: { lab: p1.lab, dir: p1.dir } }));
    expect(p2.nats.storeDir).not.toBe(p1.nats.storeDir);
    expect(await p2.wiring.chains.vmIds()).toEqual([]); // nothing in KV before the backup

    await control.writeGuestData(diskId, { offset: 10 * MiB, length: 65536, pattern: 0x22 });
    const next = await p2.backup("heal01");
    expect(next.subject, JSON.stringify(next.event)).toBe("backup.completed");
    expect(next.event.kind).toBe("incremental");
    expect(next.disks).toHaveLength(1);
    const d = next.disks[0]!;
    expect(d.mode).toBe("incremental");
    // Only what changed moved: not a full copy of the 6 MiB written.
    expect((d.layer as { size: number }).size).toBeLessThan(2 * MiB);
    expect((d.layer as { parent?: string }).parent).toBe((inc.disks[0]!.layer as { path: string }).path);

    const record = await p2.wiring.chains.read(vm.id as string);
    expect(record?.restorePoints.map((p) => [p.seq, p.kind])).toEqual([[1, "full"], [2, "incremental"], [3, "incremental"]]);
    const manifest = await p2.wiring.store.volume.readManifest("heal01");
    expect(manifest?.restorePoints.map((p) => p.seq)).toEqual([1, 2, 3]);

    // Rebuilt once, logged once, for this VM.
    const rebuilt = p2.logLines.filter((l) => l.includes("chain record rebuilt from the store") && l.includes(vm.id as string));
    expect(rebuilt).toHaveLength(1);
    expect(p2.seen.some((s) => s.subject === "backup.failed")).toBe(false);
  });
});
