import { createHash, randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { qemuImg, type ImageFormat } from "../adapters/qemu/mod.ts";
import type { BackupSupport } from "./engine/resources/backups.ts";
import type { ImageioFaults } from "./imageio/mod.ts";
import type { Engine } from "./engine/engine.ts";
import { encodeEvent, wholeGiB } from "./engine/json.ts";
import {
  BOOT_DEVICES,
  NIC_INTERFACES,
  type BootDevice,
  type ContentType,
  type DiskBackup,
  type DiskFormat,
  type LabDisk,
  type LabVm,
  type NicInterface,
  type QcowVersion,
  type VmStatus,
} from "./engine/model.ts";
import { attachDisk } from "./engine/resources/disk-attachments.ts";
import { createDisk, parseDiskSpec, type DiskSpec } from "./engine/resources/disks.ts";
import { addNic } from "./engine/resources/nics.ts";
import { allocationOf, fits, validateSpace } from "./engine/space.ts";
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
  /** Storage domain name: "data" (NFS, the default), "data-block" (iSCSI) or one added with addStorageDomain. */
  storageDomain?: string;
}

export interface LabNicInput {
  name: string;
  /** Network name; the NIC gets the network's profile of the same name (else its first profile). */
  network: string;
  /** A profile of that network by name, instead of the default one. */
  vnicProfile?: string;
  /** Default virtio. */
  interface?: NicInterface;
  /** Default: the next address of the engine's MAC pool. */
  mac?: string;
}

export interface LabVmInput {
  name: string;
  disks: LabDiskInput[];
  status?: "up" | "down";
  memory?: number;
  /** Default 1 socket × 1 core × 1 thread. */
  cpu?: { sockets?: number; cores?: number; threads?: number };
  /** The boot sequence, e.g. ["network", "hd"]. Default ["hd"]. */
  bootDevices?: BootDevice[];
  /** Default: one NIC nic1 on ovirtmgmt. `[]` for none. */
  nics?: LabNicInput[];
  /** Cluster name, default "Default". */
  cluster?: string;
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
  /** Fail the next transfer (of one direction, and of one disk, if given) when it reaches `phase`. */
  failNextTransfer(phase: FaultPhase, direction?: "upload" | "download", diskId?: string): void;
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
  /** The next start of this VM (name or id; any VM if omitted) ends `down` with VM_DOWN_ERROR. */
  failNextBoot(vm?: string): void;
  /** imageio moves image data at about this many bytes/s (0: full speed), so a transfer can be caught mid-way. */
  throttleImageio(bytesPerSecond: number): void;
  /** imageio holds the next data piece this long (longer than a client's idle timeout: a stalled daemon). */
  stallImageio(ms: number): void;
  /** Disarm everything (imageio's faults too). */
  clear(): void;
}

/**
 * A CA rotation: `replace` (default) makes a new CA key (nothing signed by the old CA verifies
 * with the new one: a client must be told to trust it); `renew` keeps the CA key and subject with
 * a new validity, as engine-setup renews an engine CA (the new CA chains to the old one). `days`:
 * validity of the new CA and certificates (default 365).
 */
export interface RotateCaOptions {
  readonly mode?: "replace" | "renew" | undefined;
  readonly days?: number | undefined;
}

export interface RotatedCa {
  /** The engine certificate's SHA-256 fingerprint (what TLS presents). */
  readonly fingerprint256: string;
  /** The engine certificate's expiry. */
  readonly notAfter: string;
  /** The new CA's SHA-256 fingerprint (what pki-resource serves). */
  readonly caFingerprint256: string;
  readonly mode: "replace" | "renew";
}

export interface LabControl {
  createVm(o: LabVmInput): Promise<{
    id: string;
    name: string;
    disks: LabDiskRef[];
    nics: Array<{ id: string; name: string; mac: string; vnicProfileId?: string }>;
  }>;
  addDisk(vmId: string, disk: LabDiskInput): Promise<LabDiskRef>;
  writeGuestData(diskId: string, w: WriteSpec): Promise<WriteResult>;
  exportImage(diskId: string, outPath: string, o: ExportOptions): Promise<ExportResult>;
  takeSnapshot(vmId: string, description?: string): Promise<{ id: string }>;
  restoreSnapshot(vmId: string, snapshotId: string): Promise<void>;
  invalidateCheckpoints(vmId: string): Promise<number>;
  setVmStatus(vmId: string, status: "up" | "down"): Promise<void>;
  rotateCa(o?: RotateCaOptions): Promise<RotatedCa>;
  setBackupSupport(mode: BackupSupport): void;
  /** A logical network (attached to every cluster) with vNIC profiles; default one profile of the same name. */
  addNetwork(o: { name: string; vnicProfiles?: string[] }): { id: string; name: string; vnicProfiles: Array<{ id: string; name: string }> };
  addCluster(o: { name: string }): { id: string; name: string };
  addStorageDomain(o: { name: string; availableBytes: number; storage?: "nfs" | "iscsi" }): { id: string; name: string };
  /** Set a storage domain's free space (bytes; the API shows it in whole GiB). */
  setStorageAvailable(sdName: string, bytes: number): void;
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
  vms: Array<{
    id: string;
    name: string;
    status: VmStatus;
    disks: Array<{ id: string; alias: string; format: string; status: string; volumes: number }>;
    nics: Array<{ id: string; name: string; mac: string; network?: string; vnicProfile?: string }>;
  }>;
  clusters: Array<{ id: string; name: string }>;
  networks: Array<{ id: string; name: string; vnicProfiles: string[] }>;
  storageDomains: Array<{ id: string; name: string; storage: string; availableBytes: number; usedBytes: number; available: number }>;
  openBackups: Array<{ id: string; vmId: string; phase: string }>;
  openTransfers: Array<{ id: string; diskId: string; phase: string; direction: string }>;
  checkpoints: number;
  events: number;
}

export interface ControlDeps {
  engine: Engine;
  transfers: Transfers;
  rotateCa(o?: RotateCaOptions): Promise<RotatedCa>;
  revokeTokens(): number;
  backupSupport: { mode: BackupSupport };
  /** imageio's own faults object, if the daemon has one. */
  imageioFaults(): ImageioFaults | undefined;
}

export class ControlError extends Error {
  readonly status: 400 | 404 | 409;
  constructor(
    status: 400 | 404 | 409,
    message: string,
  ) {
    super(message);
    this.status = status;
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
    const sd = e.st.storageDomains.find((s) => s.name === sdName || s.id === sdName);
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

  /** The space the new disks take must be there (the engine's validation is in parseDiskSpec). */
  function checkRoom(specs: DiskSpec[]): void {
    for (const sd of new Set(specs.map((x) => x.storageDomain))) {
      const mine = specs.filter((x) => x.storageDomain === sd);
      try {
        validateSpace(sd, mine);
      } catch {
        throw new ControlError(409, `not enough free space on storage domain ${sd.name}`);
      }
      const need = mine.reduce((n, x) => n + allocationOf(x, sd), 0);
      if (!fits(sd, need)) throw new ControlError(409, `not enough free space on storage domain ${sd.name} (${need} bytes needed, ${sd.availableBytes} free)`);
    }
  }

  function nicSpecFor(n: LabNicInput): { name: string; interface?: NicInterface; mac?: string; vnicProfileId: string } {
    if (!n?.name) throw new ControlError(400, "nics: every NIC needs a name");
    const net = e.st.networks.find((x) => x.name === n.network);
    if (!net) throw new ControlError(400, `no network ${n.network} (have ${e.st.networks.map((x) => x.name).join(", ")})`);
    const onNet = e.st.vnicProfiles.filter((p) => p.networkId === net.id);
    const profile = n.vnicProfile ? onNet.find((p) => p.name === n.vnicProfile) : (onNet.find((p) => p.name === net.name) ?? onNet[0]);
    if (!profile) throw new ControlError(400, `network ${net.name} has no vNIC profile ${n.vnicProfile ?? ""}`.trim());
    if (n.interface && !(NIC_INTERFACES as readonly string[]).includes(n.interface)) {
      throw new ControlError(400, `NIC ${n.name}: interface ${n.interface}: expected ${NIC_INTERFACES.join(", ")}`);
    }
    return { name: n.name, ...(n.interface ? { interface: n.interface } : {}), ...(n.mac ? { mac: n.mac } : {}), vnicProfileId: profile.id };
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
    failNextTransfer(phase, direction, diskId) {
      e.faults.failTransfer.push({ phase, ...(direction ? { direction } : {}), ...(diskId ? { diskId } : {}) });
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
    failNextBoot(vm) {
      if (vm !== undefined) vmOf(vm);
      e.faults.failBoot.push(vm !== undefined ? { vm } : {});
    },
    throttleImageio(bytesPerSecond) {
      const f = d.imageioFaults();
      if (!f) throw new ControlError(409, "the imageio daemon has no faults");
      f.throttle(bytesPerSecond);
    },
    stallImageio(ms) {
      const f = d.imageioFaults();
      if (!f) throw new ControlError(409, "the imageio daemon has no faults");
      f.stall(ms);
    },
    clear() {
      d.imageioFaults()?.clear();
      e.faults.failTransfer = [];
      e.faults.httpErrors = [];
      e.faults.stallFinalize = [];
      e.faults.noRenew.clear();
      e.faults.failBoot = [];
    },
  };

  return {
    async createVm(o) {
      if (e.st.vms.some((v) => v.name === o.name)) throw new ControlError(409, `a VM named ${o.name} exists`);
      const cluster = e.st.clusters.find((c) => c.name === (o.cluster ?? "Default") || c.id === o.cluster);
      if (!cluster) throw new ControlError(400, `no cluster ${o.cluster} (have ${e.st.clusters.map((c) => c.name).join(", ")})`);
      for (const b of o.bootDevices ?? []) {
        if (!(BOOT_DEVICES as readonly string[]).includes(b)) throw new ControlError(400, `boot device ${b}: expected ${BOOT_DEVICES.join(", ")}`);
      }
      for (const [k, v] of Object.entries(o.cpu ?? {})) {
        if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new ControlError(400, `cpu.${k}: expected a positive integer`);
      }
      // Every disk and NIC is validated before the VM exists: bad input must not leave half a VM behind.
      const specs = o.disks.map((d, i) => diskSpecFor(o.name, d, i));
      checkRoom(specs);
      const nics = (o.nics ?? [{ name: "nic1", network: "ovirtmgmt" }]).map(nicSpecFor);
      const vm = newVm(e, {
        name: o.name,
        clusterId: cluster.id,
        ...(o.memory ? { memory: o.memory } : {}),
        ...(o.cpu ? { cpu: o.cpu } : {}),
        ...(o.bootDevices ? { bootDevices: o.bootDevices } : {}),
      });
      const disks: LabDiskRef[] = [];
      for (const [i, d] of o.disks.entries()) disks.push(await addDiskTo(vm, d, i, specs[i]));
      const created = nics.map((n) => addNic(e, vm, n));
      if (o.status === "up") vm.status = "up";
      e.save();
      return {
        id: vm.id,
        name: vm.name,
        disks,
        nics: created.map((n) => ({ id: n.id, name: n.name, mac: n.mac, ...(n.vnicProfileId ? { vnicProfileId: n.vnicProfileId } : {}) })),
      };
    },

    async addDisk(vmId, disk) {
      const vm = vmOf(vmId);
      const spec = diskSpecFor(vm.name, disk, vm.attachments.length);
      checkRoom([spec]);
      return addDiskTo(vm, disk, vm.attachments.length, spec);
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
        if (status === "up") startVm(e, vm, undefined, { ignoreFaults: true });
        else stopVm(e, vm, "stop");
      } catch (err) {
        throw new ControlError(409, (err as Error).message);
      }
      if (status === "up") vm.status = "up";
    },

    rotateCa: (o) => d.rotateCa(o),
    setBackupSupport(mode) {
      d.backupSupport.mode = mode;
    },

    addNetwork(o) {
      if (!o.name) throw new ControlError(400, "name: required");
      if (e.st.networks.some((n) => n.name === o.name)) throw new ControlError(409, `a network named ${o.name} exists`);
      const names = o.vnicProfiles ?? [o.name];
      if (new Set(names).size !== names.length || names.some((n) => !n)) throw new ControlError(400, "vnicProfiles: names must be non-empty and distinct");
      const net = { id: randomUUID(), name: o.name, description: "" };
      e.st.networks.push(net);
      const profiles = names.map((name) => ({ id: randomUUID(), name, networkId: net.id, portMirroring: false }));
      e.st.vnicProfiles.push(...profiles);
      e.save();
      return { id: net.id, name: net.name, vnicProfiles: profiles.map((p) => ({ id: p.id, name: p.name })) };
    },

    addCluster(o) {
      if (!o.name) throw new ControlError(400, "name: required");
      if (e.st.clusters.some((c) => c.name === o.name)) throw new ControlError(409, `a cluster named ${o.name} exists`);
      const c = { id: randomUUID(), name: o.name, description: "" };
      e.st.clusters.push(c);
      e.save();
      return { id: c.id, name: c.name };
    },

    addStorageDomain(o) {
      if (!o.name) throw new ControlError(400, "name: required");
      if (!Number.isSafeInteger(o.availableBytes) || o.availableBytes < 0) throw new ControlError(400, "availableBytes: expected a non-negative integer");
      if (o.storage !== undefined && o.storage !== "nfs" && o.storage !== "iscsi") throw new ControlError(400, "storage: expected nfs or iscsi");
      if (e.st.storageDomains.some((x) => x.name === o.name)) throw new ControlError(409, `a storage domain named ${o.name} exists`);
      const sd = { id: randomUUID(), name: o.name, storage: o.storage ?? "nfs", availableBytes: o.availableBytes, usedBytes: 0, criticalSpaceGb: 5 } as const;
      e.st.storageDomains.push({ ...sd });
      e.save();
      return { id: sd.id, name: sd.name };
    },

    setStorageAvailable(sdName, bytes) {
      const sd = e.st.storageDomains.find((x) => x.name === sdName || x.id === sdName);
      if (!sd) throw new ControlError(404, `no storage domain ${sdName}`);
      if (!Number.isSafeInteger(bytes) || bytes < 0) throw new ControlError(400, "bytes: expected a non-negative integer");
      sd.availableBytes = bytes;
      e.save();
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
          nics: vm.nics.map((n) => {
            const p = e.st.vnicProfiles.find((x) => x.id === n.vnicProfileId);
            const net = p && e.st.networks.find((x) => x.id === p.networkId);
            return { id: n.id, name: n.name, mac: n.mac, ...(net ? { network: net.name } : {}), ...(p ? { vnicProfile: p.name } : {}) };
          }),
        })),
        clusters: e.st.clusters.map((c) => ({ id: c.id, name: c.name })),
        networks: e.st.networks.map((n) => ({
          id: n.id,
          name: n.name,
          vnicProfiles: e.st.vnicProfiles.filter((p) => p.networkId === n.id).map((p) => p.name),
        })),
        storageDomains: e.st.storageDomains.map((sd) => ({
          id: sd.id,
          name: sd.name,
          storage: sd.storage,
          availableBytes: sd.availableBytes,
          usedBytes: sd.usedBytes,
          available: wholeGiB(sd.availableBytes),
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
