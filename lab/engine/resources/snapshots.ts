import { randomUUID } from "node:crypto";
import type { Engine } from "../engine.ts";
import {
  accepted,
  actionDone,
  cannot,
  created,
  HttpFault,
  incomplete,
  items,
  NotFound,
  obj,
  ok,
  pathId,
  readBool,
  str,
} from "../http.ts";
import { collection, encodeDisk, encodeSnapshot, href } from "../json.ts";
import type { LabDisk, LabSnapshot, LabVm } from "../model.ts";
import type { Router } from "../router.ts";
import { vmOvf } from "./vms.ts";

/**
 * VM snapshots (ovirt-api.md §10): each snapshot freezes the active volume of its disks and puts
 * a new empty volume on top; removal merges the volume above down (a cold/live merge); restore
 * drops everything above the snapshot's volume and invalidates the VM's checkpoints.
 */
export async function takeSnapshot(
  e: Engine,
  vm: LabVm,
  o: { description: string; disks: LabDisk[]; persistMemory?: boolean; backupId?: string; extraBitmaps?: Record<string, string[]>; imageIds?: Record<string, string> },
): Promise<LabSnapshot> {
  const snap: LabSnapshot = {
    id: randomUUID(),
    vmId: vm.id,
    description: o.description,
    date: Date.now(),
    status: "locked",
    type: "regular",
    persistMemory: o.persistMemory ?? false,
    disks: [],
    ovf: vmOvf(e, vm),
    ...(o.backupId ? { backupId: o.backupId } : {}),
  };
  e.st.snapshots.push(snap);
  for (const disk of o.disks) {
    await e.storage.withDisk(disk.id, async () => {
      const frozen = disk.volumes[disk.volumes.length - 1]!;
      const vol = await e.storage.addTopVolume(disk, o.extraBitmaps?.[disk.id] ?? []);
      const wantId = o.imageIds?.[disk.id];
      if (wantId) vol.id = wantId;
      snap.disks.push({ diskId: disk.id, volumeId: frozen.id });
    });
  }
  e.save();
  return snap;
}

/** Merge a snapshot away: for each disk, the volume above the snapshot's volume is committed into it. */
export async function mergeSnapshot(e: Engine, snap: LabSnapshot): Promise<void> {
  for (const sd of snap.disks) {
    const disk = e.findDisk(sd.diskId);
    if (!disk) continue;
    await e.storage.withDisk(disk.id, async () => {
      const removed = await e.storage.mergeIntoLower(disk, sd.volumeId);
      // A later snapshot that froze the removed volume now points at the merged one (same content).
      if (removed) for (const other of e.st.snapshots) for (const od of other.disks) if (od.volumeId === removed) od.volumeId = sd.volumeId;
    });
  }
  e.st.snapshots = e.st.snapshots.filter((s) => s !== snap);
  e.save();
}

/** Restore (preview + commit) a snapshot: the VM's disks go back to it, newer snapshots go, checkpoints become invalid. */
export async function restoreSnapshot(e: Engine, vm: LabVm, snap: LabSnapshot, correlationId?: string): Promise<void> {
  for (const sd of snap.disks) {
    const disk = e.findDisk(sd.diskId);
    if (!disk) continue;
    await e.storage.withDisk(disk.id, async () => {
      const dropped = new Set(disk.volumes.slice(disk.volumes.findIndex((v) => v.id === sd.volumeId) + 1).map((v) => v.id));
      await e.storage.revertTo(disk, sd.volumeId);
      for (const other of e.st.snapshots) {
        if (other.vmId === vm.id && other.type === "regular" && other.disks.some((d) => dropped.has(d.volumeId))) {
          other.disks = other.disks.filter((d) => !dropped.has(d.volumeId));
          if (!other.disks.length) e.st.snapshots = e.st.snapshots.filter((s) => s !== other);
        }
      }
    });
  }
  let invalidated = 0;
  for (const c of e.st.checkpoints) {
    if (c.vmId === vm.id && c.state !== "invalid") {
      c.state = "invalid";
      invalidated++;
    }
  }
  e.audit("USER_RESTORE_FROM_SNAPSHOT_FINISH_SUCCESS", `VM ${vm.name} restoring from Snapshot has been completed.`, {
    vmId: vm.id,
    ...(correlationId ? { correlationId } : {}),
  });
  if (invalidated) {
    e.audit("VM_CHECKPOINT_INVALIDATED", `${invalidated} checkpoint(s) of VM ${vm.name} were invalidated by the snapshot restore.`, {
      vmId: vm.id,
    });
  }
  e.save();
}

function findSnapshot(e: Engine, vm: LabVm, id: string): LabSnapshot {
  const s = e.st.snapshots.find((x) => x.vmId === vm.id && x.id === id);
  if (!s) throw new NotFound();
  return s;
}

function snapshotDisks(e: Engine, vm: LabVm, s: LabSnapshot): Record<string, unknown>[] {
  const entries =
    s.type === "active"
      ? e.vmDisks(vm).map((d) => ({ disk: d, volumeId: d.volumes[d.volumes.length - 1]!.id }))
      : s.disks.map((sd) => ({ disk: e.findDisk(sd.diskId), volumeId: sd.volumeId })).filter((x) => x.disk);
  return entries.map(({ disk, volumeId }) => {
    const body = encodeDisk(disk!, {
      href: href(`/vms/${vm.id}/snapshots/${s.id}/disks/${disk!.id}`),
      extra: { image_id: volumeId, snapshot: { id: s.id, href: href(`/vms/${vm.id}/snapshots/${s.id}`) } },
    });
    delete body.actions;
    return body;
  });
}

export function registerSnapshots(r: Router, e: Engine): void {
  r.get("/vms/:vm/snapshots", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    return ok(collection("snapshot", e.st.snapshots.filter((s) => s.vmId === vm.id).map(encodeSnapshot)));
  });

  r.get("/vms/:vm/snapshots/:sid", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const s = findSnapshot(e, vm, pathId(ctx, "sid"));
    const all = ctx.query.get("all_content")?.toLowerCase() === "true";
    return ok({ ...encodeSnapshot(s), ...(all && s.ovf ? { initialization: { configuration: { type: "ovf", data: s.ovf } } } : {}) });
  });

  r.get("/vms/:vm/snapshots/:sid/disks", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    return ok(collection("disk", snapshotDisks(e, vm, findSnapshot(e, vm, pathId(ctx, "sid")))));
  });

  r.post("/vms/:vm/snapshots", async (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const b = obj(ctx.body);
    const description = str(b.description);
    if (!description) throw incomplete("Snapshot", ["description"], "add");
    if (e.openBackups(vm.id).length) throw cannot(409, "create", "Snapshot", "The VM is during a backup operation.");
    let disks = e.vmDisks(vm).filter((d) => d.contentType === "data" && !d.shareable);
    const imageIds: Record<string, string> = {};
    if (b.disk_attachments !== undefined) {
      const wanted = items(b.disk_attachments, "disk_attachment");
      disks = wanted.map((w) => {
        const d = obj(w.disk);
        const id = str(d.id)?.toLowerCase() ?? "";
        const disk = e.vmDisks(vm).find((x) => x.id === id);
        if (!disk) throw cannot(400, "create", "Snapshot", `The specified disk ${id} does not exist or is not attached to the VM.`);
        const img = str(d.image_id);
        if (img) imageIds[disk.id] = img.toLowerCase();
        return disk;
      });
    }
    const locked = disks.filter((d) => d.status === "locked");
    if (locked.length) throw cannot(409, "create", "Snapshot", "Disk is locked. Please try again later.");
    if (e.st.snapshots.some((s) => s.vmId === vm.id && s.status === "locked")) {
      throw cannot(409, "create", "Snapshot", `Snapshot is currently being created for VM ${vm.name}.`);
    }
    for (const d of disks) {
      d.status = "locked";
      d.lockReason = "snapshot";
    }
    let snap: LabSnapshot;
    try {
      snap = await takeSnapshot(e, vm, { description, disks, persistMemory: readBool(b.persist_memorystate) ?? true, imageIds });
    } catch (err) {
      for (const d of disks) {
        if (d.lockReason === "snapshot") {
          d.status = "ok";
          delete d.lockReason;
        }
      }
      throw err;
    }
    e.audit("USER_CREATE_SNAPSHOT", `Snapshot '${description}' creation for VM '${vm.name}' was initiated by admin@internal-authz.`, {
      vmId: vm.id,
      ...(ctx.correlationId ? { correlationId: ctx.correlationId } : {}),
    });
    const done = new Promise<void>((resolve) =>
      e.later(e.timings.snapshotMs, () => {
        snap.status = "ok";
        for (const d of disks) {
          if (d.lockReason === "snapshot") {
            d.status = "ok";
            delete d.lockReason;
          }
        }
        e.audit("USER_CREATE_SNAPSHOT_FINISHED_SUCCESS", `Snapshot '${description}' creation for VM '${vm.name}' has been completed.`, {
          vmId: vm.id,
        });
        resolve();
      }),
    );
    if (/201-created/i.test(String(ctx.req.headers.expect ?? ""))) {
      await done;
      return created(encodeSnapshot(snap), e.baseUrl);
    }
    return { ...accepted(encodeSnapshot(snap)), headers: { Location: `${e.baseUrl}${href(`/vms/${vm.id}/snapshots/${snap.id}`)}` } };
  });

  r.delete("/vms/:vm/snapshots/:sid", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const s = findSnapshot(e, vm, pathId(ctx, "sid"));
    if (s.type === "active") throw cannot(400, "remove", "Snapshot", "Cannot remove the active snapshot.");
    if (e.openBackups(vm.id).length) throw cannot(409, "remove", "Snapshot", "The VM is during a backup operation.");
    if (s.status === "locked") throw cannot(409, "remove", "Snapshot", `Snapshot is currently being created for VM ${vm.name}.`);
    const disks = s.disks.map((d) => e.findDisk(d.diskId)).filter((d): d is LabDisk => !!d);
    if (disks.some((d) => d.status === "locked")) throw cannot(409, "remove", "Snapshot", "Disk is locked. Please try again later.");
    s.status = "locked";
    for (const d of disks) {
      d.status = "locked";
      d.lockReason = "merge";
    }
    e.audit("USER_REMOVE_SNAPSHOT", `Snapshot '${s.description}' deletion for VM '${vm.name}' was initiated by admin@internal-authz.`, {
      vmId: vm.id,
      ...(ctx.correlationId ? { correlationId: ctx.correlationId } : {}),
    });
    e.later(e.timings.snapshotMs, async () => {
      try {
        await mergeSnapshot(e, s);
        e.audit("USER_REMOVE_SNAPSHOT_FINISHED_SUCCESS", `Snapshot '${s.description}' deletion for VM '${vm.name}' has been completed.`, {
          vmId: vm.id,
        });
      } finally {
        for (const d of disks) {
          if (d.lockReason === "merge") {
            d.status = "ok";
            delete d.lockReason;
          }
        }
      }
    });
    return { status: 200 };
  });

  r.post("/vms/:vm/snapshots/:sid/restore", async (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const s = findSnapshot(e, vm, pathId(ctx, "sid"));
    if (s.type === "active") throw cannot(400, "revert to", "Snapshot", "Cannot restore the active snapshot.");
    if (vm.status !== "down") throw cannot(409, "revert to", "Snapshot", "VM is not down.");
    if (e.openBackups(vm.id).length) throw cannot(409, "revert to", "Snapshot", "The VM is during a backup operation.");
    if (s.status !== "ok") throw new HttpFault(409, "Operation Failed", `[Cannot revert to Snapshot. Snapshot is not in OK status.]`);
    if (e.vmDisks(vm).some((d) => d.status === "locked")) throw cannot(409, "revert to", "Snapshot", "Disk is locked. Please try again later.");
    await restoreSnapshot(e, vm, s, ctx.correlationId);
    return actionDone(ctx);
  });
}
