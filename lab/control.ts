import { createHash, randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { qemuImg, type ImageFormat } from "../adapters/qemu/mod.ts";
import type { BackupSupport } from "./engine/resources/backups.ts";
import type { ImageioFaults } from "./imageio/mod.ts";
import type { Engine } from "./engine/engine.ts";
import { encodeEvent } from "./engine/json.ts";
import type { ContentType, DiskBackup, DiskFormat, LabDisk, LabVm, QcowVersion, VmStatus } from "./engine/model.ts";
import { attachDisk } from "./engine/resources/disk-attachments.ts";
import { createDisk, parseDiskSpec, type DiskSpec } from "./engine/resources/disks.ts";
import type { Transfers } from "./engine/resources/image-transfers.ts";
import { restoreSnapshot, takeSnapshot } from "./engine/resources/snapshots.ts";
import { newVm, startVm, stopVm } from "./engine/resources/vms.ts";

/**
 * The lab's control API (in process; the same operations over HTTP under /ferry-lab/ in
 * control-http.ts). Tests and `ferry lab ...` use it to shape the simulated world: VMs and disks,
 * guest writes, point-in-time exports, snapshots, CA rotation and faults.
 */
export interface LabDiskInput {
  alias?: string;
  /** Virtual size in bytes. */
  size: number;
  format?: DiskFormat;
  qcowVersion?: QcowVersion;
  /** Default: "incremental" for cow v3 disks, "none" otherwise. */
  backup?: DiskBackup;
  contentType?: ContentType;
  shareable?: boolean;
  sparse?: boolean;
  /** Attachment: default true. */
  active?: boolean;
  bootable?: boolean;
  storageDomain?: "data" | "data-block";
}

export interface LabDiskRef {
  id: string;
  alias: string;
  /** The active volume's file when the call returned (it changes with snapshots and backups). */
  imagePath: string;
}

export interface WriteSpec {
  offset: number;
  length: number;
  /** Fill byte. */
  pattern?: number;
  /** Pseudo-random data from this seed (see seededBytes). */
  seed?: number;
  /** Write zeroes. */
  zero?: boolean;
}

export interface WriteResult {
  offset: number;
  length: number;
  /** The seed used (given, or picked when neither pattern, seed nor zero was asked for). */
  seed?: number;
  /** sha256 of the bytes written (hex). */
  sha256: string;
}

export interface ExportOptions {
  format: ImageFormat;
  /** The image as of that backup's start (its point-in-time view). */
  atBackup?: string;
  /** The image as of that snapshot. */
  atSnapshot?: string;
}

export interface ExportResult {
  path: string;
  format: ImageFormat;
  virtualSize: number;
  source: "current" | "backup" | "snapshot";
}

export type FaultPhase = "initializing" | "transferring" | "finalizing";

export interface LabFaults {
  /** Fail the next transfer (of one direction, if given) when it reaches `phase`. */
  failNextTransfer(phase: FaultPhase, direction?: "upload" | "download"): void;
  /** Have imageio drop the connection after this many bytes (delegated to the imageio daemon). */
  dropConnectionAfter(bytes: number): void;
  /** Remove a checkpoint's bitmap from every volume of a disk (a lost bitmap). */
  deleteBitmap(diskId: string, checkpointId: string): Promise<number>;
  /** Answer `status` `count` times on engine paths matching `pathRegex` (default: the whole API). */
  httpErrors(status: number, count: number, pathRegex?: string): void;
  /** Keep the next finalize in `finalizing` for `ms` more. */
  stallFinalize(ms: number, target?: "backup" | "transfer"): void;
  /** Expire the ticket of a transfer (or of every open transfer) now and block its renewal. */
  expireTicket(transferId?: string): Promise<number>;
  /** Disarm everything. */
  clear(): void;
}

export interface LabControl {
  createVm(o: { name: string; disks: LabDiskInput[]; status?: "up" | "down"; memory?: number }): Promise<{
    id: string;
    name: string;
    disks: LabDiskRef[];
  }>;
  addDisk(vmId: string, disk: LabDiskInput): Promise<LabDiskRef>;
  writeGuestData(diskId: string, w: WriteSpec): Promise<WriteResult>;
  exportImage(diskId: string, outPath: string, o: ExportOptions): Promise<ExportResult>;
  takeSnapshot(vmId: string, description?: string): Promise<{ id: string }>;
  restoreSnapshot(vmId: string, snapshotId: string): Promise<void>;
  invalidateCheckpoints(vmId: string): Promise<number>;
  setVmStatus(vmId: string, status: "up" | "down"): Promise<void>;
  rotateCa(): Promise<{ fingerprint256: string; notAfter: string }>;
  setBackupSupport(mode: BackupSupport): void;
  /** Expire every SSO token and session (clients must re-authenticate). */
  revokeTokens(): number;
  faults: LabFaults;
  /** The audit log, newest first, in the API's JSON shape. */
  events(o?: { max?: number }): Record<string, unknown>[];
  status(): LabStatus;
  /** Errors raised by background work (phase timers); empty on a healthy lab. */
  backgroundErrors(): string[];
}

export interface LabStatus {
  engine: string;
  url: string;
  vms: Array<{ id: string; name: string; status: VmStatus; disks: Array<{ id: string; alias: string; format: string; status: string; volumes: number }> }>;
  openBackups: Array<{ id: string; vmId: string; phase: string }>;
  openTransfers: Array<{ id: string; diskId: string; phase: string; direction: string }>;
  checkpoints: number;
  events: number;
}

export interface ControlDeps {
  engine: Engine;
  transfers: Transfers;
  rotateCa(): Promise<{ fingerprint256: string; notAfter: string }>;
  revokeTokens(): number;
  backupSupport: { mode: BackupSupport };
  /** imageio's own faults object, if the daemon has one. */
  imageioFaults(): ImageioFaults | undefined;
}

export class ControlError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    message: string,
  ) {
    super(message);
  }
}

export function createLabControl(d: ControlDeps): LabControl {
  const e = d.engine;
  let writeCounter = 0;

  const vmOf = (id: string): LabVm => {
    const vm = e.st.vms.find((v) => v.id === id || v.name === id);
    if (!vm) throw new ControlError(404, `no VM ${id}`);
    return vm;
  };
  const diskOf = (id: string): LabDisk => {
    const disk = e.st.disks.find((x) => x.id === id || x.alias === id);
    if (!disk) throw new ControlError(404, `no disk ${id}`);
    return disk;
  };
  const refOf = (disk: LabDisk): LabDiskRef => ({ id: disk.id, alias: disk.alias, imagePath: disk.volumes[disk.volumes.length - 1]!.path });

  /** Validates one disk of the control API (nothing is created yet). */
  function diskSpecFor(vmName: string, input: LabDiskInput, index: number): DiskSpec {
    const format = input.format ?? "cow";
    const qcowVersion = input.qcowVersion ?? "qcow2_v3";
    const backup = input.backup ?? (format === "cow" && qcowVersion === "qcow2_v3" ? "incremental" : "none");
    const sdName = input.storageDomain ?? "data";
    const sd = e.st.storageDomains.find((s) => s.name === sdName);
    if (!sd) throw new ControlError(400, `no storage domain ${sdName} (have ${e.st.storageDomains.map((s) => s.name).join(", ")})`);
    return parseDiskSpec(
      e,
      {
        alias: input.alias ?? `${vmName}_Disk${index + 1}`,
        provisioned_size: input.size,
        format,
        qcow_version: qcowVersion,
        backup,
        content_type: input.contentType ?? "data",
        shareable: input.shareable ?? false,
        sparse: input.sparse ?? true,
      },
      sd,
    );
  }

  async function addDiskTo(vm: LabVm, input: LabDiskInput, index: number, spec = diskSpecFor(vm.name, input, index)): Promise<LabDiskRef> {
    const disk = await createDisk(e, spec, { immediate: true });
    attachDisk(e, vm, disk.id, {
      interface: "virtio_scsi",
      bootable: input.bootable ?? index === 0,
      active: input.active ?? true,
      passDiscard: false,
      readOnly: false,
    });
    return refOf(disk);
  }

  const faults: LabFaults = {
    failNextTransfer(phase, direction) {
      e.faults.failTransfer.push({ phase, ...(direction ? { direction } : {}) });
    },
    dropConnectionAfter(bytes) {
      const f = d.imageioFaults();
      if (!f) throw new ControlError(409, "the imageio daemon has no faults");
      f.dropConnectionAfterBytes(bytes);
    },
    async deleteBitmap(diskId, checkpointId) {
      const disk = diskOf(diskId);
      return e.storage.withDisk(disk.id, () => e.storage.removeBitmap(disk, checkpointId));
    },
    httpErrors(status, count, pathRegex) {
      e.faults.httpErrors.push({ status, remaining: count, path: new RegExp(pathRegex ?? "^/ovirt-engine/api") });
    },
    stallFinalize(ms, target = "backup") {
      e.faults.stallFinalize.push({ ms, target });
    },
    async expireTicket(transferId) {
      const open = e.openTransfers().filter((t) => !transferId || t.id === transferId);
      for (const t of open) await d.transfers.expireTicket(t);
      return open.length;
    },
    clear() {
      e.faults.failTransfer = [];
      e.faults.httpErrors = [];
      e.faults.stallFinalize = [];
      e.faults.noRenew.clear();
    },
  };

  return {
    async createVm(o) {
      if (e.st.vms.some((v) => v.name === o.name)) throw new ControlError(409, `a VM named ${o.name} exists`);
      // Every disk is validated before the VM exists: bad input must not leave half a VM behind.
      const specs = o.disks.map((d, i) => diskSpecFor(o.name, d, i));
      const vm = newVm(e, { name: o.name, ...(o.memory ? { memory: o.memory } : {}) });
      const disks: LabDiskRef[] = [];
      for (const [i, d] of o.disks.entries()) disks.push(await addDiskTo(vm, d, i, specs[i]));
      if (o.status === "up") vm.status = "up";
      e.save();
      return { id: vm.id, name: vm.name, disks };
    },

    async addDisk(vmId, disk) {
      const vm = vmOf(vmId);
      return addDiskTo(vm, disk, vm.attachments.length);
    },

    async writeGuestData(diskId, w) {
      const disk = diskOf(diskId);
      if (!Number.isSafeInteger(w.offset) || !Number.isSafeInteger(w.length) || w.offset < 0 || w.length <= 0) {
        throw new ControlError(400, "offset and length must be non-negative integers (length > 0)");
      }
      if (w.offset + w.length > disk.provisionedSize) throw new ControlError(400, "write past the end of the disk");
      // The active volume is served by qemu-nbd for an upload or a plain download (qemu holds its lock).
      const busy = e.openTransfers().find((t) => t.diskId === disk.id && !t.backupId && !t.volumeId);
      if (busy) throw new ControlError(409, `disk ${disk.alias} is being transferred (${busy.direction}, transfer ${busy.id})`);
      const spec = { ...w };
      if (spec.pattern === undefined && spec.seed === undefined && !spec.zero) spec.seed = ++writeCounter;
      const hash = createHash("sha256");
      await e.storage.withDisk(disk.id, () => e.storage.write(disk, spec, (chunk) => hash.update(chunk)));
      return { offset: w.offset, length: w.length, sha256: hash.digest("hex"), ...(spec.seed !== undefined ? { seed: spec.seed } : {}) };
    },

    async exportImage(diskId, outPath, o) {
      const disk = diskOf(diskId);
      await mkdir(dirname(outPath), { recursive: true });
      let source: ExportResult["source"] = "current";
      await e.storage.withDisk(disk.id, async () => {
        let src: { path: string; format: ImageFormat };
        if (o.atBackup) {
          const backup = e.st.backups.find((b) => b.id === o.atBackup);
          const pit = backup?.pointInTime[disk.id];
          const frozen = backup?.frozen[disk.id];
          const openSnap = backup?.snapshotId && e.st.snapshots.some((s) => s.id === backup.snapshotId);
          if (frozen && openSnap) {
            const chain = e.storage.chainTo(disk, frozen);
            src = { path: chain[chain.length - 1]!.path, format: chain[chain.length - 1]!.format };
          } else if (pit) {
            src = { path: pit, format: "qcow2" };
          } else {
            throw new ControlError(404, `no point-in-time image of disk ${disk.alias} for backup ${o.atBackup}`);
          }
          source = "backup";
        } else if (o.atSnapshot) {
          const snap = e.st.snapshots.find((s) => s.id === o.atSnapshot);
          const sd = snap?.disks.find((x) => x.diskId === disk.id);
          if (!sd) throw new ControlError(404, `snapshot ${o.atSnapshot} has no volume of disk ${disk.alias}`);
          const chain = e.storage.chainTo(disk, sd.volumeId);
          src = { path: chain[chain.length - 1]!.path, format: chain[chain.length - 1]!.format };
          source = "snapshot";
        } else {
          const top = disk.volumes[disk.volumes.length - 1]!;
          src = { path: top.path, format: top.format };
        }
        await e.storage.exportTo(src, outPath, o.format);
      });
      const info = await qemuImg.info(outPath, { format: o.format });
      return { path: outPath, format: o.format, virtualSize: info.virtualSize, source };
    },

    async takeSnapshot(vmId, description) {
      const vm = vmOf(vmId);
      if (e.openBackups(vm.id).length) throw new ControlError(409, "the VM is during a backup operation");
      const disks = e.vmDisks(vm).filter((x) => x.status === "ok");
      const snap = await takeSnapshot(e, vm, { description: description ?? `lab snapshot ${randomUUID().slice(0, 8)}`, disks });
      snap.status = "ok";
      e.audit("USER_CREATE_SNAPSHOT_FINISHED_SUCCESS", `Snapshot '${snap.description}' creation for VM '${vm.name}' has been completed.`, {
        vmId: vm.id,
      });
      return { id: snap.id };
    },

    async restoreSnapshot(vmId, snapshotId) {
      const vm = vmOf(vmId);
      const snap = e.st.snapshots.find((s) => s.vmId === vm.id && s.id === snapshotId && s.type === "regular");
      if (!snap) throw new ControlError(404, `no snapshot ${snapshotId} of VM ${vm.name}`);
      if (e.openBackups(vm.id).length) throw new ControlError(409, "the VM is during a backup operation");
      await restoreSnapshot(e, vm, snap);
    },

    async invalidateCheckpoints(vmId) {
      const vm = vmOf(vmId);
      let n = 0;
      for (const c of e.st.checkpoints) {
        if (c.vmId === vm.id && c.state !== "invalid") {
          c.state = "invalid";
          n++;
        }
      }
      if (n) e.audit("VM_CHECKPOINT_INVALIDATED", `${n} checkpoint(s) of VM ${vm.name} were invalidated.`, { vmId: vm.id });
      return n;
    },

    async setVmStatus(vmId, status) {
      const vm = vmOf(vmId);
      if (status === vm.status) return;
      try {
        if (status === "up") startVm(e, vm);
        else stopVm(e, vm, "stop");
      } catch (err) {
        throw new ControlError(409, (err as Error).message);
      }
      if (status === "up") vm.status = "up";
    },

    rotateCa: () => d.rotateCa(),
    setBackupSupport(mode) {
      d.backupSupport.mode = mode;
    },
    revokeTokens: () => d.revokeTokens(),
    faults,

    events(o = {}) {
      const list = [...e.st.events].reverse();
      return (o.max !== undefined ? list.slice(0, o.max) : list).map(encodeEvent);
    },

    status() {
      return {
        engine: e.name,
        url: e.baseUrl,
        vms: e.st.vms.map((vm) => ({
          id: vm.id,
          name: vm.name,
          status: vm.status,
          disks: e.vmDisks(vm).map((x) => ({ id: x.id, alias: x.alias, format: x.format, status: x.status, volumes: x.volumes.length })),
        })),
        openBackups: e.st.backups.filter((b) => b.phase !== "succeeded" && b.phase !== "failed").map((b) => ({ id: b.id, vmId: b.vmId, phase: b.phase })),
        openTransfers: e.openTransfers().map((t) => ({ id: t.id, diskId: t.diskId, phase: t.phase, direction: t.direction })),
        checkpoints: e.st.checkpoints.length,
        events: e.st.events.length,
      };
    },

    backgroundErrors: () => [...e.backgroundErrors],
  };
}
