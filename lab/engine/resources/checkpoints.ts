import type { Engine } from "../engine.ts";
import { actionDone, cannot, NotFound, ok, pathId } from "../http.ts";
import { collection, encodeCheckpoint, encodeDisk, href } from "../json.ts";
import type { LabCheckpoint, LabDisk, LabVm } from "../model.ts";
import type { Router } from "../router.ts";

/**
 * `/vms/{id}/checkpoints` (ovirt-api.md §5.6): listed in chain order with `parent_id`; deleting
 * one removes its bitmap from every volume of its disks and relinks the child to its parent.
 */
export async function removeCheckpoint(e: Engine, vm: LabVm, cp: LabCheckpoint): Promise<void> {
  for (const diskId of cp.diskIds) {
    const disk = e.findDisk(diskId);
    if (disk) await e.storage.withDisk(diskId, () => e.storage.removeBitmap(disk, cp.id));
  }
  for (const c of e.st.checkpoints) if (c.vmId === vm.id && c.parentId === cp.id) {
    if (cp.parentId) c.parentId = cp.parentId;
    else delete c.parentId;
  }
  e.st.checkpoints = e.st.checkpoints.filter((c) => c !== cp);
  e.audit("VM_CHECKPOINT_REMOVED", `Checkpoint ${cp.id} of VM ${vm.name} was removed.`, { vmId: vm.id });
  e.save();
}

export function registerCheckpoints(r: Router, e: Engine): void {
  const find = (vm: LabVm, id: string) => {
    const cp = e.st.checkpoints.find((c) => c.vmId === vm.id && c.id === id);
    if (!cp) throw new NotFound();
    return cp;
  };

  r.get("/vms/:vm/checkpoints", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    return ok(collection("checkpoint", e.st.checkpoints.filter((c) => c.vmId === vm.id).map(encodeCheckpoint)));
  });

  r.get("/vms/:vm/checkpoints/:id", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    return ok(encodeCheckpoint(find(vm, pathId(ctx, "id"))));
  });

  r.get("/vms/:vm/checkpoints/:id/disks", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const cp = find(vm, pathId(ctx, "id"));
    const disks = cp.diskIds.map((id) => e.findDisk(id)).filter((d): d is LabDisk => !!d);
    return ok(
      collection(
        "disk",
        disks.map((d) => {
          const body = encodeDisk(d, { href: href(`/vms/${vm.id}/checkpoints/${cp.id}/disks/${d.id}`) });
          delete body.actions;
          return body;
        }),
      ),
    );
  });

  r.delete("/vms/:vm/checkpoints/:id", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const id = pathId(ctx, "id");
    const cp = e.st.checkpoints.find((c) => c.vmId === vm.id && c.id === id);
    if (!cp) throw cannot(400, "remove", "checkpoint", `Checkpoint ID ${id} doesn't exist.`);
    if (e.openBackups(vm.id).length) throw cannot(409, "remove", "checkpoint", "The VM is during a backup operation.");
    if (cp.diskIds.some((d) => e.findDisk(d)?.status === "locked")) {
      throw cannot(409, "remove", "checkpoint", "Disk is locked. Please try again later.");
    }
    // Removal is asynchronous on a real engine: clients poll GET until 404.
    e.later(e.timings.backupPhaseMs, () => removeCheckpoint(e, vm, cp));
    return actionDone(ctx);
  });
}
