import type { Attachment, DiskInterface, EngineState, LabDisk, LabVm } from "./model.ts";

/**
 * A plausible oVirt OVF for `all_content=true` (vm.initialization.configuration.data), and the
 * reader used by `POST /vms` with `initialization.configuration` (ImportVmFromConfiguration).
 * Only what the lab needs round-trips: VM id, name, description, memory, CPUs, OS type and the
 * disks (by disk id, `fileRef="<disk id>/<image id>"`) with their attachment properties.
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

export function buildOvf(vm: LabVm, disks: Array<{ disk: LabDisk; att: Attachment }>, st: EngineState): string {
  const now = ovfDate(Date.now());
  const created = ovfDate(vm.createdAt);
  const refs: string[] = [];
  const diskEls: string[] = [];
  const items: string[] = [];
  disks.forEach(({ disk, att }, i) => {
    const image = disk.volumes[disk.volumes.length - 1]!.id;
    const fileRef = `${disk.id}/${image}`;
    refs.push(
      `<File ovf:href="${fileRef}" ovf:id="${image}" ovf:size="${disk.provisionedSize}" ovf:description="${esc(disk.description)}" ovf:disk_storage_type="IMAGE" ovf:cinder_volume_type=""></File>`,
    );
    diskEls.push(
      `<Disk ovf:diskId="${image}" ovf:size="${Math.ceil(disk.provisionedSize / GiB)}" ovf:actual_size="1" ovf:vm_snapshot_id="${vm.activeSnapshotId}" ovf:parentRef="" ovf:fileRef="${fileRef}" ovf:format="http://www.vmware.com/specifications/vmdk.html#sparse" ovf:volume-format="${disk.format === "cow" ? "COW" : "RAW"}" ovf:volume-type="${disk.sparse ? "Sparse" : "Preallocated"}" ovf:disk-interface="${IFACE_OVF[att.interface]}" ovf:read-only="${att.readOnly}" ovf:shareable="${disk.shareable}" ovf:boot="${att.bootable}" ovf:pass-discard="${att.passDiscard}" ovf:incremental-backup="${disk.backup === "incremental"}" ovf:disk-alias="${esc(disk.alias)}" ovf:disk-description="${esc(disk.description)}" ovf:wipe-after-delete="false" ovf:disk_storage_type="IMAGE" ovf:cinder_volume_type="" ovf:disk-content-type="${disk.contentType.toUpperCase()}"></Disk>`,
    );
    items.push(
      `<Item><rasd:Caption>${esc(disk.alias)}</rasd:Caption><rasd:InstanceId>${image}</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>${fileRef}</rasd:HostResource><rasd:Parent>00000000-0000-0000-0000-000000000000</rasd:Parent><rasd:Template>00000000-0000-0000-0000-000000000000</rasd:Template><rasd:ApplicationList></rasd:ApplicationList><rasd:StorageId>${disk.storageDomainId}</rasd:StorageId><rasd:StoragePoolId>${st.ids.dataCenter}</rasd:StoragePoolId><rasd:CreationDate>${ovfDate(disk.createdAt)}</rasd:CreationDate><rasd:LastModified>${now}</rasd:LastModified><rasd:last_modified_date>${now}</rasd:last_modified_date><Type>disk</Type><Device>disk</Device><rasd:Address></rasd:Address><BootOrder>${att.bootable ? i + 1 : 0}</BootOrder><IsPlugged>${att.active}</IsPlugged><IsReadOnly>${att.readOnly}</IsReadOnly><Alias>ua-${disk.id}</Alias></Item>`,
    );
  });
  const memMb = Math.round(vm.memory / (1024 * 1024));
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1/" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ovf:version="4.7.0.0">`,
    `<References>${refs.join("")}</References>`,
    `<Section xsi:type="ovf:NetworkSection_Type"><Info>List of networks</Info><Network ovf:name="ovirtmgmt"></Network></Section>`,
    `<Section xsi:type="ovf:DiskSection_Type"><Info>List of Virtual Disks</Info>${diskEls.join("")}</Section>`,
    `<Content ovf:id="out" xsi:type="ovf:VirtualSystem_Type">`,
    `<Name>${esc(vm.name)}</Name><Description>${esc(vm.description)}</Description><Comment></Comment>`,
    `<CreationDate>${created}</CreationDate><ExportDate>${now}</ExportDate><DeleteProtected>false</DeleteProtected>`,
    `<SsoMethod>guest_agent</SsoMethod><IsSmartcardEnabled>false</IsSmartcardEnabled><NumOfIoThreads>1</NumOfIoThreads>`,
    `<TimeZone>Etc/GMT</TimeZone><default_boot_sequence>0</default_boot_sequence><Generation>1</Generation>`,
    `<ClusterCompatibilityVersion>4.7</ClusterCompatibilityVersion><VmType>1</VmType><MinAllocatedMem>${memMb}</MinAllocatedMem>`,
    `<IsStateless>false</IsStateless><IsRunAndPause>false</IsRunAndPause><AutoStartup>false</AutoStartup><Priority>1</Priority>`,
    `<CreatedByUserId>${st.ids.adminUser}</CreatedByUserId><MigrationSupport>0</MigrationSupport><IsBootMenuEnabled>false</IsBootMenuEnabled>`,
    `<TemplateId>00000000-0000-0000-0000-000000000000</TemplateId><TemplateName>Blank</TemplateName>`,
    `<IsInitilized>true</IsInitilized><Origin>0</Origin><ClusterName>Default</ClusterName><VmLeaseStorageDomainId></VmLeaseStorageDomainId>`,
    `<Section ovf:id="${vm.id}" ovf:required="false" xsi:type="ovf:OperatingSystemSection_Type"><Info>Guest Operating System</Info><Description>${esc(vm.osType)}</Description></Section>`,
    `<Section xsi:type="ovf:VirtualHardwareSection_Type"><Info>${vm.cpuCores} CPU, ${memMb} Memory</Info><System><vssd:VirtualSystemType>ENGINE 4.7.0.0</vssd:VirtualSystemType></System>`,
    `<Item><rasd:Caption>${vm.cpuCores} virtual cpu</rasd:Caption><rasd:Description>Number of virtual CPU</rasd:Description><rasd:InstanceId>1</rasd:InstanceId><rasd:ResourceType>3</rasd:ResourceType><rasd:num_of_sockets>1</rasd:num_of_sockets><rasd:cpu_per_socket>${vm.cpuCores}</rasd:cpu_per_socket><rasd:threads_per_cpu>1</rasd:threads_per_cpu><rasd:max_num_of_vcpus>16</rasd:max_num_of_vcpus><rasd:VirtualQuantity>${vm.cpuCores}</rasd:VirtualQuantity></Item>`,
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

export interface ParsedOvf {
  vmId?: string;
  name?: string;
  description: string;
  memory?: number;
  cpuCores?: number;
  osType?: string;
  disks: OvfDisk[];
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
  const out: ParsedOvf = { description: "", disks: [] };
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
      if (cps) out.cpuCores = Number(cps) * Number(sockets ?? "1");
    }
  }
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
