import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Engine } from "../engine.ts";
import { actionDone, cannot, created, fault, HttpFault, incomplete, isUuid, items, NotFound, obj, ok, pathId, str } from "../http.ts";
import { collection, encodeBackup, encodeDisk, href } from "../json.ts";
import type { LabBackup, LabDisk, LabVm } from "../model.ts";
import type { Router } from "../router.ts";
import { mergeSnapshot, takeSnapshot } from "./snapshots.ts";

/**
 * The incremental backup API with hybrid semantics (ovirt-api.md §5, cluster level 4.7): the
 * backup takes an auto snapshot of its disks (the frozen volumes are the point-in-time view; new
 * guest writes go to the new top volume, which also gets the new checkpoint's bitmap), exports
 * the frozen volumes with the from_checkpoint bitmap, and merges the snapshot away at finalize.
 */

/** How the engine supports backups (switchable from the control API to test Ferry's fallbacks). */
export type BackupSupport = "hybrid" | "no-incremental" | "none";

/** The in-flight snapshot step of each backup, so a premature finalize can wait for it. */
const startingSteps = new WeakMap<LabBackup, Promise<void>>();

export function isFinished(b: LabBackup): boolean {
  return b.phase === "succeeded" || b.phase === "failed";
}

function touch(b: LabBackup): void {
  b.modifiedAt = Date.now();
}

/** A disk can be incremental in this backup and carry the new checkpoint's bitmap. */
function bitmapCapable(e: Engine, d: LabDisk): boolean {
  return e.storage.canHoldBitmaps(d) && d.backup === "incremental";
}

export function startBackup(e: Engine, vm: LabVm, body: unknown, correlationId?: string, support: BackupSupport = "hybrid"): LabBackup {
  const b = obj(body);
  if (b.disks === undefined) throw incomplete("Backup", ["disks"], "add");
  const wanted = items(b.disks, "disk").map((d) => str(d.id)?.toLowerCase() ?? "");
  if (!wanted.length) throw incomplete("Backup", ["disks"], "add");
  const description = str(b.description);
  if (description && description.length > 1024) {
    throw cannot(400, "backup", "VM", "The backup description is too long (maximum 1024 characters).");
  }
  const id = str(b.id)?.toLowerCase() ?? randomUUID();
  if (!isUuid(id)) throw new HttpFault(400, "Invalid value", `${id} is not a valid UUID`);
  if (e.st.backups.some((x) => x.id === id)) throw cannot(400, "backup", "VM", `The specified VM backup ID ${id} already exists.`);
  if (vm.status !== "up" && vm.status !== "down") {
    throw cannot(409, "backup", "VM", "The Virtual Machine should be in Up or Down status.");
  }
  if (e.openBackups(vm.id).length) throw cannot(409, "backup", "VM", "The VM is during a backup operation.");
  const disks: LabDisk[] = [];
  for (const diskId of wanted) {
    const disk = e.findDisk(diskId);
    if (!disk || !vm.attachments.some((a) => a.diskId === diskId)) throw cannot(400, "backup", "VM", "The specified disk does not exist.");
    disks.push(disk);
  }
  const inactive = disks.filter((d) => !vm.attachments.find((a) => a.diskId === d.id)?.active);
  if (inactive.length) {
    throw cannot(409, "backup", "VM", `The following disks are not active on VM ${vm.name}: ${inactive.map((d) => d.id).join(", ")}`);
  }
  const locked = disks.filter((d) => d.status === "locked");
  if (locked.length) {
    throw cannot(409, "backup", "VM", `The following disks are locked: ${locked.map((d) => d.alias).join(", ")}. Please try again in a few minutes.`);
  }
  const from = str(b.from_checkpoint_id)?.toLowerCase();
  let fromDisks: string[] = [];
  if (from) {
    if (support === "no-incremental") throw cannot(400, "backup", "VM", "Incremental backup is not supported.");
    const cp = e.st.checkpoints.find((c) => c.vmId === vm.id && c.id === from);
    if (!cp) throw cannot(400, "backup", "VM", `Checkpoint ID ${from} doesn't exist.`);
    if (cp.state === "invalid") throw cannot(400, "backup", "VM", `Checkpoint ID ${from} is invalid and should be removed.`);
    fromDisks = cp.diskIds;
  }
  const diskModes: Record<string, "full" | "incremental"> = {};
  for (const d of disks) diskModes[d.id] = from && fromDisks.includes(d.id) && bitmapCapable(e, d) ? "incremental" : "full";
  const now = Date.now();
  const backup: LabBackup = {
    id,
    vmId: vm.id,
    phase: "initializing",
    newCheckpointId: randomUUID(),
    createdAt: now,
    modifiedAt: now,
    diskIds: disks.map((d) => d.id),
    diskModes,
    checkpointDiskIds: support === "no-incremental" ? [] : disks.filter((d) => bitmapCapable(e, d)).map((d) => d.id),
    frozen: {},
    pointInTime: {},
    ...(from ? { fromCheckpointId: from } : {}),
    ...(description ? { description } : {}),
  };
  e.st.backups.push(backup);
  e.audit("VM_BACKUP_STARTED", `Backup ${backup.id} for VM ${vm.name} started`, {
    vmId: vm.id,
    ...(correlationId ? { correlationId } : {}),
  });
  e.later(e.timings.backupPhaseMs, () => {
    const step = advanceToStarting(e, vm, backup, disks, correlationId);
    startingSteps.set(backup, step);
    return step;
  });
  e.save();
  return backup;
}

async function advanceToStarting(e: Engine, vm: LabVm, backup: LabBackup, disks: LabDisk[], correlationId?: string): Promise<void> {
  if (backup.phase !== "initializing") return;
  backup.phase = "starting";
  touch(backup);
  try {
    const extra: Record<string, string[]> = {};
    for (const id of backup.checkpointDiskIds) extra[id] = [backup.newCheckpointId];
    const snap = await takeSnapshot(e, vm, {
      description: "Auto-generated for Backup VM",
      disks,
      backupId: backup.id,
      extraBitmaps: extra,
    });
    snap.status = "ok";
    backup.snapshotId = snap.id;
    for (const sd of snap.disks) backup.frozen[sd.diskId] = sd.volumeId;
  } catch (err) {
    if (backup.phase === "starting") failBackup(e, vm, backup, `snapshot creation failed: ${(err as Error).message}`, correlationId);
    return;
  }
  e.later(e.timings.backupPhaseMs, () => advanceToReady(e, vm, backup));
}

function advanceToReady(e: Engine, vm: LabVm, backup: LabBackup): void {
  if (backup.phase !== "starting") return;
  // The hybrid path always records a checkpoint; it lists only the qcow2 (bitmap-capable) disks.
  const chain = e.st.checkpoints.filter((c) => c.vmId === vm.id);
  const parent = chain[chain.length - 1];
  e.st.checkpoints.push({
    id: backup.newCheckpointId,
    vmId: vm.id,
    createdAt: Date.now(),
    state: "created",
    diskIds: [...backup.checkpointDiskIds],
    ...(parent ? { parentId: parent.id } : {}),
    ...(backup.description ? { description: backup.description } : {}),
  });
  backup.toCheckpointId = backup.newCheckpointId;
  for (const id of backup.diskIds) {
    const d = e.findDisk(id);
    if (d) d.backupMode = backup.diskModes[id];
  }
  backup.phase = "ready";
  touch(backup);
  e.save();
}

function failBackup(e: Engine, vm: LabVm, backup: LabBackup, why: string, correlationId?: string): void {
  backup.phase = "failed";
  backup.finishedAt = Date.now();
  touch(backup);
  for (const id of backup.diskIds) {
    const d = e.findDisk(id);
    if (d) delete d.backupMode;
  }
  e.audit("VM_BACKUP_FAILED", `Backup ${backup.id} for VM ${vm.name} failed (${why}).`, {
    vmId: vm.id,
    severity: "error",
    ...(correlationId ? { correlationId } : {}),
  });
  e.save();
}

/**
 * Bound the kept point-in-time copies (timings.keepPointInTimeCount / Bytes): the copies of
 * backups the engine no longer lists go, then the oldest until both bounds hold; `newest` stays.
 * One prune at a time per engine: two backups finalized at once (backupsPerEngine ≥ 2) pruned the
 * same folder together, one listed a copy the other had just removed, and the ENOENT left that
 * backup 'finalizing' for good (the nightly bench's 300 s VMs).
 */
export function pruneKeptCopies(e: Engine, newest: LabBackup): Promise<void> {
  const next = (pruning.get(e) ?? Promise.resolve()).then(() => pruneNow(e, newest));
  pruning.set(e, next.catch(() => {}));
  return next;
}

const pruning = new WeakMap<Engine, Promise<void>>();

/** A file or folder that went away while being looked at (removed by the engine's own cleanup). */
const gone = (err: unknown) => (err as NodeJS.ErrnoException | undefined)?.code === "ENOENT";

async function pruneNow(e: Engine, newest: LabBackup): Promise<void> {
  const root = dirname(dirname(e.storage.pitPath("-", "-")));
  const known = new Map(e.st.backups.map((b) => [b.id, b]));
  const dirs = existsSync(root) ? await readdir(root) : [];
  const kept: { backup: LabBackup; bytes: number }[] = [];
  for (const id of dirs) {
    const b = known.get(id);
    if (!b) {
      await rm(join(root, id), { recursive: true, force: true });
      continue;
    }
    let bytes = 0;
    try {
      for (const f of await readdir(join(root, id))) bytes += (await stat(join(root, id, f)).catch((err: unknown) => (gone(err) ? { blocks: 0 } : Promise.reject(err)))).blocks * 512;
    } catch (err) {
      if (gone(err)) continue;
      throw err;
    }
    kept.push({ backup: b, bytes });
  }
  kept.sort((a, b) => a.backup.createdAt - b.backup.createdAt);
  let total = kept.reduce((n, k) => n + k.bytes, 0);
  while (kept.length > 1 && (kept.length > e.timings.keepPointInTimeCount || total > e.timings.keepPointInTimeBytes)) {
    const old = kept.findIndex((k) => k.backup !== newest);
    const [k] = kept.splice(old, 1);
    total -= k!.bytes;
    k!.backup.pointInTime = {};
    await rm(join(root, k!.backup.id), { recursive: true, force: true });
  }
}

/** Merge the auto snapshot away (and keep the point-in-time images first, for exportImage). */
async function closeSnapshot(e: Engine, vm: LabVm, backup: LabBackup, keepPit: boolean): Promise<void> {
  const snap = e.st.snapshots.find((s) => s.id === backup.snapshotId);
  if (!snap) return;
  if (keepPit) {
    for (const [diskId, volumeId] of Object.entries(backup.frozen)) {
      const disk = e.findDisk(diskId);
      if (!disk) continue;
      const out = e.storage.pitPath(backup.id, diskId);
      await mkdir(dirname(out), { recursive: true });
      await e.storage.withDisk(diskId, async () => {
        const chain = e.storage.chainTo(disk, volumeId);
        const top = chain[chain.length - 1]!;
        await e.storage.exportTo({ path: top.path, format: top.format }, out, "qcow2");
      });
      backup.pointInTime[diskId] = out;
    }
    await pruneKeptCopies(e, backup);
  }
  try {
    await mergeSnapshot(e, snap);
  } catch (err) {
    e.audit(
      "VM_BACKUP_SNAPSHOT_POSSIBLE_LEFTOVER",
      `Backup ${backup.id} for VM ${vm.name}: failed to remove the backup snapshot (${(err as Error).message}); a snapshot may be left over.`,
      { vmId: vm.id, severity: "warning" },
    );
  }
}

export function finalizeBackup(e: Engine, vm: LabVm, backup: LabBackup, correlationId?: string): void {
  const openTransfer = e.openTransfers().some((t) => t.backupId === backup.id);
  if (openTransfer) throw fault(409, "Cannot stop VM backup. There is an active image transfer for VM backup");
  if (backup.phase === "finalizing" || isFinished(backup)) {
    throw fault(400, `VM '${vm.name}' backup '${backup.id}' is already in '${backup.phase}' phase, no need to stop the backup again`);
  }
  const premature = backup.phase !== "ready";
  backup.phase = "finalizing";
  touch(backup);
  e.audit("VM_BACKUP_STOPPED", `Backup ${backup.id} for VM ${vm.name} stopped`, {
    vmId: vm.id,
    ...(correlationId ? { correlationId } : {}),
  });
  const stall = e.faults.stallFinalize.findIndex((s) => s.target === "backup");
  const extra = stall >= 0 ? e.faults.stallFinalize.splice(stall, 1)[0]!.ms : 0;
  e.later(e.timings.backupFinalizeMs + extra, async () => {
    // A premature stop may race the phase timers: wait for the snapshot step to settle.
    await startingSteps.get(backup)?.catch(() => undefined);
    await closeSnapshot(e, vm, backup, !premature && e.timings.keepPointInTime);
    for (const id of backup.diskIds) {
      const d = e.findDisk(id);
      if (d) delete d.backupMode;
    }
    if (premature) {
      // No checkpoint was recorded; drop the bitmap the snapshot step may have added.
      for (const id of backup.checkpointDiskIds) {
        const d = e.findDisk(id);
        if (d) await e.storage.withDisk(id, () => e.storage.removeBitmap(d, backup.newCheckpointId));
      }
      failBackup(e, vm, backup, "stopped before it was ready", correlationId);
      return;
    }
    backup.phase = "succeeded";
    backup.finishedAt = Date.now();
    touch(backup);
    e.audit("VM_BACKUP_SUCCEEDED", `Backup ${backup.id} for VM ${vm.name} completed successfully`, { vmId: vm.id });
  });
  e.save();
}

export function registerBackups(r: Router, e: Engine, support: () => BackupSupport): void {
  const findBackup = (vm: LabVm, id: string) => {
    const b = e.st.backups.find((x) => x.vmId === vm.id && x.id === id);
    if (!b) throw new NotFound();
    return b;
  };
  const guard = () => {
    if (support() === "none") throw new NotFound();
  };

  r.get("/vms/:vm/backups", (ctx) => {
    guard();
    const vm = e.vm(pathId(ctx, "vm"));
    return ok(collection("backup", e.st.backups.filter((b) => b.vmId === vm.id).map((b) => encodeBackup(b))));
  });

  r.post("/vms/:vm/backups", (ctx) => {
    guard();
    const vm = e.vm(pathId(ctx, "vm"));
    const backup = startBackup(e, vm, ctx.body, ctx.correlationId, support());
    return created(encodeBackup(backup), e.baseUrl);
  });

  r.get("/vms/:vm/backups/:id", (ctx) => {
    guard();
    const vm = e.vm(pathId(ctx, "vm"));
    return ok(encodeBackup(findBackup(vm, pathId(ctx, "id"))));
  });

  const backupDisk = (b: LabBackup, d: LabDisk) =>
    encodeDisk(d, {
      href: href(`/vms/${b.vmId}/backups/${b.id}/disks/${d.id}`),
      extra: { backup_mode: b.diskModes[d.id] },
    });

  r.get("/vms/:vm/backups/:id/disks", (ctx) => {
    guard();
    const vm = e.vm(pathId(ctx, "vm"));
    const b = findBackup(vm, pathId(ctx, "id"));
    const disks = b.diskIds.map((id) => e.findDisk(id)).filter((d): d is LabDisk => !!d);
    return ok(collection("disk", disks.map((d) => backupDisk(b, d))));
  });

  r.get("/vms/:vm/backups/:id/disks/:disk", (ctx) => {
    guard();
    const vm = e.vm(pathId(ctx, "vm"));
    const b = findBackup(vm, pathId(ctx, "id"));
    const diskId = pathId(ctx, "disk");
    if (!b.diskIds.includes(diskId)) throw new NotFound();
    return ok(backupDisk(b, e.disk(diskId)));
  });

  r.post("/vms/:vm/backups/:id/finalize", (ctx) => {
    guard();
    const vm = e.vm(pathId(ctx, "vm"));
    finalizeBackup(e, vm, findBackup(vm, pathId(ctx, "id")), ctx.correlationId);
    return actionDone(ctx);
  });
}
