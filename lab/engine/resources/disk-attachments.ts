import type { Engine } from "../engine.ts";
import { cannot, created, incomplete, NotFound, obj, ok, pathId, readBool, readEnum, str } from "../http.ts";
import { collection, encodeAttachment } from "../json.ts";
import { DISK_INTERFACES, type Attachment, type LabVm } from "../model.ts";
import type { Router } from "../router.ts";
import { createDisk, deleteDisk, diskLockedFault, parseDiskSpec, updateDisk, waitUnlocked, wantsBlocking } from "./disks.ts";

/** `/vms/{id}/diskattachments` (ovirt-api.md §4.4). The attachment id is the disk id. */
export function attachDisk(e: Engine, vm: LabVm, diskId: string, props: Omit<Attachment, "diskId">): Attachment {
  const disk = e.disk(diskId);
  if (vm.attachments.some((a) => a.diskId === diskId)) {
    throw cannot(409, "attach", "Virtual Disk", `The disk is already attached to VM ${vm.name}.`);
  }
  const other = e.vmOfDisk(diskId);
  if (other && !disk.shareable) {
    throw cannot(409, "attach", "Virtual Disk", `The disk is not shareable and is already attached to VM ${other.name}.`);
  }
  if (disk.status === "locked" && disk.lockReason !== "creating") throw diskLockedFault("attach");
  const att: Attachment = { diskId, ...props };
  vm.attachments.push(att);
  e.audit("USER_ATTACH_DISK_TO_VM", `Disk ${disk.alias} was successfully attached to VM ${vm.name} by admin@internal-authz.`, { vmId: vm.id });
  e.save();
  return att;
}

export function registerDiskAttachments(r: Router, e: Engine): void {
  const find = (vm: LabVm, id: string) => {
    const i = vm.attachments.findIndex((a) => a.diskId === id);
    if (i < 0) throw new NotFound();
    return { att: vm.attachments[i]!, index: i };
  };

  r.get("/vms/:vm/diskattachments", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    return ok(collection("disk_attachment", vm.attachments.map((a, i) => encodeAttachment(vm.id, a, i))));
  });

  r.get("/vms/:vm/diskattachments/:id", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const { att, index } = find(vm, pathId(ctx, "id"));
    return ok(encodeAttachment(vm.id, att, index));
  });

  r.post("/vms/:vm/diskattachments", async (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const b = obj(ctx.body);
    const d = obj(b.disk);
    const missing = [...(b.disk === undefined ? ["disk"] : []), ...(b.interface === undefined ? ["interface"] : [])];
    if (missing.length) throw incomplete("DiskAttachment", missing, "add");
    const iface = readEnum(b.interface, DISK_INTERFACES, "DiskInterface")!;
    const props = {
      interface: iface,
      bootable: readBool(b.bootable) ?? false,
      active: readBool(b.active) ?? true,
      passDiscard: readBool(b.pass_discard) ?? false,
      readOnly: readBool(b.read_only) ?? false,
    };
    const creates = d.provisioned_size !== undefined || d.size !== undefined || d.format !== undefined;
    let diskId = str(d.id)?.toLowerCase();
    let blockingDisk;
    if (creates) {
      const disk = await createDisk(e, parseDiskSpec(e, d), ctx.correlationId ? { correlationId: ctx.correlationId } : {});
      diskId = disk.id;
      blockingDisk = disk;
    } else if (!diskId) {
      throw incomplete("Disk", ["id"], "add");
    } else if (!e.findDisk(diskId)) {
      throw cannot(400, "attach", "Virtual Disk", "The specified disk does not exist.");
    }
    const att = attachDisk(e, vm, diskId, props);
    if (blockingDisk && wantsBlocking(ctx)) await waitUnlocked(blockingDisk);
    return created(encodeAttachment(vm.id, att, vm.attachments.indexOf(att)), e.baseUrl);
  });

  r.put("/vms/:vm/diskattachments/:id", async (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const { att, index } = find(vm, pathId(ctx, "id"));
    const b = obj(ctx.body);
    if (b.disk !== undefined) await updateDisk(e, e.disk(att.diskId), b.disk, true);
    if (b.interface !== undefined) att.interface = readEnum(b.interface, DISK_INTERFACES, "DiskInterface")!;
    att.bootable = readBool(b.bootable) ?? att.bootable;
    att.active = readBool(b.active) ?? att.active;
    att.passDiscard = readBool(b.pass_discard) ?? att.passDiscard;
    att.readOnly = readBool(b.read_only) ?? att.readOnly;
    e.save();
    return ok(encodeAttachment(vm.id, att, index));
  });

  r.delete("/vms/:vm/diskattachments/:id", async (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const { att } = find(vm, pathId(ctx, "id"));
    const disk = e.disk(att.diskId);
    if (e.openBackups(vm.id).some((b) => b.diskIds.includes(disk.id))) {
      throw cannot(409, "detach", "Virtual Disk", "The VM is during a backup operation.");
    }
    if (disk.status === "locked") throw diskLockedFault("detach");
    const detachOnly = readBool(ctx.query.get("detach_only")) ?? true;
    vm.attachments = vm.attachments.filter((a) => a !== att);
    e.audit("USER_DETACH_DISK_FROM_VM", `Disk ${disk.alias} was successfully detached from VM ${vm.name} by admin@internal-authz.`, {
      vmId: vm.id,
    });
    if (!detachOnly) await deleteDisk(e, disk, ctx.correlationId);
    e.save();
    return { status: 200 };
  });
}
