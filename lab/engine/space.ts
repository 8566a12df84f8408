import { cannot } from "./http.ts";
import type { DiskFormat, LabStorageDomain } from "./model.ts";

/**
 * Free space on the lab's storage domains.
 *
 * Two numbers decide a new disk, as in ovirt-engine:
 *
 * 1. The validation (StorageDomainValidator.hasSpaceForNewDisk + isDomainWithinThresholds, read
 *    in oVirt/ovirt-engine): the engine knows the domain's free space only in whole GB, and asks
 *    for 1 MiB (qcow2 header) for any cow disk on a file domain, 1 GiB for a cow disk on a block
 *    domain, the full capacity for a preallocated raw disk and 1 MiB for a sparse raw one. It
 *    also refuses every new disk once the free space is below CriticalSpaceActionBlocker (5 GB).
 *    A miss is 409 `[Cannot add Virtual Disk. Low disk space on Storage Domain <name>.]`
 *    (ACTION_TYPE_FAILED_DISK_SPACE_LOW_ON_STORAGE_DOMAIN; the 409 status is [inferred] from the
 *    brief and the message's CONFLICT nature, the text is the engine's).
 * 2. What the disk then takes from the domain (the lab's accounting, standing in for what vdsm
 *    allocates and reports): a preallocated disk its provisioned size, a sparse cow disk its
 *    `initial_size` if given (else 1 MiB on file, 1 GiB on block), a sparse raw disk 1 MiB.
 *    On a real file domain a sparse disk grows as data is written; the lab reserves
 *    `initial_size` up front instead (a restore sends `qemu-img measure`'s `required`, about what
 *    the upload will write) [lab simplification]. When the validation passes but this does not
 *    fit, the creation fails later, as vdsm would: the disk turns `illegal`
 *    (USER_ADD_DISK_FINISHED_FAILURE) and nothing is taken [inferred].
 */
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

export interface SpaceRequest {
  format: DiskFormat;
  sparse: boolean;
  provisionedSize: number;
  initialSize?: number | undefined;
}

/** What the engine's validator asks for (getTotalSizeForNewDisks). */
export function requiredForValidation(d: SpaceRequest, sd: LabStorageDomain): number {
  if (d.format === "cow") return sd.storage === "iscsi" ? GiB : MiB;
  return d.sparse ? MiB : d.provisionedSize;
}

/** What the disk takes from the domain once created. */
export function allocationOf(d: SpaceRequest, sd: LabStorageDomain): number {
  if (!d.sparse) return d.provisionedSize;
  if (d.format === "cow") return d.initialSize ?? (sd.storage === "iscsi" ? GiB : MiB);
  return MiB;
}

/** Free space as the engine sees it: whole GB. */
export function engineAvailable(sd: LabStorageDomain): number {
  return Math.floor(Math.max(0, sd.availableBytes) / GiB) * GiB;
}

/** The engine's validation for new disks on one domain (`requests` together); throws the 409 fault. */
export function validateSpace(sd: LabStorageDomain, requests: SpaceRequest[]): void {
  const freeGb = Math.floor(Math.max(0, sd.availableBytes) / GiB);
  const required = requests.reduce((n, r) => n + requiredForValidation(r, sd), 0);
  if (freeGb < sd.criticalSpaceGb || engineAvailable(sd) < required) {
    throw cannot(409, "add", "Virtual Disk", `Low disk space on Storage Domain ${sd.name}.`);
  }
}

/** Whether the allocation fits the domain's real free space. */
export function fits(sd: LabStorageDomain, bytes: number): boolean {
  return bytes <= sd.availableBytes;
}

export function take(sd: LabStorageDomain, bytes: number): void {
  sd.availableBytes -= bytes;
  sd.usedBytes += bytes;
}

export function giveBack(sd: LabStorageDomain, bytes: number): void {
  sd.availableBytes += bytes;
  sd.usedBytes = Math.max(0, sd.usedBytes - bytes);
}
