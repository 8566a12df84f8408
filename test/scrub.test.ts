/**
 * Rot in a stored layer (issue 11): 16 flipped bytes in a data cluster of a full layer (found with
 * `qemu-img map`) are found by the scheduled scrub (the reconciler's pass), which records the
 * failed verification on the newest point and posts one alert; the next backup is then a full one
 * with the reason, not another incremental on the corrupt chain.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { createReconciler } from "../pipeline/reconcile.ts";
import { createScrubber } from "../pipeline/scrub.ts";
import { backupFunctionDeps } from "../pipeline/composition.ts";

const MiB = 1048576;
const WEEK = 7 * 86_400_000;
let p: Pipeline;

beforeAll(async () => {
  p = await startPipeline();
});

afterAll(async () => {
  await p?.stop();
});

describe("scheduled scrub (lab)", () => {
  it("scrub - flipped bytes in a full layer's data cluster: the scrub marks the chain broken and alerts; the next backup is full with the reason", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "rot01", disks: [{ alias: "rot01_d1", size: 16 * MiB }], status: "up" });
    const diskId = vm.disks[0]!.id as string;
    await control.writeGuestData(diskId, { offset: 0, length: 6 * MiB, pattern: 0x6b });
    const full = await p.backup("rot01");
    expect(full.subject, JSON.stringify(full.event)).toBe("backup.completed");
    await control.writeGuestData(diskId, { offset: 10 * MiB, length: 65536, pattern: 0x6c });
    const inc = await p.backup("rot01");
    expect(inc.subject, JSON.stringify(inc.event)).toBe("backup.completed");
    expect(inc.event.kind).toBe("incremental");

    const log = { info() {}, warn() {}, error() {} };
    const deps = backupFunctionDeps(p.wiring, log).reconciler;
    // A week on: every VM's slot has come round (the store and the leases keep the real clock).
    const later = () => new Date(Date.now() + WEEK + 86_400_000);
    const scrubber = () => createScrubber({ store: p.wiring.store.volume, leases: p.wiring.leases, engineFor: (runId) => p.wiring.engineForRun(runId), everyMs: WEEK, owner: "test", clock: later, log });
    const reconciler = createReconciler({ ...deps, orphans: undefined, scrub: scrubber() });

    // A healthy chain passes.
    const healthy = await reconciler.reconcileOnce();
    expect(healthy.scrubbed).toMatchObject({ vm: "rot01", seq: 2, ok: true });

    // 16 bytes flipped in a data cluster of the full layer, under guest data the incremental did not rewrite.
    const fullLayer = join(p.storePath, (full.disks[0]!.layer as { path: string }).path);
    const map = await qemuImg.map(fullLayer, { format: "qcow2" });
    const ext = map.find((e) => e.data && e.offset !== undefined && e.start < 6 * MiB && e.depth === 0);
    expect(ext, JSON.stringify(map)).toBeDefined();
    const fh = await open(fullLayer, "r+");
    try {
      const at = ext!.offset! + 8192;
      const buf = Buffer.alloc(16);
      await fh.read(buf, 0, 16, at);
      for (let i = 0; i < 16; i++) buf[i] = buf[i]! ^ 0xff;
      await fh.write(buf, 0, 16, at);
    } finally {
      await fh.close();
    }

    const eventsBefore = control.events().length;
    const rotten = await reconciler.reconcileOnce();
    expect(rotten.scrubbed).toMatchObject({ vm: "rot01", seq: 2, ok: false });
    const manifest = await p.wiring.store.volume.readManifest("rot01");
    expect(manifest?.restorePoints.at(-1)?.verified?.ok).toBe(false);
    // One alert in the engine audit log for the failed scrub.
    const alerts = control.events().slice(0, control.events().length - eventsBefore).filter((e) => String(e.description).includes("scheduled verification of VM rot01"));
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.severity).toBe("alert");

    const next = await p.backup("rot01");
    expect(next.subject, JSON.stringify(next.event)).toBe("backup.completed");
    expect(next.event.kind).toBe("full");
    const point = (await p.wiring.store.volume.readManifest("rot01"))?.restorePoints.at(-1);
    expect(point?.kind).toBe("full");
    expect(point?.reason).toContain("restore point 2 failed verification");
    expect(String(next.chain?.reason)).toContain("failed verification");
    // The new full is sound: the next scrub passes on it.
    const after = await createReconciler({ ...deps, orphans: undefined, scrub: scrubber() }).reconcileOnce();
    expect(after.scrubbed).toMatchObject({ vm: "rot01", seq: 3, ok: true });
  });
});
