/**
 * zod models of the engine entities Ferry reads (ovirt-api.md §3-§10). Only the fields Ferry
 * uses are declared (others are dropped). Enumerations are kept as strings so a newer engine
 * with a new value still parses; the known values are exported for exhaustive switches.
 */
import { z } from "zod";
import { bool, collection, date, int, ref } from "./json.ts";

export const VM_STATUSES = [
  "unassigned",
  "down",
  "up",
  "powering_up",
  "paused",
  "migrating",
  "unknown",
  "not_responding",
  "wait_for_launch",
  "reboot_in_progress",
  "saving_state",
  "restoring_state",
  "suspended",
  "image_locked",
  "powering_down",
] as const;
export type VmStatus = (typeof VM_STATUSES)[number];

export const BACKUP_PHASES = ["initializing", "starting", "ready", "finalizing", "succeeded", "failed"] as const;
export type BackupPhase = (typeof BACKUP_PHASES)[number];

export const TRANSFER_PHASES = [
  "unknown",
  "initializing",
  "transferring",
  "resuming",
  "paused_system",
  "paused_user",
  "cancelled",
  "cancelled_system",
  "cancelled_user",
  "finalizing_success",
  "finalizing_failure",
  "finalizing_cleanup",
  "finished_success",
  "finished_failure",
  "finished_cleanup",
] as const;
export type TransferPhase = (typeof TRANSFER_PHASES)[number];

export const DISK_STATUSES = ["ok", "locked", "illegal"] as const;
export type DiskStatus = (typeof DISK_STATUSES)[number];

export const SNAPSHOT_STATUSES = ["ok", "locked", "in_preview"] as const;
export type SnapshotStatus = (typeof SNAPSHOT_STATUSES)[number];

export const EVENT_SEVERITIES = ["normal", "warning", "error", "alert"] as const;
export type EventSeverity = (typeof EVENT_SEVERITIES)[number];

const version = z.object({
  major: int.optional(),
  minor: int.optional(),
  build: int.optional(),
  revision: int.optional(),
  full_version: z.string().optional(),
});

export const ApiRoot = z.object({
  product_info: z
    .object({
      name: z.string().optional(),
      vendor: z.string().optional(),
      version: version.optional(),
      instance_id: z.string().optional(),
    })
    .optional(),
  time: date.optional(),
  authenticated_user: z.object({ id: z.string().optional(), href: z.string().optional() }).optional(),
});
export type ApiRoot = z.output<typeof ApiRoot>;

export const Disk = z.object({
  id: z.string(),
  href: z.string().optional(),
  image_id: z.string().optional(),
  alias: z.string().optional(),
  name: z.string().optional(),
  description: z.string().optional(),
  format: z.string().optional(),
  sparse: bool.optional(),
  qcow_version: z.string().optional(),
  backup: z.string().optional(),
  backup_mode: z.string().optional(),
  provisioned_size: int,
  actual_size: int.optional(),
  total_size: int.optional(),
  initial_size: int.optional(),
  status: z.string().optional(),
  storage_type: z.string().optional(),
  content_type: z.string().optional(),
  shareable: bool.optional(),
  wipe_after_delete: bool.optional(),
  propagate_errors: bool.optional(),
  storage_domains: collection("storage_domain", ref).optional(),
  snapshot: ref.optional(),
  disk_profile: ref.optional(),
});
export type Disk = z.output<typeof Disk>;

export const DiskAttachment = z.object({
  id: z.string(),
  href: z.string().optional(),
  active: bool.optional(),
  bootable: bool.optional(),
  interface: z.string().optional(),
  logical_name: z.string().optional(),
  pass_discard: bool.optional(),
  read_only: bool.optional(),
  uses_scsi_reservation: bool.optional(),
  /** A reference, or the whole disk when the engine inlined it (`follow=disk`). */
  disk: z.union([Disk, ref]),
  vm: ref.optional(),
});
export type DiskAttachment = z.output<typeof DiskAttachment>;

export const Vm = z.object({
  id: z.string(),
  href: z.string().optional(),
  name: z.string(),
  description: z.string().optional(),
  comment: z.string().optional(),
  status: z.string(),
  memory: int.optional(),
  stateless: bool.optional(),
  creation_time: date.optional(),
  stop_time: date.optional(),
  start_time: date.optional(),
  origin: z.string().optional(),
  cluster: ref.optional(),
  template: ref.optional(),
  host: ref.optional(),
  /** `cpu.topology`: sockets × cores × threads. */
  cpu: z
    .object({
      topology: z.object({ sockets: int.optional(), cores: int.optional(), threads: int.optional() }).optional(),
    })
    .optional(),
  /** `os.boot.devices`: the boot sequence, e.g. ["hd"] or ["network", "hd"]. */
  os: z
    .object({
      type: z.string().optional(),
      boot: z.object({ devices: collection("device", z.string()).optional() }).optional(),
    })
    .optional(),
  initialization: z
    .object({
      configuration: z.object({ type: z.string().optional(), data: z.string().optional() }).optional(),
    })
    .optional(),
  disk_attachments: collection("disk_attachment", DiskAttachment).optional(),
});
export type Vm = z.output<typeof Vm>;

export const Backup = z.object({
  id: z.string(),
  href: z.string().optional(),
  phase: z.string(),
  from_checkpoint_id: z.string().optional(),
  to_checkpoint_id: z.string().optional(),
  description: z.string().optional(),
  creation_date: date.optional(),
  modification_date: date.optional(),
  vm: ref.optional(),
  host: ref.optional(),
  snapshot: ref.optional(),
  disks: collection("disk", Disk.partial().extend({ id: z.string() })).optional(),
});
export type Backup = z.output<typeof Backup>;

export const Checkpoint = z.object({
  id: z.string(),
  href: z.string().optional(),
  parent_id: z.string().optional(),
  creation_date: date.optional(),
  state: z.string().optional(),
  description: z.string().optional(),
  vm: ref.optional(),
  disks: collection("disk", Disk.partial().extend({ id: z.string() })).optional(),
});
export type Checkpoint = z.output<typeof Checkpoint>;

export const ImageTransfer = z.object({
  id: z.string(),
  href: z.string().optional(),
  phase: z.string(),
  direction: z.string().optional(),
  format: z.string().optional(),
  shallow: bool.optional(),
  active: bool.optional(),
  transferred: int.optional(),
  inactivity_timeout: int.optional(),
  timeout_policy: z.string().optional(),
  /** Secret: the ticket id in the path is the only credential for the data. Never log it. */
  transfer_url: z.string().optional(),
  /** Secret, like transfer_url. */
  proxy_url: z.string().optional(),
  host: ref.optional(),
  /** The engine reports the disk as `image: {id: <disk id>}` (ImageTransferMapper). */
  image: ref.optional(),
  disk: ref.optional(),
  backup: ref.optional(),
  snapshot: ref.optional(),
});
export type ImageTransfer = z.output<typeof ImageTransfer>;

export const Snapshot = z.object({
  id: z.string(),
  href: z.string().optional(),
  description: z.string().optional(),
  date: date.optional(),
  snapshot_status: z.string().optional(),
  snapshot_type: z.string().optional(),
  persist_memorystate: bool.optional(),
  vm: ref.optional(),
});
export type Snapshot = z.output<typeof Snapshot>;

export const Event = z.object({
  id: z.string(),
  href: z.string().optional(),
  index: int.optional(),
  code: int.optional(),
  severity: z.string().optional(),
  time: date.optional(),
  description: z.string().optional(),
  origin: z.string().optional(),
  custom_id: int.optional(),
  flood_rate: int.optional(),
  correlation_id: z.string().optional(),
  vm: ref.optional(),
  host: ref.optional(),
  cluster: ref.optional(),
  storage_domain: ref.optional(),
  data_center: ref.optional(),
  user: ref.optional(),
});
export type Event = z.output<typeof Event>;

export const StorageDomain = z.object({
  id: z.string(),
  href: z.string().optional(),
  name: z.string(),
  description: z.string().optional(),
  type: z.string().optional(),
  status: z.string().optional(),
  external_status: z.string().optional(),
  available: int.optional(),
  used: int.optional(),
  committed: int.optional(),
  storage_format: z.string().optional(),
  storage: z.object({ type: z.string().optional() }).optional(),
  data_centers: collection("data_center", ref).optional(),
});
export type StorageDomain = z.output<typeof StorageDomain>;

export const Cluster = z.object({
  id: z.string(),
  href: z.string().optional(),
  name: z.string(),
  description: z.string().optional(),
  version: z.object({ major: int.optional(), minor: int.optional() }).optional(),
  data_center: ref.optional(),
});
export type Cluster = z.output<typeof Cluster>;

export const VnicProfile = z.object({
  id: z.string(),
  href: z.string().optional(),
  name: z.string(),
  description: z.string().optional(),
  network: ref.optional(),
  pass_through: z.object({ mode: z.string().optional() }).optional(),
  port_mirroring: bool.optional(),
});
export type VnicProfile = z.output<typeof VnicProfile>;

export const Network = z.object({
  id: z.string(),
  href: z.string().optional(),
  name: z.string(),
  description: z.string().optional(),
  data_center: ref.optional(),
});
export type Network = z.output<typeof Network>;

export const NIC_INTERFACES = ["virtio", "e1000", "rtl8139", "rtl8139_virtio", "spapr_vlan", "pci_passthrough"] as const;
export type NicInterface = (typeof NIC_INTERFACES)[number];

/** A VM NIC. No `vnic_profile` = the NIC is on no network ("empty"). */
export const Nic = z.object({
  id: z.string(),
  href: z.string().optional(),
  name: z.string(),
  interface: z.string().optional(),
  linked: bool.optional(),
  plugged: bool.optional(),
  synced: bool.optional(),
  mac: z.object({ address: z.string().optional() }).optional(),
  vnic_profile: ref.optional(),
  vm: ref.optional(),
});
export type Nic = z.output<typeof Nic>;

/** The SSO token answer; `exp` is a string of epoch ms (Long.MAX_VALUE when unbounded). */
export const SsoToken = z.object({
  access_token: z.string().min(1),
  token_type: z.string().optional(),
  scope: z.string().optional(),
  exp: int.optional(),
});

export const Vms = collection("vm", Vm);
export const Disks = collection("disk", Disk);
export const DiskAttachments = collection("disk_attachment", DiskAttachment);
export const Backups = collection("backup", Backup);
export const Checkpoints = collection("checkpoint", Checkpoint);
export const ImageTransfers = collection("image_transfer", ImageTransfer);
export const Snapshots = collection("snapshot", Snapshot);
export const Events = collection("event", Event);
export const StorageDomains = collection("storage_domain", StorageDomain);
export const Clusters = collection("cluster", Cluster);
export const VnicProfiles = collection("vnic_profile", VnicProfile);
export const Networks = collection("network", Network);
export const Nics = collection("nic", Nic);
