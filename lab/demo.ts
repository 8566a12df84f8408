import type { LabControl } from "./control.ts";

/**
 * Demo VMs for `ferry lab up --vms N`: vm01..vmNN, each with a system disk of `diskSize` and a
 * data disk of a quarter of it, both qcow2 v3 with incremental backup enabled, and some seeded
 * random data spread over each disk (a quarter of it, at most 64 MiB) so backups move real bytes.
 */
export async function seedDemoVms(
  control: LabControl,
  o: { count: number; diskSize: number; prefix?: string },
): Promise<Array<{ id: string; name: string }>> {
  const MiB = 1024 * 1024;
  const out: Array<{ id: string; name: string }> = [];
  for (let i = 1; i <= o.count; i++) {
    const name = `${o.prefix ?? "vm"}${String(i).padStart(2, "0")}`;
    if (control.status().vms.some((v) => v.name === name)) continue;
    const dataSize = Math.max(MiB, Math.floor(o.diskSize / 4 / MiB) * MiB);
    const vm = await control.createVm({
      name,
      status: "up",
      disks: [
        { alias: `${name}_os`, size: o.diskSize },
        { alias: `${name}_data`, size: dataSize },
      ],
    });
    for (const [j, d] of vm.disks.entries()) {
      const size = j === 0 ? o.diskSize : dataSize;
      const budget = Math.min(Math.floor(size / 4), 64 * MiB);
      const chunk = Math.min(4 * MiB, budget);
      const chunks = Math.max(1, Math.floor(budget / chunk));
      const stride = Math.floor(size / chunks / MiB) * MiB;
      for (let k = 0; k < chunks; k++) {
        await control.writeGuestData(d.id, { offset: k * stride, length: chunk, seed: i * 1000 + j * 100 + k });
      }
    }
    out.push({ id: vm.id, name: vm.name });
  }
  return out;
}
