import { statSync } from "node:fs";
import type {
  Attachment,
  EngineState,
  LabBackup,
  LabCheckpoint,
  LabCluster,
  LabDisk,
  LabEvent,
  LabNetwork,
  LabNic,
  LabSnapshot,
  LabStorageDomain,
  LabTransfer,
  LabVm,
  LabVnicProfile,
  Volume,
} from "./model.ts";

/**
 * The engine's JSON conventions (ovirt-api.md §1.2): a bare object per entity, collections as
 * `{"<singular>": [...]}` and `{}` when empty, nested collections kept in their wrapper, integers
 * and booleans as strings, dates as epoch-ms numbers, unset attributes left out.
 */
export const API = "/ovirt-engine/api";

export const S = (n: number): string => String(Math.trunc(n));
export const B = (b: boolean): string => (b ? "true" : "false");

export function href(path: string): string {
  return `${API}${path}`;
}

export function ref(collection: string, id: string): { id: string; href: string } {
  return { id, href: href(`/${collection}/${id}`) };
}

/** A top-level collection: `{}` when empty (null lists are left out by the engine's Jackson setup). */
export function collection(key: string, list: unknown[]): Record<string, unknown> {
  return list.length ? { [key]: list } : {};
}

/** A nested collection keeps its wrapper object: `"disks": {"disk": [...]}`. */
export function nested(key: string, list: unknown[]): Record<string, unknown> {
  return list.length ? { [key]: list } : {};
}

export function links(base: string, rels: string[]): Array<{ href: string; rel: string }> {
  return rels.map((rel) => ({ href: href(`${base}/${rel}`), rel }));
}

export function actions(base: string, names: string[]): { link: Array<{ href: string; rel: string }> } {
  return { link: names.map((rel) => ({ href: href(`${base}/${rel}`), rel })) };
}

/** Drop undefined values so unset attributes are absent, not null. */
function clean<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

function allocated(path: string): number {
  try {
    return statSync(path).blocks * 512;
  } catch {
    return 0;
  }
}

export function volumeSize(v: Volume): number {
  return allocated(v.path);
}

// ----------------------------------------------------------------------------------------------

export function encodeVm(vm: LabVm, st: EngineState, o: { ovf?: string } = {}): Record<string, unknown> {
  const base = `/vms/${vm.id}`;
  return clean({
    id: vm.id,
    href: href(base),
    name: vm.name,
    description: vm.description || undefined,
    status: vm.status,
    type: "server",
    memory: S(vm.memory),
    stateless: B(false),
    origin: vm.origin ?? "ovirt",
    creation_time: vm.createdAt,
    cpu: { architecture: "x86_64", topology: { cores: S(vm.cpuCores), sockets: S(vm.cpuSockets), threads: S(vm.cpuThreads) } },
    os: { type: vm.osType, boot: { devices: { device: [...vm.bootDevices] } } },
    cluster: ref("clusters", vm.clusterId),
    template: ref("templates", st.ids.template),
    host: vm.status === "up" ? ref("hosts", st.ids.host) : undefined,
    initialization: o.ovf ? { configuration: { type: "ovf", data: o.ovf } } : undefined,
    actions: actions(base, [
      "start", "stop", "shutdown", "reboot", "suspend", "previewsnapshot", "commitsnapshot", "undosnapshot", "clone",
      "export", "freezefilesystems", "thawfilesystems", "migrate", "detach", "reset",
    ]),
    link: links(base, ["diskattachments", "backups", "checkpoints", "snapshots", "nics", "permissions", "statistics"]),
  });
}

export function encodeAttachment(vmId: string, a: Attachment, index: number): Record<string, unknown> {
  const letters = "abcdefghijklmnopqrstuvwxyz";
  const dev = a.interface === "virtio" ? `/dev/vd${letters[index % 26]}` : `/dev/sd${letters[index % 26]}`;
  return {
    id: a.diskId,
    href: href(`/vms/${vmId}/diskattachments/${a.diskId}`),
    active: B(a.active),
    bootable: B(a.bootable),
    interface: a.interface,
    logical_name: dev,
    pass_discard: B(a.passDiscard),
    read_only: B(a.readOnly),
    uses_scsi_reservation: B(false),
    disk: ref("disks", a.diskId),
    vm: ref("vms", vmId),
  };
}

export function encodeDisk(d: LabDisk, o: { href?: string; vmId?: string; extra?: Record<string, unknown> } = {}): Record<string, unknown> {
  const active = d.volumes[d.volumes.length - 1];
  const actual = active ? volumeSize(active) : 0;
  const total = d.volumes.reduce((n, v) => n + volumeSize(v), 0);
  const base = `/disks/${d.id}`;
  return clean({
    id: d.id,
    href: o.href ?? href(base),
    name: d.alias,
    alias: d.alias,
    description: d.description || undefined,
    format: d.format,
    qcow_version: d.format === "cow" ? d.qcowVersion : undefined,
    sparse: B(d.sparse),
    backup: d.backup,
    backup_mode: d.backupMode,
    provisioned_size: S(d.provisionedSize),
    actual_size: S(actual),
    total_size: S(total),
    status: d.status,
    storage_type: "image",
    content_type: d.contentType,
    shareable: B(d.shareable),
    wipe_after_delete: B(false),
    propagate_errors: B(false),
    image_id: active?.id,
    storage_domains: nested("storage_domain", [ref("storagedomains", d.storageDomainId)]),
    disk_profile: undefined,
    ...o.extra,
    actions: actions(base, ["copy", "export", "move", "reduce", "refreshlun", "sparsify"]),
    link: links(base, ["permissions", "disksnapshots", "statistics"]),
  });
}

export function encodeBackup(b: LabBackup): Record<string, unknown> {
  const base = `/vms/${b.vmId}/backups/${b.id}`;
  return clean({
    id: b.id,
    href: href(base),
    phase: b.phase,
    from_checkpoint_id: b.fromCheckpointId,
    to_checkpoint_id: b.toCheckpointId,
    description: b.description,
    creation_date: b.createdAt,
    modification_date: b.modifiedAt,
    vm: ref("vms", b.vmId),
    snapshot: b.snapshotId ? { id: b.snapshotId } : undefined,
    disks: nested(
      "disk",
      b.diskIds.map((id) => ref("disks", id)),
    ),
    actions: actions(base, ["finalize"]),
    link: links(base, ["disks"]),
  });
}

export function encodeCheckpoint(c: LabCheckpoint): Record<string, unknown> {
  const base = `/vms/${c.vmId}/checkpoints/${c.id}`;
  return clean({
    id: c.id,
    href: href(base),
    parent_id: c.parentId,
    creation_date: c.createdAt,
    state: c.state,
    description: c.description,
    vm: ref("vms", c.vmId),
    link: links(base, ["disks"]),
  });
}

export function encodeTransfer(t: LabTransfer, hostId: string): Record<string, unknown> {
  const base = `/imagetransfers/${t.id}`;
  return clean({
    id: t.id,
    href: href(base),
    phase: t.phase,
    direction: t.direction,
    format: t.format,
    shallow: B(t.shallow),
    active: B(t.active),
    transferred: S(t.transferred),
    inactivity_timeout: S(t.inactivityTimeout),
    timeout_policy: t.timeoutPolicy,
    transfer_url: t.transferUrl,
    proxy_url: t.proxyUrl,
    host: ref("hosts", hostId),
    // The engine's mapper reports the disk as `image` and echoes neither disk, backup nor snapshot.
    image: { id: t.diskId },
    actions: actions(base, ["cancel", "extend", "finalize", "pause", "resume"]),
  });
}

export function encodeSnapshot(s: LabSnapshot): Record<string, unknown> {
  const base = `/vms/${s.vmId}/snapshots/${s.id}`;
  return clean({
    id: s.id,
    href: href(base),
    description: s.description,
    date: s.date,
    snapshot_status: s.status,
    snapshot_type: s.type,
    persist_memorystate: B(s.persistMemory),
    vm: ref("vms", s.vmId),
    actions: actions(base, ["restore"]),
    link: links(base, ["disks", "nics"]),
  });
}

export function encodeEvent(e: LabEvent): Record<string, unknown> {
  return clean({
    id: String(e.id),
    href: href(`/events/${e.id}`),
    index: S(e.index),
    code: S(e.code),
    severity: e.severity,
    time: e.time,
    description: e.description,
    origin: e.origin,
    custom_id: e.customId !== undefined ? S(e.customId) : undefined,
    flood_rate: e.floodRate !== undefined ? S(e.floodRate) : undefined,
    correlation_id: e.correlationId,
    log_on_host: e.logOnHost !== undefined ? B(e.logOnHost) : undefined,
    custom_data: e.customData,
    vm: e.vmId ? ref("vms", e.vmId) : undefined,
    host: e.hostId ? ref("hosts", e.hostId) : undefined,
    user: e.userId ? ref("users", e.userId) : undefined,
    cluster: e.clusterId ? ref("clusters", e.clusterId) : undefined,
    data_center: e.dataCenterId ? ref("datacenters", e.dataCenterId) : undefined,
    storage_domain: e.storageDomainId ? ref("storagedomains", e.storageDomainId) : undefined,
    template: e.templateId ? ref("templates", e.templateId) : undefined,
  });
}

/**
 * The engine keeps a domain's free/used space in whole GB (storage_domain_dynamic, from vdsm's
 * stats) and the API mapper multiplies by 1024^3 (StorageDomainMapper), so `available`, `used`
 * and `committed` are always multiples of 1 GiB. Rounded down here [inferred: vdsm bytes / GB].
 */
export function wholeGiB(bytes: number): number {
  return Math.floor(Math.max(0, bytes) / GiB) * GiB;
}
const GiB = 1024 ** 3;

export function encodeStorageDomain(sd: LabStorageDomain, st: EngineState): Record<string, unknown> {
  const base = `/storagedomains/${sd.id}`;
  const committed = st.disks.filter((d) => d.storageDomainId === sd.id).reduce((n, d) => n + d.provisionedSize, 0);
  return {
    id: sd.id,
    href: href(base),
    name: sd.name,
    type: "data",
    external_status: "ok",
    master: B(sd.id === st.storageDomains[0]?.id),
    storage: { type: sd.storage, ...(sd.storage === "nfs" ? { address: "127.0.0.1", path: `/exports/${sd.name}` } : {}) },
    storage_format: "v5",
    backup: B(false),
    critical_space_action_blocker: S(sd.criticalSpaceGb),
    warning_low_space_indicator: "10",
    available: S(wholeGiB(sd.availableBytes)),
    used: S(wholeGiB(sd.usedBytes)),
    committed: S(wholeGiB(committed)),
    data_centers: nested("data_center", [ref("datacenters", st.ids.dataCenter)]),
    link: links(base, ["disks", "vms", "templates", "permissions", "disksnapshots"]),
  };
}

export function encodeCluster(c: LabCluster, st: EngineState): Record<string, unknown> {
  const base = `/clusters/${c.id}`;
  return clean({
    id: c.id,
    href: href(base),
    name: c.name,
    description: c.description || undefined,
    version: { major: "4", minor: "7" },
    cpu: { architecture: "x86_64", type: "Intel Nehalem Family" },
    data_center: ref("datacenters", st.ids.dataCenter),
    link: links(base, ["networks", "permissions", "glustervolumes", "affinitygroups", "cpuprofiles"]),
  });
}

export function encodeDataCenter(st: EngineState): Record<string, unknown> {
  const base = `/datacenters/${st.ids.dataCenter}`;
  return {
    id: st.ids.dataCenter,
    href: href(base),
    name: "Default",
    description: "The default Data Center",
    local: B(false),
    status: "up",
    storage_format: "v5",
    version: { major: "4", minor: "7" },
    link: links(base, ["clusters", "networks", "storagedomains", "permissions", "quotas"]),
  };
}

export function encodeHost(st: EngineState, name: string): Record<string, unknown> {
  const base = `/hosts/${st.ids.host}`;
  return {
    id: st.ids.host,
    href: href(base),
    name,
    address: "127.0.0.1",
    status: "up",
    type: "rhel",
    port: "54321",
    cluster: ref("clusters", st.ids.cluster),
    version: { major: "4", minor: "50", build: "0", revision: "0", full_version: "vdsm-4.50.5.1" },
    link: links(base, ["nics", "statistics", "storage", "permissions"]),
  };
}

export function encodeVnicProfile(p: LabVnicProfile): Record<string, unknown> {
  const base = `/vnicprofiles/${p.id}`;
  return {
    id: p.id,
    href: href(base),
    name: p.name,
    pass_through: { mode: "disabled" },
    port_mirroring: B(p.portMirroring),
    network: ref("networks", p.networkId),
    link: links(base, ["permissions"]),
  };
}

export function encodeNetwork(n: LabNetwork, st: EngineState): Record<string, unknown> {
  const base = `/networks/${n.id}`;
  return clean({
    id: n.id,
    href: href(base),
    name: n.name,
    description: n.description || undefined,
    data_center: ref("datacenters", st.ids.dataCenter),
    mtu: "0",
    stp: B(false),
    usages: { usage: ["vm"] },
    vdsm_name: n.name,
    link: links(base, ["networklabels", "permissions", "vnicprofiles"]),
  });
}

/** A VM NIC as NicMapper writes it: `vnic_profile` only when the NIC has one ("empty" otherwise). */
export function encodeNic(vmId: string, n: LabNic): Record<string, unknown> {
  const base = `/vms/${vmId}/nics/${n.id}`;
  return clean({
    id: n.id,
    href: href(base),
    name: n.name,
    interface: n.interface,
    linked: B(n.linked),
    plugged: B(n.plugged),
    synced: B(true),
    mac: { address: n.mac },
    vnic_profile: n.vnicProfileId ? ref("vnicprofiles", n.vnicProfileId) : undefined,
    vm: ref("vms", vmId),
    actions: actions(base, ["activate", "deactivate"]),
    link: links(base, ["networkfilterparameters", "reporteddevices", "statistics"]),
  });
}
