/**
 * A transient failure after some disks are stored: the retry resumes the same engine backup and
 * moves only the disks that are missing (bytes moved on the retry ≈ the missing disk), and the
 * restore point is one consistent point (one engine backup, one checkpoint) equal to the lab's
 * image at that backup.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";

const MiB = 1048576;
let p: Pipeline;

beforeAll(async () => {
  p = await startPipeline({ maxDeliver: 3, backoffMs: [500, 1000, 2000] });
});

afterAll(async () => {
  await p?.stop();
});

/** The "disk transferred" log lines of one request: which disk moved how many bytes in which delivery. */
function moves(correlationId: string): { disk: string; bytes: number; delivery: number }[] {
  return p.logLines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === "disk transferred" && l.correlationId === correlationId)
    .map((l) => ({ disk: String(l.disk), bytes: Number(l.bytes), delivery: Number(l.deliveryCount) }));
}

describe("retry resumes (lab)", () => {
  it("retry resume - the second disk's transfer fails on every try of the first delivery: the retry moves only that disk, in the same engine backup", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "rs01", disks: [{ alias: "rs01_big", size: 64 * MiB }, { alias: "rs01_small", size: 16 * MiB }], status: "up" });
    const [big, small] = vm.disks.map((d: { id: string }) => d.id) as [string, string];
    await control.writeGuestData(big, { offset: 0, length: 40 * MiB, seed: 7 });
    await control.writeGuestData(small, { offset: 0, length: 4 * MiB, seed: 8 });
    // backup-requested tries a disk 3 times (a new transfer each): all three fail, so the first
    // delivery ends with a transient error after the big disk is stored.
    for (let i = 0; i < 3; i++) control.faults.failNextTransfer("transferring", "download", small);

    const out = await p.backup("rs01", { timeoutMs: 360_000 });
    expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");

    const m = moves(String(out.event.correlationId));
    const bigMoves = m.filter((x) => x.disk === big);
    const smallMoves = m.filter((x) => x.disk === small);
    // The big disk moved once, in the first delivery; the retry moved the small disk only.
    expect(bigMoves.map((x) => x.delivery), JSON.stringify(m)).toEqual([1]);
    expect(smallMoves.map((x) => x.delivery), JSON.stringify(m)).toEqual([2]);
    const retryBytes = m.filter((x) => x.delivery === 2).reduce((n, x) => n + x.bytes, 0);
    const wholeVm = bigMoves[0]!.bytes + smallMoves[0]!.bytes;
    expect(retryBytes).toBe(smallMoves[0]!.bytes);
    expect(retryBytes).toBeLessThan(wholeVm / 5);
    console.log(`retry resume: first delivery moved ${bigMoves[0]!.bytes} bytes, the retry ${retryBytes} bytes (whole VM ${wholeVm} bytes)`);

    // One engine backup for the run, both layers from it, the point equal to the image at that backup.
    const backupIds = new Set(out.disks.map((d) => d.backupId));
    expect(backupIds.size).toBe(1);
    const runBackups = (await p.wiring.engines.get("prd")!.client.backups.list(vm.id)).filter((b) => (b.description ?? "").includes(String(out.event.runId)));
    expect(runBackups.map((b) => b.phase)).toEqual(["succeeded"]);
    for (const d of out.disks) {
      const top = join(p.storePath, (d.layer as { path: string }).path);
      const exported = join(p.dir, `rs-${(d.disk as { id: string }).id}.raw`);
      await control.exportImage((d.disk as { id: string }).id, exported, { format: "raw", atBackup: String(d.backupId) });
      expect((await qemuImg.compare(top, exported, { formatA: "qcow2", formatB: "raw" })).identical).toBe(true);
    }
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
  }, 400_000);
});
