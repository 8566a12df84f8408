import type { Attachment, BootDevice, DiskInterface, EngineState, LabDisk, LabVm, NicInterface } from "./model.ts";

/**
 * A plausible oVirt OVF for `all_content=true` (vm.initialization.configuration.data), and the
 * reader used by `POST /vms` with `initialization.configuration` (ImportVmFromConfiguration).
 * Only what the lab needs round-trips: VM id, name, description, memory, CPU topology, OS type,
 * boot sequence, the disks (by disk id, `fileRef="<disk id>/<image id>"`) with their attachment
 * properties and boot order, and the NICs.
 *
 * Layout from oVirt/ovirt-engine `OvfWriter` / `OvfOvirtWriter` (utils/ovf): NetworkSection with
 * the NICs' distinct network names; CPU Item (ResourceType 3: num_of_sockets, cpu_per_socket,
 * threads_per_cpu, VirtualQuantity = sockets × cores × threads); memory Item (4, MegaBytes); a
 * disk Item (17) and a NIC Item (10) per device, each followed by the managed device info (Type,
 * Device, rasd:Address, BootOrder, IsPlugged, IsReadOnly, Alias). A NIC Item carries
 * rasd:Caption "Ethernet adapter on <network>", rasd:InstanceId = NIC id, rasd:OtherResourceType =
 * vNIC profile name, rasd:ResourceSubType = VmInterfaceType value (0 rtl8139_pv, 1 rtl8139,
 * 2 e1000, 3 pv = virtio, 4 spapr-vlan; 5 pci_passthrough from NicMapper), rasd:Connection =
 * network name, rasd:Linked, rasd:Name, rasd:ElementName, rasd:MACAddress, rasd:speed.
 * `default_boot_sequence` is the BootSequence value (C=hd, D=cdrom, N=network: C 0, DC 1, N 2,
 * CDN 3, CND 4, DCN 5, DNC 6, NCD 7, NDC 8, CD 9, D 10, CN 11, DN 12, NC 13, ND 14).
 * How device BootOrder numbers follow the sequence (bootable disks for hd, plugged NICs for
 * network, in that order, counting from 1) is [inferred] from VmDeviceCommonUtils.
 */

const esc = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;").replaceAll("'", "&apos;");
const unesc = (s: string) =>
  s.replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&quot;", '"').replaceAll("&apos;", "'").replaceAll("&amp;", "&");

function ovfDate(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}/${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

const IFACE_OVF: Record<DiskInterface, string> = {
  ide: "IDE",
  virtio_scsi: "VirtIO_SCSI",
  virtio: "VirtIO",
  spapr_vscsi: "SPAPR_VSCSI",
  sata: "SATA",
};
const GiB = 1024 * 1024 * 1024;

/** rasd:ResourceSubType of a NIC (VmInterfaceType value). */
export const NIC_OVF_TYPE: Record<NicInterface, number> = {
  rtl8139_virtio: 0,
  rtl8139: 1,
  e1000: 2,
  virtio: 3,
  spapr_vlan: 4,
  pci_passthrough: 5,
};
const NIC_SPEED: Record<NicInterface, number> = { rtl8139_virtio: 1000, rtl8139: 100, e1000: 1000, virtio: 1000, spapr_vlan: 1000, pci_passthrough: 1000 };

const BOOT_LETTER: Record<BootDevice, string> = { hd: "C", cdrom: "D", network: "N" };
const BOOT_SEQUENCE: Record<string, number> = {
  C: 0, DC: 1, N: 2, CDN: 3, CND: 4, DCN: 5, DNC: 6, NCD: 7, NDC: 8, CD: 9, D: 10, CN: 11, DN: 12, NC: 13, ND: 14,
};

export function bootSequenceValue(devices: readonly BootDevice[]): number {
  return BOOT_SEQUENCE[devices.map((d) => BOOT_LETTER[d]).join("")] ?? 0;
}

export function bootDevicesOf(value: number): BootDevice[] {
  const letters = Object.entries(BOOT_SEQUENCE).find(([, v]) => v === value)?.[0] ?? "C";
  return [...letters].map((l) => (l === "C" ? "hd" : l === "D" ? "cdrom" : "network"));
}

/** Device boot order numbers from the VM's boot sequence [inferred, see the header]. */
function deviceBootOrders(vm: LabVm, disks: Array<{ disk: LabDisk; att: Attachment }>): Map<string, number> {
  const order = new Map<string, number>();
  let next = 1;
  for (const dev of vm.bootDevices) {
    if (dev === "hd") for (const { att } of disks) if (att.bootable && att.active) order.set(att.diskId, next++);
    if (dev === "network") for (const nic of vm.nics) if (nic.plugged) order.set(nic.id, next++);
  }
  return order;
}

export function buildOvf(vm: LabVm, disks: Array<{ disk: LabDisk; att: Attachment }>, st: EngineState): string {
  const now = ovfDate(Date.now());
  const created = ovfDate(vm.createdAt);
  const refs: string[] = [];
  const diskEls: string[] = [];
  const items: string[] = [];
  const boot = deviceBootOrders(vm, disks);
  disks.forEach(({ disk, att }) => {
    const image = disk.volumes[disk.volumes.length - 1]!.id;
    const fileRef = `${disk.id}/${image}`;
    refs.push(
      `<File ovf:href="${fileRef}" ovf:id="${image}" ovf:size="${disk.provisionedSize}" ovf:description="${esc(disk.description)}" ovf:disk_storage_type="IMAGE" ovf:cinder_volume_type=""></File>`,
    );
    // OvfOvirtWriter.writeDisk: sizes in whole GB (bytes / 1024^3, rounded down); format URL per volume format.
    const formatUrl = disk.format === "cow" ? "http://www.gnome.org/~markmc/qcow-image-format.html" : "http://www.vmware.com/specifications/vmdk.html#sparse";
    diskEls.push(
      `<Disk ovf:diskId="${image}" ovf:size="${Math.floor(disk.provisionedSize / GiB)}" ovf:actual_size="0" ovf:vm_snapshot_id="${vm.activeSnapshotId}" ovf:parentRef="" ovf:fileRef="${fileRef}" ovf:format="${formatUrl}" ovf:volume-format="${disk.format === "cow" ? "COW" : "RAW"}" ovf:volume-type="${disk.sparse ? "Sparse" : "Preallocated"}" ovf:disk-interface="${IFACE_OVF[att.interface]}" ovf:read-only="${att.readOnly}" ovf:shareable="${disk.shareable}" ovf:boot="${att.bootable}" ovf:pass-discard="${att.passDiscard}" ovf:incremental-backup="${disk.backup === "incremental"}" ovf:disk-alias="${esc(disk.alias)}" ovf:disk-description="${esc(disk.description)}" ovf:wipe-after-delete="false" ovf:disk_storage_type="IMAGE" ovf:cinder_volume_type="" ovf:disk-content-type="${disk.contentType.toUpperCase()}"></Disk>`,
    );
    items.push(
      `<Item><rasd:Caption>${esc(disk.alias)}</rasd:Caption><rasd:InstanceId>${image}</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>${fileRef}</rasd:HostResource><rasd:Parent>00000000-0000-0000-0000-000000000000</rasd:Parent><rasd:Template>00000000-0000-0000-0000-000000000000</rasd:Template><rasd:ApplicationList></rasd:ApplicationList><rasd:StorageId>${disk.storageDomainId}</rasd:StorageId><rasd:StoragePoolId>${st.ids.dataCenter}</rasd:StoragePoolId><rasd:CreationDate>${ovfDate(disk.createdAt)}</rasd:CreationDate><rasd:LastModified>${now}</rasd:LastModified><rasd:last_modified_date>${now}</rasd:last_modified_date><Type>disk</Type><Device>disk</Device><rasd:Address></rasd:Address><BootOrder>${boot.get(att.diskId) ?? 0}</BootOrder><IsPlugged>${att.active}</IsPlugged><IsReadOnly>${att.readOnly}</IsReadOnly><Alias>ua-${disk.id}</Alias></Item>`,
    );
  });
  const profiles = new Map(st.vnicProfiles.map((p) => [p.id, p]));
  const networks = new Map(st.networks.map((n) => [n.id, n]));
  const netNames: string[] = [];
  for (const nic of vm.nics) {
    const profile = nic.vnicProfileId ? profiles.get(nic.vnicProfileId) : undefined;
    const network = profile ? networks.get(profile.networkId)?.name : undefined;
    if (network && !netNames.includes(network)) netNames.push(network);
    items.push(
      [
        `<Item><rasd:Caption>Ethernet adapter on ${esc(network ?? "[No Network]")}</rasd:Caption>`,
        `<rasd:InstanceId>${nic.id}</rasd:InstanceId><rasd:ResourceType>10</rasd:ResourceType>`,
        `<rasd:OtherResourceType>${esc(profile?.name ?? "")}</rasd:OtherResourceType>`,
        `<rasd:ResourceSubType>${NIC_OVF_TYPE[nic.interface]}</rasd:ResourceSubType>`,
        `<rasd:Connection>${esc(network ?? "")}</rasd:Connection><rasd:Linked>${nic.linked}</rasd:Linked>`,
        `<rasd:Name>${esc(nic.name)}</rasd:Name><rasd:ElementName>${esc(nic.name)}</rasd:ElementName>`,
        `<rasd:MACAddress>${nic.mac}</rasd:MACAddress><rasd:speed>${NIC_SPEED[nic.interface]}</rasd:speed>`,
        `<Type>interface</Type><Device>bridge</Device><rasd:Address></rasd:Address><BootOrder>${boot.get(nic.id) ?? 0}</BootOrder>`,
        `<IsPlugged>${nic.plugged}</IsPlugged><IsReadOnly>false</IsReadOnly><Alias>ua-${nic.id}</Alias></Item>`,
      ].join(""),
    );
  }
  const memMb = Math.round(vm.memory / (1024 * 1024));
  const vcpus = vm.cpuSockets * vm.cpuCores * vm.cpuThreads;
  const clusterName = st.clusters.find((c) => c.id === vm.clusterId)?.name ?? "Default";
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1/" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ovf:version="4.7.0.0">`,
    `<References>${refs.join("")}</References>`,
    `<NetworkSection><Info>List of networks</Info>${netNames.map((n) => `<Network ovf:name="${esc(n)}"></Network>`).join("")}</NetworkSection>`,
    `<Section xsi:type="ovf:DiskSection_Type"><Info>List of Virtual Disks</Info>${diskEls.join("")}</Section>`,
    `<Content ovf:id="out" xsi:type="ovf:VirtualSystem_Type">`,
    `<Name>${esc(vm.name)}</Name><Description>${esc(vm.description)}</Description><Comment></Comment>`,
    `<CreationDate>${created}</CreationDate><ExportDate>${now}</ExportDate><DeleteProtected>false</DeleteProtected>`,
    `<SsoMethod>guest_agent</SsoMethod><IsSmartcardEnabled>false</IsSmartcardEnabled><NumOfIoThreads>1</NumOfIoThreads>`,
    `<TimeZone>Etc/GMT</TimeZone><default_boot_sequence>${bootSequenceValue(vm.bootDevices)}</default_boot_sequence><Generation>1</Generation>`,
    `<ClusterCompatibilityVersion>4.7</ClusterCompatibilityVersion><VmType>1</VmType><MinAllocatedMem>${memMb}</MinAllocatedMem>`,
    `<IsStateless>false</IsStateless><IsRunAndPause>false</IsRunAndPause><AutoStartup>false</AutoStartup><Priority>1</Priority>`,
    `<CreatedByUserId>${st.ids.adminUser}</CreatedByUserId><MigrationSupport>0</MigrationSupport><IsBootMenuEnabled>false</IsBootMenuEnabled>`,
    `<TemplateId>00000000-0000-0000-0000-000000000000</TemplateId><TemplateName>Blank</TemplateName>`,
    `<IsInitilized>true</IsInitilized><Origin>0</Origin><ClusterName>${esc(clusterName)}</ClusterName><VmLeaseStorageDomainId></VmLeaseStorageDomainId>`,
    `<Section ovf:id="${vm.id}" ovf:required="false" xsi:type="ovf:OperatingSystemSection_Type"><Info>Guest Operating System</Info><Description>${esc(vm.osType)}</Description></Section>`,
    `<Section xsi:type="ovf:VirtualHardwareSection_Type"><Info>${vcpus} CPU, ${memMb} Memory</Info><System><vssd:VirtualSystemType>ENGINE 4.7.0.0</vssd:VirtualSystemType></System>`,
    `<Item><rasd:Caption>${vcpus} virtual cpu</rasd:Caption><rasd:Description>Number of virtual CPU</rasd:Description><rasd:InstanceId>1</rasd:InstanceId><rasd:ResourceType>3</rasd:ResourceType><rasd:num_of_sockets>${vm.cpuSockets}</rasd:num_of_sockets><rasd:cpu_per_socket>${vm.cpuCores}</rasd:cpu_per_socket><rasd:threads_per_cpu>${vm.cpuThreads}</rasd:threads_per_cpu><rasd:max_num_of_vcpus>${Math.max(16, vcpus)}</rasd:max_num_of_vcpus><rasd:VirtualQuantity>${vcpus}</rasd:VirtualQuantity></Item>`,
    `<Item><rasd:Caption>${memMb} MB of memory</rasd:Caption><rasd:Description>Memory Size</rasd:Description><rasd:InstanceId>2</rasd:InstanceId><rasd:ResourceType>4</rasd:ResourceType><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:VirtualQuantity>${memMb}</rasd:VirtualQuantity></Item>`,
    items.join(""),
    `</Section></Content></ovf:Envelope>`,
  ].join("");
}

export interface OvfDisk {
  diskId: string;
  imageId: string;
  alias: string;
  interface: DiskInterface;
  bootable: boolean;
  readOnly: boolean;
  passDiscard: boolean;
  active: boolean;
}

export interface OvfNic {
  /** rasd:InstanceId (the source NIC id). */
  id?: string;
  name: string;
  interface: NicInterface;
  mac?: string;
  /** rasd:Connection; undefined when the NIC was on no network. */
  network?: string;
  /** rasd:OtherResourceType: the vNIC profile name on the source. */
  profile?: string;
  linked: boolean;
  plugged: boolean;
}

export interface ParsedOvf {
  vmId?: string;
  name?: string;
  description: string;
  memory?: number;
  cpu?: { sockets: number; cores: number; threads: number };
  osType?: string;
  /** From default_boot_sequence. */
  bootDevices?: BootDevice[];
  clusterName?: string;
  disks: OvfDisk[];
  nics: OvfNic[];
}

function attrs(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([\w:.-]+)="([^"]*)"/g)) out[m[1]!] = unesc(m[2]!);
  return out;
}

function text(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m ? unesc(m[1]!) : undefined;
}

/** Read an OVF; throws on text that is not an oVirt OVF envelope. */
export function parseOvf(xml: string): ParsedOvf {
  if (!/<ovf:Envelope[\s>]/.test(xml)) throw new Error("not an OVF envelope");
  const out: ParsedOvf = { description: "", disks: [], nics: [] };
  const content = /<Content[\s\S]*<\/Content>/.exec(xml)?.[0] ?? xml;
  const name = text(content, "Name");
  if (name !== undefined) out.name = name;
  out.description = text(content, "Description") ?? "";
  const os = /<Section ovf:id="([^"]+)"[^>]*OperatingSystemSection_Type"[^>]*>[\s\S]*?<Description>([^<]*)<\/Description>/.exec(content);
  if (os) {
    out.vmId = os[1]!;
    out.osType = unesc(os[2]!);
  }
  for (const item of content.matchAll(/<Item>([\s\S]*?)<\/Item>/g)) {
    const body = item[1]!;
    const type = /<rasd:ResourceType>(\d+)<\/rasd:ResourceType>/.exec(body)?.[1];
    const qty = /<rasd:VirtualQuantity>(\d+)<\/rasd:VirtualQuantity>/.exec(body)?.[1];
    if (type === "4" && qty) out.memory = Number(qty) * 1024 * 1024;
    if (type === "3") {
      const cps = /<rasd:cpu_per_socket>(\d+)</.exec(body)?.[1];
      const sockets = /<rasd:num_of_sockets>(\d+)</.exec(body)?.[1];
      const threads = /<rasd:threads_per_cpu>(\d+)</.exec(body)?.[1];
      if (cps) out.cpu = { sockets: Number(sockets ?? "1"), cores: Number(cps), threads: Number(threads ?? "1") };
    }
    if (type === "10") {
      const subtype = Number(text(body, "rasd:ResourceSubType") ?? "3");
      const iface = (Object.entries(NIC_OVF_TYPE).find(([, v]) => v === subtype)?.[0] ?? "virtio") as NicInterface;
      const network = text(body, "rasd:Connection");
      const profile = text(body, "rasd:OtherResourceType");
      const mac = text(body, "rasd:MACAddress");
      const id = text(body, "rasd:InstanceId");
      out.nics.push({
        ...(id ? { id: id.toLowerCase() } : {}),
        name: text(body, "rasd:Name") || text(body, "rasd:ElementName") || `nic${out.nics.length + 1}`,
        interface: iface,
        ...(mac ? { mac: mac.toLowerCase() } : {}),
        ...(network ? { network } : {}),
        ...(profile ? { profile } : {}),
        linked: text(body, "rasd:Linked") !== "false",
        plugged: text(body, "IsPlugged") !== "false",
      });
    }
  }
  const seq = text(content, "default_boot_sequence");
  if (seq && /^\d+$/.test(seq)) out.bootDevices = bootDevicesOf(Number(seq));
  const cluster = text(content, "ClusterName");
  if (cluster) out.clusterName = cluster;
  const plugged = new Map<string, boolean>();
  for (const item of content.matchAll(/<Item>([\s\S]*?)<\/Item>/g)) {
    const host = /<rasd:HostResource>([^<]+)<\/rasd:HostResource>/.exec(item[1]!)?.[1];
    const p = /<IsPlugged>(true|false)<\/IsPlugged>/.exec(item[1]!)?.[1];
    if (host && p) plugged.set(host, p === "true");
  }
  const ifaces = Object.entries(IFACE_OVF);
  for (const m of xml.matchAll(/<Disk\s[^>]*>/g)) {
    const a = attrs(m[0]);
    const fileRef = a["ovf:fileRef"] ?? "";
    const [diskId, imageId] = fileRef.split("/");
    if (!diskId) continue;
    const iface = (ifaces.find(([, v]) => v.toLowerCase() === (a["ovf:disk-interface"] ?? "").toLowerCase())?.[0] ??
      "virtio_scsi") as DiskInterface;
    out.disks.push({
      diskId: diskId.toLowerCase(),
      imageId: imageId ?? "",
      alias: a["ovf:disk-alias"] ?? "",
      interface: iface,
      bootable: a["ovf:boot"] === "true",
      readOnly: a["ovf:read-only"] === "true",
      passDiscard: a["ovf:pass-discard"] === "true",
      active: plugged.get(fileRef) ?? true,
    });
  }
  return out;
}
