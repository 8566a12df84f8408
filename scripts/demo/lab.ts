/**
 * The lab for the demo: PRD and DR engines in this process, the demo VMs on PRD with guest data,
 * and `lab.json` so `ferry lab status|write ... --data <dir>` work while the demo runs.
 */
import { rm } from "node:fs/promises";
import { startLab, type Lab, type LabEngine } from "../../lab/mod.ts";
import { labFileFor, writeLabFile } from "../../lab/control-client.ts";
import type { DiskPlan, VmPlan } from "./options.ts";

const MiB = 1024 * 1024;

export interface DemoVm {
  readonly id: string;
  readonly name: string;
  readonly disks: ReadonlyArray<{ id: string; alias: string; size: number }>;
}

export interface DemoLab {
  readonly lab: Lab;
  readonly prd: LabEngine;
  readonly dr: LabEngine;
  readonly labFile: string;
  stop(): Promise<void>;
}

export async function startDemoLab(dir: string): Promise<DemoLab> {
  const lab = await startLab({ dataDir: dir, engines: ["prd", "dr"], host: "127.0.0.1" });
  try {
    const file = labFileFor(lab, dir);
    const labFile = await writeLabFile(dir, file);
    return {
      lab,
      prd: lab.engines.prd!,
      dr: lab.engines.dr!,
      labFile,
      async stop() {
        await rm(labFile, { force: true });
        await lab.stop();
      },
    };
  } catch (err) {
    await lab.stop();
    throw err;
  }
}

/** Seeded random data spread over the disk in chunks of at most 4 MiB; returns bytes written. */
export async function writeSpread(engine: LabEngine, diskId: string, size: number, amount: number, seed: number): Promise<number> {
  const chunk = Math.min(4 * MiB, amount);
  const chunks = Math.max(1, Math.ceil(amount / chunk));
  const stride = Math.max(chunk, Math.floor(size / chunks / MiB) * MiB);
  let written = 0;
  for (let k = 0; k < chunks && (k * stride) + chunk <= size; k++) {
    await engine.control.writeGuestData(diskId, { offset: k * stride, length: chunk, seed: seed + k });
    written += chunk;
  }
  return written;
}

export async function createDemoVm(engine: LabEngine, plan: VmPlan, seed: number): Promise<DemoVm & { written: number }> {
  const vm = await engine.control.createVm({
    name: plan.name,
    status: "up",
    disks: plan.disks.map((d: DiskPlan) => ({ alias: d.alias, size: d.size, format: "cow" as const, backup: "incremental" as const })),
  });
  let written = 0;
  const disks = vm.disks.map((d, i) => ({ id: d.id, alias: d.alias, size: plan.disks[i]!.size }));
  for (const [i, d] of disks.entries()) written += await writeSpread(engine, d.id, d.size, plan.disks[i]!.initialData, seed + i * 100);
  return { id: vm.id, name: vm.name, disks, written };
}
