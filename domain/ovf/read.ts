/**
 * What a restore needs from the OVF oVirt keeps with every restore point (the engine's own
 * `all_content` export, ovirt-api.md §8.3): the VM's name, CPU topology and memory, its disks
 * (disk id, alias, interface, bootable, boot order) and NICs (name, network, interface, MAC).
 * Pure: no I/O. The OVF itself is imported by the engine as it is, apart from the disk ids a
 * restore gives its new disks (`withDiskIds`).
 */
import { XMLParser } from "fast-xml-parser";

export interface OvfDisk {
  /** The disk (image group) id: the part of `ovf:fileRef` before the '/'. */
  readonly diskId: string;
  readonly alias: string;
  /** oVirt interface name: virtio_scsi, virtio, ide, sata, spapr_vscsi. */
  readonly interface: string;
  readonly bootable: boolean;
  /** 0 when not in the boot order. */
  readonly bootOrder: number;
}

export interface OvfNic {
  readonly name: string;
  /** The network the NIC was on (rasd:Connection); empty when unplugged from any. */
  readonly network: string;
  /** oVirt NIC interface: virtio, e1000, rtl8139, … */
  readonly interface: string;
  readonly mac?: string | undefined;
}

export interface OvfVm {
  readonly name: string;
  /** The cluster the VM was in (ClusterName), for the cluster mapping. */
  readonly cluster: string;
  readonly memoryMb?: number | undefined;
  readonly cpu?: { readonly sockets: number; readonly cores: number; readonly threads: number } | undefined;
  readonly disks: readonly OvfDisk[];
  readonly nics: readonly OvfNic[];
}

export class OvfError extends Error {}

const IFACE: Record<string, string> = { virtio_scsi: "virtio_scsi", virtio: "virtio", ide: "ide", sata: "sata", spapr_vscsi: "spapr_vscsi" };
// rasd:ResourceSubType of a NIC item (oVirt VmInterfaceType ordinal values).
const NIC_TYPE: Record<string, string> = { "0": "rtl8139_virtio", "1": "rtl8139", "2": "e1000", "3": "virtio", "4": "spapr_vlan", "5": "pci_passthrough" };

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  isArray: (name) => ["Item", "Disk", "File", "Section", "Network"].includes(name),
});

type Node = Record<string, unknown>;
const text = (v: unknown): string => (typeof v === "string" ? v : v && typeof v === "object" && "#text" in v ? String((v as Node)["#text"]) : "");
const int = (v: unknown): number | undefined => {
  const n = Number.parseInt(text(v), 10);
  return Number.isFinite(n) ? n : undefined;
};
const sections = (n: Node | undefined): Node[] => ((n?.Section as Node[] | undefined) ?? []);
const ofType = (n: Node | undefined, type: string) => sections(n).find((s) => String(s["@type"] ?? "").endsWith(type));

export function readOvf(xml: string): OvfVm {
  let doc: Node;
  try {
    doc = parser.parse(xml) as Node;
  } catch (err) {
    throw new OvfError(`the OVF is not valid XML: ${err instanceof Error ? err.message : String(err)}`);
  }
  const env = doc.Envelope as Node | undefined;
  const content = env?.Content as Node | undefined;
  if (!env || !content) throw new OvfError("the OVF has no Envelope/Content (not an oVirt VM OVF)");
  const name = text(content.Name);
  if (!name) throw new OvfError("the OVF names no VM");

  const disksSection = ofType(env, "DiskSection_Type");
  const hw = ofType(content, "VirtualHardwareSection_Type");
  const items = (hw?.Item as Node[] | undefined) ?? [];
  const bootOrderByImage = new Map<string, number>();
  for (const it of items) if (text(it.ResourceType) === "17") bootOrderByImage.set(text(it.InstanceId), int(it.BootOrder) ?? 0);

  const disks: OvfDisk[] = ((disksSection?.Disk as Node[] | undefined) ?? []).map((d) => {
    const fileRef = String(d["@fileRef"] ?? "");
    const diskId = fileRef.split("/")[0] ?? "";
    if (!diskId) throw new OvfError("an OVF disk has no ovf:fileRef");
    const iface = String(d["@disk-interface"] ?? "VirtIO_SCSI").toLowerCase();
    return {
      diskId,
      alias: String(d["@disk-alias"] ?? diskId),
      interface: IFACE[iface] ?? "virtio_scsi",
      bootable: String(d["@boot"] ?? "false") === "true",
      bootOrder: bootOrderByImage.get(String(d["@diskId"] ?? "")) ?? 0,
    };
  });

  const nics: OvfNic[] = items
    .filter((it) => text(it.ResourceType) === "10")
    .map((it) => ({
      name: text(it.Name) || text(it.ElementName) || text(it.Caption),
      network: text(it.Connection),
      interface: NIC_TYPE[text(it.ResourceSubType)] ?? "virtio",
      ...(text(it.MACAddress) ? { mac: text(it.MACAddress) } : {}),
    }));

  const cpuItem = items.find((it) => text(it.ResourceType) === "3");
  const memItem = items.find((it) => text(it.ResourceType) === "4");
  const sockets = int(cpuItem?.num_of_sockets);
  const cores = int(cpuItem?.cpu_per_socket);
  return {
    name,
    cluster: text(content.ClusterName),
    ...(memItem ? { memoryMb: int(memItem.VirtualQuantity) } : {}),
    ...(sockets && cores ? { cpu: { sockets, cores, threads: int(cpuItem?.threads_per_cpu) ?? 1 } } : {}),
    disks,
    nics,
  };
}

/**
 * The OVF with disk ids replaced (original → new). The engine's import attaches, by id, every
 * disk the OVF lists (ovirt-api.md §8.3): the restored disks carry new ids, so the OVF must name
 * them — and must not name the originals, which may exist on the target (a DR replica) and would
 * be attached to the wrong VM. Disk ids are UUIDs, so a textual replacement is exact.
 */
export function withDiskIds(xml: string, ids: ReadonlyMap<string, string>): string {
  let out = xml;
  for (const [from, to] of ids) {
    if (!/^[0-9a-f-]{36}$/i.test(from)) throw new OvfError(`disk id ${from} is not a UUID`);
    out = out.split(from).join(to);
  }
  return out;
}
