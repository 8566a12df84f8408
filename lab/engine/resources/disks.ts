import { randomUUID } from "node:crypto";
import { qemuImg } from "../../../adapters/qemu/mod.ts";
import type { Engine } from "../engine.ts";
import {
  accepted,
  cannot,
  created,
  HttpFault,
  incomplete,
  isUuid,
  items,
  NotFound,
  obj,
  ok,
  pathId,
  readBool,
  readEnum,
  readInt,
  str,
  type Ctx,
  type Reply,
} from "../http.ts";
import { collection, encodeDisk } from "../json.ts";
import {
  CONTENT_TYPES,
  DISK_BACKUPS,
  DISK_FORMATS,
  QCOW_VERSIONS,
  type ContentType,
  type DiskBackup,
  type DiskFormat,
  type LabDisk,
  type LabStorageDomain,
  type QcowVersion,
} from "../model.ts";
import type { Router } from "../router.ts";
import { matchesSearch, searchParams } from "../search.ts";
import { allocationOf, fits, giveBack, take, validateSpace } from "../space.ts";

export interface DiskSpec {
  id: string;
  imageId?: string;
  alias: string;
  description: string;
  format: DiskFormat;
  qcowVersion: QcowVersion;
  sparse: boolean;
  backup: DiskBackup;
  provisionedSize: number;
  /** `initial_size` (sparse qcow2 on block storage; the lab accounts it on any domain). */
  initialSize?: number;
  contentType: ContentType;
  shareable: boolean;
  storageDomain: LabStorageDomain;
}

/** Validate a disk in a request body (ovirt-api.md §8.1). Nothing is created on failure. */
export function parseDiskSpec(e: Engine, body: unknown, sdFromPath?: LabStorageDomain): DiskSpec {
  const b = obj(body);
  const size = readInt(b.provisioned_size ?? b.size, "provisioned_size");
  const missing: string[] = [];
  if (size === undefined) missing.push("provisionedSize|size");
  if (b.format === undefined) missing.push("format");
  if (missing.length) throw incomplete("Disk", missing, "add");
  const format = readEnum(b.format, DISK_FORMATS, "DiskFormat")!;
  let sd = sdFromPath;
  if (!sd) {
    const want = items(b.storage_domains, "storage_domain")[0];
    const id = str(want?.id);
    const name = str(want?.name);
    if (!id && !name) throw incomplete("Disk", ["storageDomain.id|name"], "add");
    sd = e.st.storageDomains.find((s) => (id ? s.id === id.toLowerCase() : s.name === name));
    if (!sd) throw cannot(400, "add", "Virtual Disk", "Storage Domain doesn't exist.");
  }
  const backup = readEnum(b.backup, DISK_BACKUPS, "DiskBackup") ?? "none";
  const contentType = readEnum(b.content_type, CONTENT_TYPES, "DiskContentType") ?? "data";
  const qcowVersion = readEnum(b.qcow_version, QCOW_VERSIONS, "QcowVersion") ?? "qcow2_v3";
  // Without `sparse` the lab takes thin for cow and preallocated for raw (the engine leaves the type unset).
  const sparse = readBool(b.sparse) ?? format === "cow";
  if (size! <= 0) throw cannot(400, "add", "Virtual Disk", "Disk size must be positive.");
  const id = str(b.id)?.toLowerCase() ?? randomUUID();
  if (!isUuid(id)) throw new HttpFault(400, "Invalid value", `${id} is not a valid UUID`);
  if (e.findDisk(id)) throw cannot(409, "add", "Virtual Disk", `The disk with ID ${id} already exists.`);
  const imageId = str(b.image_id)?.toLowerCase();
  if (imageId !== undefined && !isUuid(imageId)) throw new HttpFault(400, "Invalid value", `${imageId} is not a valid UUID`);
  // ImagesHandler.checkImageConfiguration.
  const incremental = backup === "incremental";
  const valid =
    (format === "raw" && !incremental && !(sparse && sd.storage === "iscsi")) ||
    (format === "cow" && (sparse || incremental));
  if (!valid) {
    throw cannot(
      409,
      "add",
      "Virtual Disk",
      `Disk configuration (${format.toUpperCase()} ${sparse ? "Sparse" : "Preallocated"} backup-${incremental ? "Incremental" : "None"}) is incompatible with the storage domain type.`,
    );
  }
  const initialSize = readInt(b.initial_size, "initial_size");
  if (initialSize !== undefined && initialSize < 0) throw cannot(400, "add", "Virtual Disk", "Initial size must be a non-negative number.");
  // StorageDomainValidator.isDomainWithinThresholds / hasSpaceForNewDisk (lab/engine/space.ts).
  validateSpace(sd, [{ format, sparse, provisionedSize: size!, initialSize }]);
  const alias = str(b.alias) ?? str(b.name) ?? `disk-${id.slice(0, 8)}`;
  const spec: DiskSpec = {
    id,
    alias,
    description: str(b.description) ?? "",
    format,
    qcowVersion,
    sparse,
    backup,
    provisionedSize: size!,
    contentType,
    shareable: readBool(b.shareable) ?? false,
    storageDomain: sd,
  };
  if (imageId) spec.imageId = imageId;
  if (initialSize !== undefined) spec.initialSize = initialSize;
  return spec;
}

/**
 * Create the disk record and its base volume; it is `locked` and turns `ok` after diskCreateMs,
 * taking its allocation from the storage domain. When the validation passed but the allocation
 * does not fit (lab/engine/space.ts), it turns `illegal` instead, like a creation vdsm failed.
 */
export async function createDisk(e: Engine, spec: DiskSpec, o: { correlationId?: string; immediate?: boolean } = {}): Promise<LabDisk> {
  const sd = spec.storageDomain;
  const allocation = allocationOf(spec, sd);
  const room = fits(sd, allocation);
  const disk: LabDisk = {
    id: spec.id,
    alias: spec.alias,
    description: spec.description,
    format: spec.format,
    qcowVersion: spec.qcowVersion,
    sparse: spec.sparse,
    backup: spec.backup,
    provisionedSize: spec.provisionedSize,
    contentType: spec.contentType,
    shareable: spec.shareable,
    storageDomainId: spec.storageDomain.id,
    status: o.immediate ? "ok" : "locked",
    volumes: [],
    createdAt: Date.now(),
  };
  if (!o.immediate) disk.lockReason = "creating";
  disk.volumes.push(await e.storage.createBase(disk, spec.imageId));
  if (room) {
    take(sd, allocation);
    disk.allocatedBytes = allocation;
  }
  e.st.disks.push(disk);
  e.audit("USER_ADD_DISK", `Add-Disk operation of '${disk.alias}' was initiated by admin@internal-authz.`, {
    ...(o.correlationId ? { correlationId: o.correlationId } : {}),
    storageDomainId: disk.storageDomainId,
  });
  const finish = () => {
    if (!room) {
      disk.status = "illegal";
      delete disk.lockReason;
      e.audit("USER_ADD_DISK_FINISHED_FAILURE", "Operation Add-Disk failed to complete.", {
        severity: "error",
        storageDomainId: disk.storageDomainId,
      });
      return;
    }
    if (disk.lockReason === "creating") {
      disk.status = "ok";
      delete disk.lockReason;
    }
    e.audit("USER_ADD_DISK_FINISHED_SUCCESS", `The disk '${disk.alias}' was successfully added.`, {
      storageDomainId: disk.storageDomainId,
    });
  };
  if (o.immediate) finish();
  else e.later(e.timings.diskCreateMs, finish);
  e.save();
  return disk;
}

/** Wait until the disk left `locked` (for `Expect: 201-created`). */
export async function waitUnlocked(disk: LabDisk, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (disk.status === "locked" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

export function wantsBlocking(ctx: Ctx): boolean {
  return /201-created/i.test(String(ctx.req.headers.expect ?? ""));
}

/** 202 with `creation_status` (or 201 once done with `Expect: 201-created`). */
export async function diskCreatedReply(e: Engine, ctx: Ctx, disk: LabDisk): Promise<Reply> {
  if (wantsBlocking(ctx)) {
    await waitUnlocked(disk);
    return created(encodeDisk(disk), e.baseUrl);
  }
  return { ...accepted({ ...encodeDisk(disk), creation_status: "pending" }), headers: { Location: `${e.baseUrl}${encodeDisk(disk).href as string}` } };
}

export function diskLockedFault(action: string): HttpFault {
  return cannot(409, action, "Virtual Disk", "Disk is locked. Please try again later.");
}

/** Apply a disk update (PUT /disks/{id} or the `disk` of a disk-attachment update). */
export async function updateDisk(e: Engine, disk: LabDisk, body: unknown, viaAttachment: boolean): Promise<void> {
  const b = obj(body);
  const qcow = readEnum(b.qcow_version, QCOW_VERSIONS, "QcowVersion");
  const backup = readEnum(b.backup, DISK_BACKUPS, "DiskBackup");
  const others = Object.keys(b).filter((k) => !["id", "href", "qcow_version", "backup"].includes(k));
  const changesOthers = others.some((k) => {
    const v = b[k];
    if (k === "alias" || k === "name") return str(v) !== undefined && str(v) !== disk.alias;
    if (k === "description") return str(v) !== undefined && str(v) !== disk.description;
    if (k === "provisioned_size") return readInt(v, k) !== undefined && readInt(v, k) !== disk.provisionedSize;
    if (k === "shareable") return readBool(v) !== undefined && readBool(v) !== disk.shareable;
    return false;
  });
  if (changesOthers && !viaAttachment) {
    throw cannot(409, "edit", "Virtual Disk", "Updating disk attributes other than QCOW version is permitted only for disk-attachments.");
  }
  if (disk.status === "locked") throw diskLockedFault("edit");
  if (backup === "incremental" && disk.format === "raw") {
    throw cannot(400, "edit", "Virtual Disk", "Incremental backup is not supported for RAW format disks.");
  }
  if (qcow && qcow !== disk.qcowVersion) {
    if (disk.format !== "cow") throw cannot(400, "amend", "Virtual Disk", "QCOW version can only be set for QCOW format disks.");
    if (qcow === "qcow2_v2") throw cannot(400, "amend", "Virtual Disk", "Downgrading the QCOW version is not supported.");
    const vm = e.vmOfDisk(disk.id);
    if (vm && vm.status !== "down") throw cannot(409, "amend", "Virtual Disk", `The VM ${vm.name} is running.`);
    if (vm && e.openBackups(vm.id).length) throw cannot(409, "amend", "Virtual Disk", "The VM is during a backup operation.");
    await e.storage.withDisk(disk.id, async () => {
      for (const v of disk.volumes) {
        if (v.format === "qcow2") await qemuImg.amend(v.path, { format: "qcow2", options: { compat: "1.1" } });
      }
    });
    disk.qcowVersion = qcow;
  }
  if (backup) disk.backup = backup;
  if (viaAttachment) {
    const alias = str(b.alias) ?? str(b.name);
    if (alias) disk.alias = alias;
    const description = str(b.description);
    if (description !== undefined) disk.description = description;
    const size = readInt(b.provisioned_size, "provisioned_size");
    if (size !== undefined && size !== disk.provisionedSize) {
      if (size < disk.provisionedSize) throw cannot(400, "extend", "Virtual Disk", "Disk size cannot be reduced.");
      throw cannot(400, "extend", "Virtual Disk", "Extending disks is not supported by the lab.");
    }
  }
  e.audit("USER_UPDATE_VM_DISK", `VM disk '${disk.alias}' was updated by admin@internal-authz.`);
  e.save();
}

/** Delete a disk and its files (the caller checked locks). */
export async function deleteDisk(e: Engine, disk: LabDisk, correlationId?: string): Promise<void> {
  for (const vm of e.st.vms) vm.attachments = vm.attachments.filter((a) => a.diskId !== disk.id);
  for (const s of e.st.snapshots) s.disks = s.disks.filter((d) => d.diskId !== disk.id);
  e.st.disks = e.st.disks.filter((d) => d.id !== disk.id);
  const sd = e.st.storageDomains.find((s) => s.id === disk.storageDomainId);
  if (sd && disk.allocatedBytes) giveBack(sd, disk.allocatedBytes);
  delete disk.allocatedBytes;
  await e.storage.withDisk(disk.id, () => e.storage.removeDiskFiles(disk));
  e.audit("USER_REMOVE_DISK", `Disk ${disk.alias} was successfully removed.`, {
    ...(correlationId ? { correlationId } : {}),
    storageDomainId: disk.storageDomainId,
  });
  e.save();
}

function listDisks(e: Engine, ctx: Ctx, sdId?: string): Reply {
  const { search, caseSensitive, max } = searchParams(ctx.query);
  let list = e.st.disks.filter(
    (d) =>
      (!sdId || d.storageDomainId === sdId) &&
      matchesSearch(search, { name: d.alias, alias: d.alias, id: d.id, status: d.status, description: d.description }, { caseSensitive }),
  );
  if (max !== undefined) list = list.slice(0, max);
  return ok(collection("disk", list.map((d) => encodeDisk(d))));
}

export function registerDisks(r: Router, e: Engine): void {
  const sdOf = (ctx: Ctx) => {
    const id = pathId(ctx, "sd");
    const sd = e.st.storageDomains.find((s) => s.id === id);
    if (!sd) throw new NotFound();
    return sd;
  };

  r.get("/disks", (ctx) => listDisks(e, ctx));
  r.get("/storagedomains/:sd/disks", (ctx) => listDisks(e, ctx, sdOf(ctx).id));

  r.post("/disks", async (ctx) => {
    const disk = await createDisk(e, parseDiskSpec(e, ctx.body), ctx.correlationId ? { correlationId: ctx.correlationId } : {});
    return diskCreatedReply(e, ctx, disk);
  });
  r.post("/storagedomains/:sd/disks", async (ctx) => {
    const disk = await createDisk(e, parseDiskSpec(e, ctx.body, sdOf(ctx)), ctx.correlationId ? { correlationId: ctx.correlationId } : {});
    return diskCreatedReply(e, ctx, disk);
  });

  r.get("/disks/:id", (ctx) => ok(encodeDisk(e.disk(pathId(ctx, "id")))));
  r.get("/storagedomains/:sd/disks/:id", (ctx) => {
    const sd = sdOf(ctx);
    const d = e.disk(pathId(ctx, "id"));
    if (d.storageDomainId !== sd.id) throw new NotFound();
    return ok(encodeDisk(d));
  });

  r.put("/disks/:id", async (ctx) => {
    const disk = e.disk(pathId(ctx, "id"));
    await updateDisk(e, disk, ctx.body, false);
    return ok(encodeDisk(disk));
  });

  r.delete("/disks/:id", async (ctx) => {
    const disk = e.disk(pathId(ctx, "id"));
    if (disk.status === "locked") throw diskLockedFault("remove");
    const vm = e.vmOfDisk(disk.id);
    if (vm && e.openBackups(vm.id).length) throw cannot(409, "remove", "Virtual Disk", "The VM is during a backup operation.");
    if (vm && vm.status !== "down" && vm.attachments.find((a) => a.diskId === disk.id)?.active) {
      throw cannot(409, "remove", "Virtual Disk", `Disk is attached to a running VM (${vm.name}). Please deactivate it first.`);
    }
    await deleteDisk(e, disk, ctx.correlationId);
    return { status: 200 };
  });
}
