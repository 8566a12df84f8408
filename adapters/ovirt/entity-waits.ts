/**
 * Disk, snapshot and VM status waits, explicit state machines (style.md §7), and the create /
 * delete composites that clean up after themselves.
 */
import type { EngineClient } from "./client.ts";
import {
  DiskFailedError,
  DiskTimeoutError,
  NotFoundError,
  SnapshotFailedError,
  SnapshotTimeoutError,
  VmStatusError,
  VmStatusTimeoutError,
} from "./errors.ts";
import type { Disk, DiskStatus, Snapshot, SnapshotStatus, Vm, VmStatus } from "./models.ts";
import type { CreateDisk } from "./ops-disks.ts";
import type { CreateSnapshot } from "./ops-snapshots.ts";
import { WAIT_DEFAULTS, bestEffort, clock, isPollHiccup, pollUntilGone, type WaitOptions } from "./wait-clock.ts";

// ---- disks ----------------------------------------------------------------------------------------

/** Polls a disk until `ok`. `illegal` or 404 → DiskFailedError. */
export async function waitForDiskOk(engine: EngineClient, diskId: string, o: WaitOptions = {}): Promise<Disk> {
  const t = clock(engine, o, WAIT_DEFAULTS.diskOkMs);
  let status = "locked";
  let lastError: unknown;
  for (;;) {
    let disk: Disk | undefined;
    try {
      disk = await engine.disks.get(diskId, { signal: o.signal });
    } catch (err) {
      if (err instanceof NotFoundError) throw new DiskFailedError(diskId, "removed");
      if (!isPollHiccup(err)) throw err;
      lastError = err;
    }
    if (disk) {
      status = disk.status ?? "unknown";
      switch (status as DiskStatus) {
        case "ok":
          return disk;
        case "illegal":
          throw new DiskFailedError(diskId, status);
        case "locked":
        default:
          break;
      }
    }
    if (t.expired()) throw new DiskTimeoutError(diskId, status, { cause: lastError });
    await t.pause();
  }
}

/** POST /disks and wait for `ok`; a disk that fails or never becomes ok is removed again (best effort). */
export async function createDisk(engine: EngineClient, spec: CreateDisk, o: WaitOptions = {}): Promise<Disk> {
  const created = await engine.disks.create(spec, { signal: o.signal });
  try {
    return await waitForDiskOk(engine, created.id, o);
  } catch (err) {
    await bestEffort((signal) => engine.disks.remove(created.id, { signal }));
    throw err;
  }
}

// ---- snapshots --------------------------------------------------------------------------------------

/** Polls a snapshot until `ok`. 404 (the engine dropped a failed snapshot) or in_preview → SnapshotFailedError. */
export async function waitForSnapshotOk(
  engine: EngineClient,
  vmId: string,
  snapshotId: string,
  o: WaitOptions = {},
): Promise<Snapshot> {
  const t = clock(engine, o, WAIT_DEFAULTS.snapshotMs);
  let status = "locked";
  let lastError: unknown;
  for (;;) {
    let snap: Snapshot | undefined;
    try {
      snap = await engine.snapshots.get(vmId, snapshotId, { signal: o.signal });
    } catch (err) {
      if (err instanceof NotFoundError) throw new SnapshotFailedError(vmId, snapshotId, status, "the snapshot was removed");
      if (!isPollHiccup(err)) throw err;
      lastError = err;
    }
    if (snap) {
      status = snap.snapshot_status ?? "unknown";
      switch (status as SnapshotStatus) {
        case "ok":
          return snap;
        case "in_preview":
          throw new SnapshotFailedError(vmId, snapshotId, status, "the snapshot is in preview");
        case "locked":
        default:
          break;
      }
    }
    if (t.expired()) throw new SnapshotTimeoutError(vmId, snapshotId, status, "ok", { cause: lastError });
    await t.pause();
  }
}

/** Polls until the snapshot is gone (404). Status `ok` for too long means the removal (merge) failed. */
export async function waitForSnapshotGone(
  engine: EngineClient,
  vmId: string,
  snapshotId: string,
  o: WaitOptions = {},
): Promise<void> {
  await pollUntilGone(
    clock(engine, o, WAIT_DEFAULTS.snapshotMs),
    "locked",
    // `locked` while merging; `ok` for too long means the removal failed (the timeout says so).
    async () => (await engine.snapshots.get(vmId, snapshotId, { signal: o.signal })).snapshot_status ?? "unknown",
    (status, cause) => new SnapshotTimeoutError(vmId, snapshotId, status, "removed", { cause }),
    (err) => err instanceof NotFoundError,
  );
}

/** Snapshot (without memory) and wait for `ok`. On failure the snapshot is removed again (best effort). */
export async function takeSnapshot(
  engine: EngineClient,
  vmId: string,
  spec: CreateSnapshot,
  o: WaitOptions = {},
): Promise<Snapshot> {
  const created = await engine.snapshots.create(vmId, spec, { signal: o.signal });
  try {
    return await waitForSnapshotOk(engine, vmId, created.id, o);
  } catch (err) {
    await bestEffort((signal) => engine.snapshots.remove(vmId, created.id, { signal }));
    throw err;
  }
}

/** DELETE a snapshot and wait until it is gone; one that is already gone counts as deleted. */
export async function deleteSnapshot(
  engine: EngineClient,
  vmId: string,
  snapshotId: string,
  o: WaitOptions = {},
): Promise<void> {
  try {
    await engine.snapshots.remove(vmId, snapshotId, { signal: o.signal });
  } catch (err) {
    if (err instanceof NotFoundError) return;
    throw err;
  }
  await waitForSnapshotGone(engine, vmId, snapshotId, o);
}

// ---- VMs ------------------------------------------------------------------------------------------

/** Polls a VM until it is `up` or `down`. A VM that disappears → VmStatusError. */
export async function waitForVmStatus(
  engine: EngineClient,
  vmId: string,
  target: "up" | "down",
  o: WaitOptions = {},
): Promise<Vm> {
  const t = clock(engine, o, WAIT_DEFAULTS.vmStatusMs);
  let status = "unknown";
  let launched = false;
  let lastError: unknown;
  for (;;) {
    let vm: Vm | undefined;
    try {
      vm = await engine.vms.get(vmId, { signal: o.signal });
    } catch (err) {
      if (err instanceof NotFoundError) throw new VmStatusError(vmId, "removed", target);
      if (!isPollHiccup(err)) throw err;
      lastError = err;
    }
    if (vm) {
      status = vm.status;
      switch (status as VmStatus) {
        case "up":
        case "down":
          if (status === target) return vm;
          // Back to down after it began launching: the start failed (the engine logs why).
          if (target === "up" && status === "down" && launched) throw new VmStatusError(vmId, "down", target);
          break;
        case "wait_for_launch":
        case "powering_up":
          launched = true;
          break;
        case "powering_down":
        case "reboot_in_progress":
        case "image_locked":
        case "not_responding":
        case "unknown":
        case "unassigned":
        case "migrating":
        case "paused":
        case "saving_state":
        case "restoring_state":
        case "suspended":
        default:
          break;
      }
    }
    if (t.expired()) throw new VmStatusTimeoutError(vmId, status, target, { cause: lastError });
    await t.pause();
  }
}
