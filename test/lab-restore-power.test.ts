/**
 * The DR side of a restore, through Ferry's engine client: storage domain space goes down when a
 * disk is created and back when it is removed, a disk that does not fit is refused like the
 * engine refuses it (409 "Low disk space"), a VM start walks wait_for_launch → powering_up → up,
 * failNextBoot ends a start in `down` with the engine's VM_DOWN_ERROR event, and removing a VM
 * with its disks gives their space back (a running VM cannot be removed).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DiskFailedError,
  EngineConflictError,
  NotFoundError,
  createDisk,
  createEngineClient,
  waitForVmStatus,
  type EngineClient,
} from "../adapters/ovirt/mod.ts";
import { FAST_TIMINGS, startTestLab, type TestLab } from "../lab/test-support.ts";
import type { LabEngine } from "../lab/mod.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const fast = { intervalMs: 20, timeoutMs: 20_000 };

let t: TestLab;
let dr: LabEngine;
let api: EngineClient;

beforeAll(async () => {
  // A slower power-on (wait_for_launch and powering_up 300 ms each) so the polls see every state.
  t = await startTestLab({ engines: ["dr"], timings: { ...FAST_TIMINGS, vmPowerMs: 600 } });
  dr = t.prd;
  api = createEngineClient({ url: dr.url, user: dr.user, password: dr.password, caPem: dr.caPem, pollIntervalMs: 20, correlationId: "lab-restore-power" });
}, 60_000);

afterAll(async () => {
  await api?.close();
  await t?.stop();
});

const available = async (name: string) => (await api.storageDomains.findByName(name))!.available!;

describe("lab storage accounting (engine client)", () => {
  it("space - a sparse qcow2 disk takes its initial_size from the domain; removing it gives it back", async () => {
    const sd = (await api.storageDomains.findByName("data"))!;
    expect(sd.available).toBe(1024 * GiB);
    const before = { available: sd.available!, used: sd.used! };
    const disk = await createDisk(
      api,
      { name: "restore-d1", provisionedSize: 20 * GiB, initialSize: 3 * GiB, format: "cow", sparse: true, backup: "incremental", storageDomain: { id: sd.id } },
      fast,
    );
    const after = await api.storageDomains.get(sd.id);
    expect(after.available).toBe(before.available - 3 * GiB);
    expect(after.used).toBe(before.used + 3 * GiB);
    expect(after.committed).toBe(20 * GiB);
    await api.disks.remove(disk.id);
    const back = await api.storageDomains.get(sd.id);
    expect([back.available, back.used]).toEqual([before.available, before.used]);
  });

  it("space - a preallocated disk bigger than the free space is refused with 409 Low disk space; nothing is left behind", async () => {
    const before = await available("data");
    const err = await api.disks
      .create({ name: "too-big", provisionedSize: 2048 * GiB, format: "raw", sparse: false, storageDomain: { name: "data" } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineConflictError);
    expect((err as EngineConflictError).status).toBe(409);
    expect((err as EngineConflictError).detail).toBe("[Cannot add Virtual Disk. Low disk space on Storage Domain data.]");
    expect(await api.disks.list({ search: "name=too-big" })).toEqual([]);
    expect(await available("data")).toBe(before);
  });

  it("space - below the critical 5 GiB every new disk is refused; a sparse disk whose initial size does not fit ends illegal", async () => {
    dr.control.setStorageAvailable("data-block", 7 * GiB);
    const block = (await api.storageDomains.findByName("data-block"))!;
    const first = await createDisk(
      api,
      { name: "blk-1", provisionedSize: 10 * GiB, initialSize: 2 * GiB, format: "cow", backup: "incremental", storageDomain: { id: block.id } },
      fast,
    );
    expect(await available("data-block")).toBe(5 * GiB);
    // The engine asks only 1 GiB for a cow disk on block storage, so this passes validation, but
    // its 6 GiB initial allocation cannot be made: the creation fails later, like vdsm's would.
    const failed = await createDisk(
      api,
      { name: "blk-2", provisionedSize: 10 * GiB, initialSize: 6 * GiB, format: "cow", backup: "incremental", storageDomain: { id: block.id } },
      fast,
    ).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(DiskFailedError);
    expect(await available("data-block")).toBe(5 * GiB);
    expect((await api.events.list({ max: 10 })).some((e) => e.code === 2022)).toBe(true);

    await api.disks.remove(first.id);
    dr.control.setStorageAvailable("data-block", 4 * GiB + 512 * MiB);
    const low = await api.disks
      .create({ name: "blk-3", provisionedSize: GiB, initialSize: 10 * MiB, format: "cow", backup: "incremental", storageDomain: { id: block.id } })
      .catch((e: unknown) => e);
    expect(low).toBeInstanceOf(EngineConflictError);
    expect((low as EngineConflictError).detail).toContain("Low disk space on Storage Domain data-block");
    expect(await available("data-block")).toBe(4 * GiB);
    dr.control.setStorageAvailable("data-block", 1024 * GiB);
  });
});

describe("lab VM power and removal (engine client)", () => {
  it("start - down → wait_for_launch → powering_up → up; stop → down", async () => {
    const vm = await dr.control.createVm({ name: "pwr01", disks: [{ size: 4 * MiB }] });
    await api.vms.start(vm.id);
    const seen: string[] = [];
    await waitFor(
      async () => {
        const s = (await api.vms.get(vm.id)).status;
        if (seen[seen.length - 1] !== s) seen.push(s);
        return s === "up";
      },
      { what: "pwr01 up", timeoutMs: 10_000, intervalMs: 15 },
    );
    expect(seen).toEqual(["wait_for_launch", "powering_up", "up"]);
    const again = await api.vms.start(vm.id).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(EngineConflictError);
    const codes = (await api.events.list({ max: 10 })).filter((e) => e.vm?.id === vm.id).map((e) => e.code);
    expect(codes).toEqual(expect.arrayContaining([153, 32]));
    await api.vms.stop(vm.id);
    expect((await waitForVmStatus(api, vm.id, "down", fast)).status).toBe("down");
  });

  it("failNextBoot - the next start ends down with VM_DOWN_ERROR; the one after boots", async () => {
    const vm = await dr.control.createVm({ name: "pwr02", disks: [{ size: 4 * MiB }] });
    dr.control.faults.failNextBoot("pwr02");
    await api.vms.start(vm.id);
    expect((await api.vms.get(vm.id)).status).toBe("wait_for_launch");
    const down = await waitFor(async () => (await api.events.list({ max: 10 })).find((e) => e.code === 119 && e.vm?.id === vm.id), {
      what: "VM_DOWN_ERROR for pwr02",
    });
    expect(down.description).toBe("VM pwr02 is down with error. Exit message: Lost connection with qemu process.");
    expect(down.severity).toBe("error");
    expect((await api.vms.get(vm.id)).status).toBe("down");
    await api.vms.start(vm.id);
    await waitForVmStatus(api, vm.id, "up", fast);
    await api.vms.stop(vm.id);
  });

  it("remove - a running VM is refused (409); removed with its disks, their space comes back", async () => {
    const before = { data: await available("data"), block: await available("data-block") };
    const vm = await dr.control.createVm({
      name: "rm01",
      status: "up",
      disks: [
        { size: 2 * GiB, format: "cow", sparse: false }, // preallocated qcow2 (incremental): takes its full size
        { size: 3 * GiB, format: "cow", sparse: false, storageDomain: "data-block" },
      ],
    });
    expect(await available("data")).toBe(before.data - 2 * GiB);
    expect(await available("data-block")).toBe(before.block - 3 * GiB);
    const busy = await api.vms.remove(vm.id).catch((e: unknown) => e);
    expect(busy).toBeInstanceOf(EngineConflictError);
    expect((busy as EngineConflictError).detail).toBe("[Cannot remove VM. VM is running.]");
    await api.vms.stop(vm.id);
    await waitForVmStatus(api, vm.id, "down", fast);
    await api.vms.remove(vm.id);
    await expect(api.vms.get(vm.id)).rejects.toBeInstanceOf(NotFoundError);
    for (const d of vm.disks) await expect(api.disks.get(d.id)).rejects.toBeInstanceOf(NotFoundError);
    expect(await available("data-block")).toBe(before.block);
    expect(await available("data")).toBe(before.data);
  });
});
