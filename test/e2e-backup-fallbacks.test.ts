/**
 * Fallbacks with their reasons, end to end against the lab: disks that can never be incremental
 * (raw, qcow2 v2), disks that are skipped (shareable), and an engine without the backup API
 * (snapshot-based full backup).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { ferryAudit, labState } from "./backup-lab.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1048576;
let p: Pipeline;

beforeAll(async () => {
  // VMs stay 'powering_up' for a while after a start: a state the engine refuses backups in.
  p = await startPipeline({ labTimings: { vmPowerMs: 30_000 } });
});

afterAll(async () => {
  await p?.stop();
});

describe("backup fallbacks (lab)", () => {
  it("backup fallbacks - raw and qcow2 v2 disks get a full copy every time with how to enable incremental; shareable disks are skipped and named", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({
      name: "mixed01",
      disks: [
        { alias: "mixed_cow", size: 8 * MiB },
        { alias: "mixed_raw", size: 4 * MiB, format: "raw" },
        { alias: "mixed_v2", size: 4 * MiB, qcowVersion: "qcow2_v2" },
        { alias: "mixed_shared", size: 4 * MiB, shareable: true },
      ],
      status: "up",
    });
    for (const d of vm.disks) await control.writeGuestData(d.id, { offset: 0, length: MiB, seed: 7 });
    const first = await p.backup("mixed01");
    expect(first.subject, JSON.stringify(first.event)).toBe("backup.completed");
    expect(first.disks.map((d) => (d.disk as { alias: string }).alias).sort()).toEqual(["mixed_cow", "mixed_raw", "mixed_v2"]);
    expect(first.disks[0]!.skippedDisks).toEqual([expect.objectContaining({ alias: "mixed_shared", reason: expect.stringMatching(/shareable/) })]);

    for (const d of vm.disks) await control.writeGuestData(d.id, { offset: 2 * MiB, length: 4096, seed: 8 });
    const second = await p.backup("mixed01");
    expect(second.subject, JSON.stringify(second.event)).toBe("backup.completed");
    const by = Object.fromEntries(second.disks.map((d) => [(d.disk as { alias: string }).alias, d]));
    expect(by.mixed_cow?.mode).toBe("incremental");
    expect(by.mixed_raw?.mode).toBe("full");
    expect(String(by.mixed_raw?.reason)).toMatch(/raw.*PUT \/disks/);
    expect(by.mixed_v2?.mode).toBe("full");
    expect(String(by.mixed_v2?.reason)).toMatch(/qcow_version.*qcow2_v3/);
    // One warning per full-only disk in the audit log, not one per run.
    const warnings = (await ferryAudit(p)).filter((e) => e.severity === "warning" && /mixed_(raw|v2)/.test(e.description));
    expect(warnings).toHaveLength(2);
    for (const d of second.disks) {
      const top = join(p.storePath, (d.layer as { path: string }).path);
      const exported = join(p.dir, `m-${(d.disk as { id: string }).id}.raw`);
      await control.exportImage((d.disk as { id: string }).id, exported, { format: "raw", atBackup: String(d.backupId) });
      expect((await qemuImg.compare(top, exported, { formatA: "qcow2", formatB: "raw" })).identical).toBe(true);
    }
  });

  it("backup fallbacks - an engine without the backup API gets a snapshot-based full backup and the snapshot is removed", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "old01", disks: [{ alias: "old01_d1", size: 8 * MiB }], status: "up" });
    await control.writeGuestData(vm.disks[0]!.id, { offset: MiB, length: 2 * MiB, seed: 3 });
    control.setBackupSupport("none");
    try {
      const out = await p.backup("old01");
      expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");
      expect(out.event.kind).toBe("full");
      expect(String(out.disks[0]!.reason)).toMatch(/snapshot-based/);
      // Nothing written since: the snapshot's content is the current image.
      const top = join(p.storePath, (out.disks[0]!.layer as { path: string }).path);
      const exported = join(p.dir, "old01.raw");
      await control.exportImage(vm.disks[0]!.id, exported, { format: "raw" });
      expect((await qemuImg.compare(top, exported, { formatA: "qcow2", formatB: "raw" })).identical).toBe(true);
      const snaps = await p.wiring.engines.get("prd")!.client.snapshots.list(vm.id);
      expect(snaps.filter((s) => (s.description ?? "").startsWith("ferry:"))).toEqual([]);
    } finally {
      control.setBackupSupport("hybrid");
    }
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
    // Successes are reported in the audit log as normal events.
    expect((await ferryAudit(p)).filter((e) => e.severity === "normal" && /old01 completed/.test(e.description))).toHaveLength(1);
  });

  it("backup fallbacks - a VM the engine cannot back up now gives backup.failed with the engine's own reason and one alert", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "boot01", disks: [{ alias: "boot01_d1", size: 4 * MiB }], status: "down" });
    await p.wiring.engines.get("prd")!.client.vms.start(vm.id);
    const out = await p.backup("boot01");
    expect(out.subject).toBe("backup.failed");
    expect(out.event).toMatchObject({ vm: "boot01", code: "VM_NOT_BACKUPABLE" });
    expect(String(out.event.message)).toMatch(/Up or Down/);
    // The alert comes from the alerts function, after backup.failed: wait for it, then there is exactly one.
    const bootAlerts = async () => (await ferryAudit(p)).filter((e) => e.severity === "alert" && /boot01/.test(e.description));
    await waitFor(async () => (await bootAlerts()).length > 0, { what: "the alert for boot01 in the engine audit log", timeoutMs: 15_000 });
    await new Promise((r) => setTimeout(r, 1000)); // a second alert would come within this window: there must be none
    expect(await bootAlerts()).toHaveLength(1);
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
  });
});
