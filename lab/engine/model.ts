/**
 * The lab engine's entities. Plain data (persisted to state.json); behaviour lives in the
 * resource modules and in storage.ts (the qcow2 files behind the disks).
 */

export const VM_STATUSES = [
  "unassigned", "down", "up", "powering_up", "paused", "migrating", "unknown", "not_responding", "wait_for_launch",
  "reboot_in_progress", "saving_state", "restoring_state", "suspended", "image_locked", "powering_down",
] as const;
export type VmStatus = (typeof VM_STATUSES)[number];

export const DISK_FORMATS = ["cow", "raw"] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];
export const QCOW_VERSIONS = ["qcow2_v2", "qcow2_v3"] as const;
export type QcowVersion = (typeof QCOW_VERSIONS)[number];
export const DISK_BACKUPS = ["incremental", "none"] as const;
export type DiskBackup = (typeof DISK_BACKUPS)[number];
export const CONTENT_TYPES = [
  "data", "ovf_store", "memory_dump_volume", "memory_metadata_volume", "iso", "hosted_engine", "hosted_engine_sanlock",
  "hosted_engine_metadata", "hosted_engine_configuration", "backup_scratch",
] as const;
export type ContentType = (typeof CONTENT_TYPES)[number];
export const DISK_INTERFACES = ["ide", "virtio_scsi", "virtio", "spapr_vscsi", "sata"] as const;
export type DiskInterface = (typeof DISK_INTERFACES)[number];

export type DiskStatus = "ok" | "locked" | "illegal";

/** NicInterface of the API model; the OVF writes VmInterfaceType values (rasd:ResourceSubType). */
export const NIC_INTERFACES = ["e1000", "pci_passthrough", "rtl8139", "rtl8139_virtio", "spapr_vlan", "virtio"] as const;
export type NicInterface = (typeof NIC_INTERFACES)[number];

/** `os.boot.devices` (BootDevice): hd = C, cdrom = D, network = N in the engine's BootSequence. */
export const BOOT_DEVICES = ["hd", "cdrom", "network"] as const;
export type BootDevice = (typeof BOOT_DEVICES)[number];

export const BACKUP_PHASES = ["initializing", "starting", "ready", "finalizing", "succeeded", "failed"] as const;
export type BackupPhase = (typeof BACKUP_PHASES)[number];

export const TRANSFER_PHASES = [
  "unknown", "initializing", "transferring", "resuming", "paused_system", "paused_user", "cancelled",
  "cancelled_system", "cancelled_user", "finalizing_success", "finalizing_failure", "finalizing_cleanup",
  "finished_success", "finished_failure", "finished_cleanup",
] as const;
export type TransferPhase = (typeof TRANSFER_PHASES)[number];
export const TIMEOUT_POLICIES = ["legacy", "pause", "cancel"] as const;
export type TimeoutPolicy = (typeof TIMEOUT_POLICIES)[number];

export const EVENT_SEVERITIES = ["normal", "warning", "error", "alert"] as const;
export type EventSeverity = (typeof EVENT_SEVERITIES)[number];

export interface Volume {
  /** The volume id (`image_id`). */
  id: string;
  path: string;
  format: "qcow2" | "raw";
}

export interface LabDisk {
  id: string;
  alias: string;
  description: string;
  format: DiskFormat;
  qcowVersion: QcowVersion;
  sparse: boolean;
  backup: DiskBackup;
  provisionedSize: number;
  contentType: ContentType;
  shareable: boolean;
  storageDomainId: string;
  status: DiskStatus;
  /** Base first, active volume last. */
  volumes: Volume[];
  createdAt: number;
  /** Set only while a backup that includes the disk is running. */
  backupMode?: "full" | "incremental";
  /** The open transfer using this disk. */
  transferId?: string;
  /** Why the disk is locked (internal; never serialized to the API). */
  lockReason?: string;
  /** Bytes taken from the storage domain at creation, given back on removal (internal). */
  allocatedBytes?: number;
}

export interface Attachment {
  diskId: string;
  interface: DiskInterface;
  bootable: boolean;
  active: boolean;
  passDiscard: boolean;
  readOnly: boolean;
}

export interface LabNic {
  id: string;
  name: string;
  interface: NicInterface;
  mac: string;
  /** No profile = the NIC is on no network ("empty" in the Admin Portal). */
  vnicProfileId?: string;
  linked: boolean;
  plugged: boolean;
}

export interface LabVm {
  id: string;
  name: string;
  description: string;
  status: VmStatus;
  clusterId: string;
  memory: number;
  /** CPU topology: sockets × cores per socket × threads per core. */
  cpuSockets: number;
  cpuCores: number;
  cpuThreads: number;
  /** The VM's boot sequence (default_boot_sequence), e.g. ["hd"] or ["network", "hd"]. */
  bootDevices: BootDevice[];
  osType: string;
  createdAt: number;
  attachments: Attachment[];
  nics: LabNic[];
  /** Id of the synthetic "Active VM" snapshot. */
  activeSnapshotId: string;
  /** Extra OVF bits from an import, kept so a re-export looks like the original. */
  origin?: string;
}

export interface SnapshotDisk {
  diskId: string;
  /** The volume frozen by this snapshot (the snapshot disk's `image_id`). */
  volumeId: string;
}

export interface LabSnapshot {
  id: string;
  vmId: string;
  description: string;
  date: number;
  status: "ok" | "locked" | "in_preview";
  type: "regular" | "active" | "stateless" | "preview";
  persistMemory: boolean;
  disks: SnapshotDisk[];
  /** Set for the auto snapshot of a hybrid backup. */
  backupId?: string;
  /** The VM's OVF at snapshot time. */
  ovf?: string;
}

export interface LabCheckpoint {
  id: string;
  vmId: string;
  parentId?: string;
  createdAt: number;
  state: "created" | "invalid";
  description?: string;
  diskIds: string[];
}

export interface LabBackup {
  id: string;
  vmId: string;
  phase: BackupPhase;
  fromCheckpointId?: string;
  /** Set once the backup is ready (§5.2). */
  toCheckpointId?: string;
  /** Generated at start; becomes toCheckpointId at ready. */
  newCheckpointId: string;
  description?: string;
  createdAt: number;
  modifiedAt: number;
  diskIds: string[];
  diskModes: Record<string, "full" | "incremental">;
  /** Disks that get a bitmap for the new checkpoint (qcow2 v3, incremental enabled). */
  checkpointDiskIds: string[];
  snapshotId?: string;
  /** Frozen (point-in-time) volume per disk while the backup is open. */
  frozen: Record<string, string>;
  /** Copies of the point-in-time images, kept for exportImage(atBackup) after finalize. */
  pointInTime: Record<string, string>;
  finishedAt?: number;
}

export interface LabTransfer {
  id: string;
  direction: "upload" | "download";
  /** The requested format, or the disk's own. */
  format: DiskFormat;
  /** raw → NBD backend (guest data); cow → FILE backend (volume bytes). */
  backend: "nbd" | "file";
  shallow: boolean;
  phase: TransferPhase;
  diskId: string;
  backupId?: string;
  /** Volume id for a snapshot transfer. */
  volumeId?: string;
  inactivityTimeout: number;
  timeoutPolicy: TimeoutPolicy;
  ticketId?: string;
  transferUrl?: string;
  proxyUrl?: string;
  active: boolean;
  transferred: number;
  createdAt: number;
  updatedAt: number;
  finishedAt?: number;
  /** Why the system failed it (for the audit log). */
  failure?: string;
  correlationId?: string;
}

export interface LabEvent {
  id: number;
  index: number;
  code: number;
  severity: EventSeverity;
  time: number;
  description: string;
  origin: string;
  customId?: number;
  floodRate?: number;
  correlationId?: string;
  logOnHost?: boolean;
  customData?: string;
  vmId?: string;
  hostId?: string;
  userId?: string;
  clusterId?: string;
  dataCenterId?: string;
  storageDomainId?: string;
  templateId?: string;
}

export interface LabStorageDomain {
  id: string;
  name: string;
  /** nfs = file storage, iscsi = block storage (the disk-configuration matrix depends on it). */
  storage: "nfs" | "iscsi";
  /** Free bytes (the engine reports it in whole GiB). Disk creation takes from it, removal gives back. */
  availableBytes: number;
  /** Bytes accounted to the disks on the domain. */
  usedBytes: number;
  /** CriticalSpaceActionBlocker (GiB): below this much free space every new disk is refused. Default 5. */
  criticalSpaceGb: number;
}

export interface LabCluster {
  id: string;
  name: string;
  description: string;
}

/** A logical network of the data center; the lab attaches every network to every cluster. */
export interface LabNetwork {
  id: string;
  name: string;
  description: string;
}

export interface LabVnicProfile {
  id: string;
  name: string;
  networkId: string;
  portMirroring: boolean;
}

export interface EngineIds {
  dataCenter: string;
  cluster: string;
  host: string;
  network: string;
  vnicProfile: string;
  template: string;
  instance: string;
  adminUser: string;
}

export interface EngineState {
  /** The defaults (cluster "Default", network and profile "ovirtmgmt") are also in these lists. */
  ids: EngineIds;
  clusters: LabCluster[];
  networks: LabNetwork[];
  vnicProfiles: LabVnicProfile[];
  /** MAC pool: `prefix` (4 bytes, e.g. "56:6f:1a:2b") + a 2-byte counter. */
  macPool: { prefix: string; next: number };
  storageDomains: LabStorageDomain[];
  vms: LabVm[];
  disks: LabDisk[];
  snapshots: LabSnapshot[];
  checkpoints: LabCheckpoint[];
  backups: LabBackup[];
  transfers: LabTransfer[];
  events: LabEvent[];
  nextEventId: number;
}
