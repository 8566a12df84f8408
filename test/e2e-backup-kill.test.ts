/**
 * SIGKILL of the backup worker in the middle of a download: the message comes back after
 * ack_wait to a second worker process, which finds the run in the journal, closes what the dead
 * worker left open and completes the backup. Afterwards the lab engine has no open backup, no
 * open transfer and no locked disk, and the store has no partial layer.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import { killWorker, startWorkerProcess } from "./harness/worker-process.ts";
import { readdir } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";

const MiB = 1048576;
const worker = fileURLToPath(new URL("./fixtures/backup-worker.ts", import.meta.url));
let p: Pipeline;
const children: ChildProcess[] = [];

function startWorker(): Promise<ChildProcess> {
  return startWorkerProcess(worker, p.workerConfigFile, children);
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)));
  }
  return out;
}

beforeAll(async () => {
  p = await startPipeline({ backupWorker: false, ackWaitMs: 4000, maxDeliver: 4, backoffMs: [500, 1000] });
});

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGKILL");
    await exited;
  }
  await p?.stop();
});

describe("backup worker killed (lab)", () => {
  it("backup worker killed - SIGKILL mid-download: the redelivered run completes and nothing is left behind", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "app01", disks: [{ alias: "app01_d1", size: 96 * MiB }, { alias: "app01_d2", size: 32 * MiB }], status: "up" });
    await control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 80 * MiB, pattern: 0x31 });
    await control.writeGuestData(vm.disks[1]!.id, { offset: 0, length: 16 * MiB, pattern: 0x32 });

    const first = await startWorker();
    const id = await p.request("app01");
    // Kill at the first progress event of this run: the download is under way.
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no progress seen")), 60_000);
      const poll = setInterval(() => {
        if (p.seen.some((s) => s.subject === "transfer.progress" && s.event.correlationId === id)) {
          clearInterval(poll);
          clearTimeout(t);
          resolve();
        }
      }, 20);
    });
    first.kill("SIGKILL");
    await new Promise((r) => first.once("exit", r));
    const killedDuringRun = !p.seen.some((s) => s.subject === "disk.transferred" && s.event.correlationId === id);
    expect(killedDuringRun).toBe(true);

    await startWorker();
    let out = await p.outcome(id, 90_000);
    if (out.subject === "backup.failed") out = await p.backup("app01"); // "fails cleanly and the next one succeeds"
    expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");
    for (const d of out.disks) {
      const top = join(p.storePath, (d.layer as { path: string }).path);
      const exported = join(p.dir, `k-${(d.disk as { id: string }).id}.raw`);
      await control.exportImage((d.disk as { id: string }).id, exported, { format: "raw", atBackup: String(d.backupId) });
      expect((await qemuImg.compare(top, exported, { formatA: "qcow2", formatB: "raw" })).identical).toBe(true);
    }

    // The journal shows the takeover: the dead worker's transfer was closed by the second worker,
    // which moved the disk again in a new transfer.
    const run = await p.wiring.runs.get(id);
    expect(run?.phase).toBe("transferred");
    // The second worker resumed the dead worker's READY engine backup instead of starting another.
    expect(run?.attempt).toBe(1);
    expect(run!.transfers.length).toBeGreaterThan(2);
    expect(run!.transfers.every((t) => t.state === "closed")).toBe(true);

    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
    // No partial layer: no temp files, and every layer file is in the chain.
    const files = await filesUnder(join(p.storePath, "app01"));
    expect(files.filter((f) => /\.part-|\.tmp-/.test(f))).toEqual([]);
    const rec = await p.wiring.chains.read(vm.id);
    const recorded = new Set(rec!.restorePoints.flatMap((r) => r.disks.map((d) => relative("app01", d.layer))));
    expect(files.filter((f) => f.endsWith(".qcow2")).sort()).toEqual([...recorded].sort());
  });
});
