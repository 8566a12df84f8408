/**
 * SIGKILL of the restore worker in the middle of a restore (an upload transfer being finalized,
 * its disk locked): the message comes back to a second worker process, which removes what the
 * dead worker created (journal) and completes the restore. Afterwards DR has the restored VM and
 * nothing else: no locked disk, no open transfer, no disk of the first attempt.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import { killWorker, startWorkerProcess } from "./harness/worker-process.ts";
import { fileURLToPath } from "node:url";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1048576;
const worker = fileURLToPath(new URL("./fixtures/restore-worker.ts", import.meta.url));
let p: Pipeline;
const children: ChildProcess[] = [];

function startWorker(): Promise<ChildProcess> {
  return startWorkerProcess(worker, p.workerConfigFile, children);
}

beforeAll(async () => {
  p = await startPipeline({ restoreWorker: false, ackWaitMs: 4000, maxDeliver: 4, backoffMs: [500, 1000], labEngines: ["prd", "dr"] });
  const control = p.lab.engines.prd!.control;
  const vm = await control.createVm({ name: "app01", disks: [{ alias: "app01_d1", size: 16 * MiB }, { alias: "app01_d2", size: 8 * MiB }], status: "up" });
  await control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 4 * MiB, pattern: 0x71 });
  await control.writeGuestData(vm.disks[1]!.id, { offset: MiB, length: 2 * MiB, pattern: 0x72 });
  expect((await p.backup("app01")).subject).toBe("backup.completed");
}, 180_000);

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGKILL");
    await exited;
  }
  await p?.stop();
});

describe("restore worker killed (lab)", () => {
  it("restore worker killed - SIGKILL during the restore: no locked disk or half VM stays on DR, and the redelivery completes it", async () => {
    const dr = p.lab.engines.dr!;
    const client = p.wiring.engines.get("dr")!.client;
    const disksBefore = (await client.disks.list()).length;
    // The first upload's finalize hangs: the worker is inside the restore, its disk locked, when it dies.
    dr.control.faults.stallFinalize(8_000, "transfer");
    const a = await startWorker();
    const pending = p.restore({ vm: "app01" }, 120_000);
    await waitFor(async () => (await labState(p, "dr")).openTransfers > 0, { what: "an upload under way on DR", timeoutMs: 60_000 });
    const exited = new Promise((r) => a.once("exit", r));
    a.kill("SIGKILL");
    await exited;
    dr.control.faults.clear();
    await startWorker();

    const out = await pending;
    expect(out.subject, JSON.stringify(out.event)).toBe("restore.completed");
    const vm = await client.vms.findByName("app01_restored");
    expect(vm?.id).toBe(out.event.vmId);
    // Exactly the restored VM's disks were added: nothing of the first attempt is left.
    const restored = (out.event.disks as { id: string }[]).map((d) => d.id).sort();
    expect((await client.disks.list()).length).toBe(disksBefore + restored.length);
    expect((await client.diskAttachments.list(vm!.id)).map((x) => x.disk.id).sort()).toEqual(restored);
    expect(await labState(p, "dr")).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
  });
});
