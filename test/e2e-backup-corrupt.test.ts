/**
 * A corrupt stored layer (bytes flipped in a data cluster of the full layer) is found by
 * `ferry verify`, which records the verdict on the restore point; the next backup then does not
 * build on that chain: it is a full, with the verification as its reason.
 */
import { open } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { openStore } from "../adapters/store/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";

const MiB = 1048576;
let p: Pipeline;
let diskId: string;

beforeAll(async () => {
  p = await startPipeline();
  const control = p.lab.engines.prd!.control;
  const vm = await control.createVm({ name: "rot01", disks: [{ alias: "rot01_d1", size: 8 * MiB }], status: "up" });
  diskId = vm.disks[0]!.id;
  await control.writeGuestData(diskId, { offset: 0, length: 2 * MiB, pattern: 0x5a });
}, 120_000);

afterAll(async () => {
  await p?.stop();
});

describe("corrupt stored layer", () => {
  it("corrupt layer - ferry verify finds flipped bytes in the full layer, and the next backup is a full with that reason", async () => {
    const full = await p.backup("rot01");
    expect(full.subject).toBe("backup.completed");
    await p.lab.engines.prd!.control.writeGuestData(diskId, { offset: 4 * MiB, length: MiB, pattern: 0x6b });
    const inc = await p.backup("rot01");
    expect(inc.subject).toBe("backup.completed");
    expect(inc.event.kind).toBe("incremental");

    // 16 bytes flipped inside a data cluster of the full layer (bit rot on the backup volume).
    const fullLayer = join(p.storePath, String((full.disks[0]!.layer as { path: string }).path));
    const data = (await qemuImg.map(fullLayer, { format: "qcow2" })).find((e) => e.data && e.offset !== undefined && e.length >= 4096)!;
    const fh = await open(fullLayer, "r+");
    const buf = Buffer.alloc(16);
    await fh.read(buf, 0, 16, data.offset! + 1024);
    for (let i = 0; i < 16; i++) buf[i] = buf[i]! ^ 0xff;
    await fh.write(buf, 0, 16, data.offset! + 1024);
    await fh.close();

    const store = openStore({ root: p.storePath });
    const report = await store.verify("rot01", "latest", { record: true });
    expect(report.ok).toBe(false);

    const next = await p.backup("rot01");
    expect(next.subject).toBe("backup.completed");
    expect(next.event.kind).toBe("full");
    const manifest = await store.readManifest("rot01");
    const newest = manifest!.restorePoints.at(-1)!;
    expect(newest.kind).toBe("full");
    expect(newest.reason ?? newest.disks[0]!.reason).toMatch(/failed verification/);
    expect((await store.verify("rot01", "latest", { record: true })).ok).toBe(true);
  });
});
