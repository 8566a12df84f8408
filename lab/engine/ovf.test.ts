import { describe, expect, it } from "vitest";
import { Engine } from "./engine.ts";
import type { Attachment, LabDisk, LabVm } from "./model.ts";
import { buildOvf, parseOvf } from "./ovf.ts";

const st = Engine.freshState();
const vm: LabVm = {
  id: "6d5c3e8a-1111-4a2b-9c3d-000000000001",
  name: "web<01>&co",
  description: "front \"end\"",
  status: "up",
  clusterId: st.ids.cluster,
  memory: 2048 * 1024 * 1024,
  cpuCores: 2,
  osType: "rhel_9x64",
  createdAt: 1_700_000_000_000,
  attachments: [],
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
    expect(p).toMatchObject({ vmId: vm.id, name: vm.name, description: vm.description, memory: vm.memory, cpuCores: 2, osType: "rhel_9x64" });
    expect(p.disks).toEqual([
      { diskId: d1.id, imageId: d1.volumes[0]!.id, alias: "os", interface: "virtio_scsi", bootable: true, readOnly: false, passDiscard: false, active: true },
      { diskId: d2.id, imageId: d2.volumes[0]!.id, alias: "data", interface: "virtio", bootable: false, readOnly: true, passDiscard: false, active: false },
    ]);
  });

  it("parseOvf - rejects text that is not an OVF envelope", () => {
    expect(() => parseOvf("<vm/>")).toThrow(/OVF/);
  });
});
