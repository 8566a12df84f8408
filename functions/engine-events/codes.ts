/**
 * Engine audit-log codes → the ovirt.event kinds Ferry acts on. The codes are ovirt-engine's
 * AuditLogType values (backend/.../common/AuditLogType.java); every other code is not news for
 * Ferry and is skipped. Only success codes: a failed operation changed nothing.
 */
import type { OvirtEventKind } from "../../contracts/mod.ts";

export const ENGINE_EVENT_KINDS: ReadonlyMap<number, { readonly kind: OvirtEventKind; readonly name: string }> = new Map(
  (
    [
      [71, "snapshot-restored", "USER_TRY_BACK_TO_SNAPSHOT_FINISH_SUCCESS"], // preview: the VM runs on the snapshot's data
      [100, "snapshot-restored", "USER_RESTORE_FROM_SNAPSHOT_FINISH_SUCCESS"],
      [651, "snapshot-restored", "USER_UNDO_RESTORE_FROM_SNAPSHOT_FINISH_SUCCESS"],
      [95, "snapshot-committed", "USER_COMMIT_RESTORE_FROM_SNAPSHOT_FINISH_SUCCESS"],
      [97, "disk-added", "USER_ADD_DISK_TO_VM_FINISHED_SUCCESS"],
      [2016, "disk-added", "USER_ATTACH_DISK_TO_VM"],
      [2021, "disk-added", "USER_ADD_DISK_FINISHED_SUCCESS"],
      [2012, "disk-removed", "USER_FINISHED_REMOVE_DISK_NO_DOMAIN"],
      [2014, "disk-removed", "USER_FINISHED_REMOVE_DISK"],
      [2018, "disk-removed", "USER_DETACH_DISK_FROM_VM"],
      [2042, "disk-removed", "USER_FINISHED_REMOVE_DISK_ATTACHED_TO_VMS"],
      [2043, "disk-removed", "USER_FINISHED_REMOVE_DISK_ATTACHED_TO_VMS_NO_DOMAIN"],
      [371, "disk-resized", "USER_EXTEND_DISK_SIZE_SUCCESS"],
      [2010, "disk-moved", "USER_MOVED_DISK_FINISHED_SUCCESS"],
      [10797, "checkpoint-removed", "VM_CHECKPOINT_DELETED"],
      [113, "vm-removed", "USER_REMOVE_VM_FINISHED"],
      [172, "vm-removed", "USER_REMOVE_VM_FINISHED_WITH_ILLEGAL_DISKS"],
    ] as const
  ).map(([code, kind, name]) => [code, { kind, name }]),
);

/** The kind of an engine event, or undefined when Ferry does not act on it. */
export function kindOfCode(code: number | undefined): OvirtEventKind | undefined {
  return code === undefined ? undefined : ENGINE_EVENT_KINDS.get(code)?.kind;
}
