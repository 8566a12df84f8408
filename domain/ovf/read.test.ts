import { describe, expect, it } from "vitest";
import { readOvf, withDiskIds, OvfError } from "./read.ts";

const D1 = "11111111-1111-4111-8111-111111111111";
const D2 = "22222222-2222-4222-8222-222222222222";
const IMG1 = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const IMG2 = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";

// The shape of the engine's own all_content OVF (OvfVmWriter), trimmed to what a restore reads.
const ovf = `<?xml version="1.0" encoding="UTF-8"?>
<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1/" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ovf:version="4.7.0.0">
<References><File ovf:href="${D1}/${IMG1}" ovf:id="${IMG1}"></File><File ovf:href="${D2}/${IMG2}" ovf:id="${IMG2}"></File></References>
<Section xsi:type="ovf:NetworkSection_Type"><Info>List of networks</Info><Network ovf:name="ovirtmgmt"></Network><Network ovf:name="lan"></Network></Section>
<Section xsi:type="ovf:DiskSection_Type"><Info>List of Virtual Disks</Info>
<Disk ovf:diskId="${IMG1}" ovf:fileRef="${D1}/${IMG1}" ovf:disk-interface="VirtIO_SCSI" ovf:boot="true" ovf:disk-alias="web01_Disk1"></Disk>
<Disk ovf:diskId="${IMG2}" ovf:fileRef="${D2}/${IMG2}" ovf:disk-interface="VirtIO" ovf:boot="false" ovf:disk-alias="web01_Disk2"></Disk>
</Section>
<Content ovf:id="out" xsi:type="ovf:VirtualSystem_Type"><Name>web01</Name><ClusterName>Prod</ClusterName>
<Section xsi:type="ovf:VirtualHardwareSection_Type"><Info>2 CPU, 2048 Memory</Info>
<Item><rasd:ResourceType>3</rasd:ResourceType><rasd:num_of_sockets>2</rasd:num_of_sockets><rasd:cpu_per_socket>2</rasd:cpu_per_socket><rasd:threads_per_cpu>1</rasd:threads_per_cpu></Item>
<Item><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
<Item><rasd:InstanceId>${IMG1}</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><BootOrder>1</BootOrder></Item>
<Item><rasd:InstanceId>${IMG2}</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><BootOrder>0</BootOrder></Item>
<Item><rasd:ResourceType>10</rasd:ResourceType><rasd:ResourceSubType>3</rasd:ResourceSubType><rasd:Connection>lan</rasd:Connection><rasd:Name>nic1</rasd:Name><rasd:MACAddress>56:6f:1a:2b:00:01</rasd:MACAddress></Item>
<Item><rasd:ResourceType>10</rasd:ResourceType><rasd:ResourceSubType>2</rasd:ResourceSubType><rasd:Connection></rasd:Connection><rasd:Name>nic2</rasd:Name></Item>
</Section></Content></ovf:Envelope>`;

describe("OVF reader", () => {
  it("readOvf - name, cluster, CPU, memory, disks with interface/boot order, NICs with network and type", () => {
    const vm = readOvf(ovf);
    expect(vm).toMatchObject({ name: "web01", cluster: "Prod", memoryMb: 2048, cpu: { sockets: 2, cores: 2, threads: 1 } });
    expect(vm.disks).toEqual([
      { diskId: D1, alias: "web01_Disk1", interface: "virtio_scsi", bootable: true, bootOrder: 1 },
      { diskId: D2, alias: "web01_Disk2", interface: "virtio", bootable: false, bootOrder: 0 },
    ]);
    expect(vm.nics).toEqual([
      { name: "nic1", network: "lan", interface: "virtio", mac: "56:6f:1a:2b:00:01" },
      { name: "nic2", network: "", interface: "e1000" },
    ]);
  });

  it("withDiskIds - every mention of an original disk id names the new disk; image ids stay", () => {
    const N1 = "99999999-9999-4999-8999-999999999999";
    const out = withDiskIds(ovf, new Map([[D1, N1]]));
    expect(out).not.toContain(D1);
    expect(readOvf(out).disks.map((d) => d.diskId)).toEqual([N1, D2]);
    expect(out).toContain(IMG1);
  });

  it("readOvf - not XML, or not a VM OVF, is a clear error", () => {
    expect(() => readOvf("<nope")).toThrow(OvfError);
    expect(() => readOvf("<a/>")).toThrow(/Envelope\/Content/);
    expect(() => withDiskIds(ovf, new Map([["x", "y"]]))).toThrow(/not a UUID/);
  });
});
