import { describe, expect, it } from "vitest";
import { Engine } from "./engine.ts";
import type { Attachment, LabDisk, LabVm } from "./model.ts";
import { bootDevicesOf, bootSequenceValue, buildOvf, parseOvf } from "./ovf.ts";

const st = Engine.freshState();
const vm: LabVm = {
  id: "6d5c3e8a-1111-4a2b-9c3d-000000000001",
  name: "web<01>&co",
  description: "front \"end\"",
  status: "up",
  clusterId: st.ids.cluster,
  memory: 2048 * 1024 * 1024,
  cpuSockets: 2,
  cpuCores: 2,
  cpuThreads: 1,
  bootDevices: ["hd"],
  osType: "rhel_9x64",
  createdAt: 1_700_000_000_000,
  attachments: [],
  nics: [],
  activeSnapshotId: "6d5c3e8a-1111-4a2b-9c3d-0000000000aa",
};
const disk = (id: string, alias: string, format: "cow" | "raw"): LabDisk => ({
  id,
  alias,
  description: "",
  format,
  qcowVersion: "qcow2_v3",
  sparse: true,
  backup: format === "cow" ? "incremental" : "none",
  provisionedSize: 10 * 1024 ** 3,
  contentType: "data",
  shareable: false,
  storageDomainId: st.storageDomains[0]!.id,
  status: "ok",
  volumes: [{ id: `${id.slice(0, 35)}f`, path: "/x", format: format === "cow" ? "qcow2" : "raw" }],
  createdAt: 1_700_000_000_000,
});
const att = (diskId: string, o: Partial<Attachment> = {}): Attachment => ({
  diskId,
  interface: "virtio_scsi",
  bootable: false,
  active: true,
  passDiscard: false,
  readOnly: false,
  ...o,
});

describe("ovf", () => {
  it("buildOvf/parseOvf - round-trips VM identity, memory, CPUs, OS and disks with attachment properties", () => {
    const d1 = disk("11111111-1111-4111-8111-111111111111", "os", "cow");
    const d2 = disk("22222222-2222-4222-8222-222222222222", "data", "raw");
    const xml = buildOvf(vm, [{ disk: d1, att: att(d1.id, { bootable: true }) }, { disk: d2, att: att(d2.id, { interface: "virtio", active: false, readOnly: true }) }], st);
    expect(xml).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?><ovf:Envelope /);
    expect(xml).toContain("<Name>web&lt;01&gt;&amp;co</Name>");
    const p = parseOvf(xml);
    expect(p).toMatchObject({
      vmId: vm.id,
      name: vm.name,
      description: vm.description,
      memory: vm.memory,
      cpu: { sockets: 2, cores: 2, threads: 1 },
      osType: "rhel_9x64",
      bootDevices: ["hd"],
      clusterName: "Default",
      nics: [],
    });
    expect(xml).toContain("<rasd:VirtualQuantity>4</rasd:VirtualQuantity>");
    expect(p.disks).toEqual([
      { diskId: d1.id, imageId: d1.volumes[0]!.id, alias: "os", interface: "virtio_scsi", bootable: true, readOnly: false, passDiscard: false, active: true },
      { diskId: d2.id, imageId: d2.volumes[0]!.id, alias: "data", interface: "virtio", bootable: false, readOnly: true, passDiscard: false, active: false },
    ]);
  });

  it("buildOvf/parseOvf - NICs are ResourceType 10 Items (network in rasd:Connection, profile in rasd:OtherResourceType, VmInterfaceType subtype) with boot orders", () => {
    const net2 = { id: "33333333-3333-4333-8333-333333333333", name: "backend", description: "" };
    const prof2 = { id: "44444444-4444-4444-8444-444444444444", name: "backend-mirror", networkId: net2.id, portMirroring: false };
    const s2 = { ...st, networks: [...st.networks, net2], vnicProfiles: [...st.vnicProfiles, prof2] };
    const d1 = disk("11111111-1111-4111-8111-111111111111", "os", "cow");
    const v: LabVm = {
      ...vm,
      bootDevices: ["network", "hd"],
      nics: [
        { id: "55555555-5555-4555-8555-555555555555", name: "nic1", interface: "virtio", mac: "56:6f:00:00:00:01", vnicProfileId: st.ids.vnicProfile, linked: true, plugged: true },
        { id: "66666666-6666-4666-8666-666666666666", name: "nic2", interface: "e1000", mac: "56:6f:00:00:00:02", vnicProfileId: prof2.id, linked: false, plugged: true },
        { id: "77777777-7777-4777-8777-777777777777", name: "nic3", interface: "rtl8139", mac: "56:6f:00:00:00:03", linked: true, plugged: false },
      ],
    };
    const xml = buildOvf(v, [{ disk: d1, att: att(d1.id, { bootable: true }) }], s2);
    expect(xml).toContain(`<NetworkSection><Info>List of networks</Info><Network ovf:name="ovirtmgmt"></Network><Network ovf:name="backend"></Network></NetworkSection>`);
    expect(xml).toContain("<rasd:Caption>Ethernet adapter on ovirtmgmt</rasd:Caption>");
    expect(xml).toContain("<rasd:Caption>Ethernet adapter on [No Network]</rasd:Caption>");
    expect(xml).toContain(`<default_boot_sequence>${bootSequenceValue(["network", "hd"])}</default_boot_sequence>`);
    expect(bootSequenceValue(["network", "hd"])).toBe(13); // NC
    expect(bootDevicesOf(13)).toEqual(["network", "hd"]);
    expect(bootDevicesOf(0)).toEqual(["hd"]);
    // network first: the plugged NICs get 1 and 2, then the bootable disk 3.
    const order = (id: string) => new RegExp(`<rasd:InstanceId>${id}</rasd:InstanceId>[\\s\\S]*?<BootOrder>(\\d+)</BootOrder>`).exec(xml)?.[1];
    expect(order(v.nics[0]!.id)).toBe("1");
    expect(order(v.nics[1]!.id)).toBe("2");
    expect(order(v.nics[2]!.id)).toBe("0");
    expect(order(d1.volumes[0]!.id)).toBe("3");
    const p = parseOvf(xml);
    expect(p.bootDevices).toEqual(["network", "hd"]);
    expect(p.nics).toEqual([
      { id: v.nics[0]!.id, name: "nic1", interface: "virtio", mac: "56:6f:00:00:00:01", network: "ovirtmgmt", profile: "ovirtmgmt", linked: true, plugged: true },
      { id: v.nics[1]!.id, name: "nic2", interface: "e1000", mac: "56:6f:00:00:00:02", network: "backend", profile: "backend-mirror", linked: false, plugged: true },
      { id: v.nics[2]!.id, name: "nic3", interface: "rtl8139", mac: "56:6f:00:00:00:03", linked: true, plugged: false },
    ]);
  });

  it("parseOvf - rejects text that is not an OVF envelope", () => {
    expect(() => parseOvf("<vm/>")).toThrow(/OVF/);
  });
});
