import tar from "tar-stream";
import { describe, expect, it } from "vitest";
import type { ResolvedDisk, ResolvedPoint } from "../adapters/store/mod.ts";
import { diskFileNames, ExportError, findDiskFile, ovaMemberNames, padBefore, rewriteOvfForOva, sanitizeName, selectDisks, tarEntrySize, tarMemberSpec } from "./export.ts";

const D1 = "11111111-1111-1111-1111-111111111111";
const I1 = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const D2 = "22222222-2222-2222-2222-222222222222";
const I2 = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";

/** The engine's own dialect (all_content=true): File href "<disk>/<image>", Disk diskId = image id, Items by HostResource. */
const NATIVE = [
  `<?xml version="1.0" encoding="UTF-8"?><ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1/" xmlns:rasd="r" ovf:version="4.7.0.0">`,
  `<References>`,
  `<File ovf:href="${D1}/${I1}" ovf:id="${I1}" ovf:size="10737418240" ovf:description="a &gt; b" ovf:disk_storage_type="IMAGE"></File>`,
  `<File ovf:href="${D2}/${I2}" ovf:id="${I2}" ovf:size="1073741824" ovf:description="data" ovf:disk_storage_type="IMAGE"></File>`,
  `</References>`,
  `<Section xsi:type="ovf:DiskSection_Type"><Info>List of Virtual Disks</Info>`,
  `<Disk ovf:diskId="${I1}" ovf:size="10" ovf:fileRef="${D1}/${I1}" ovf:disk-alias="web01 boot"></Disk>`,
  `<Disk ovf:diskId="${I2}" ovf:size="1" ovf:fileRef="${D2}/${I2}" ovf:disk-alias="web01_data"></Disk>`,
  `</Section><Content ovf:id="out" xsi:type="ovf:VirtualSystem_Type"><Name>web01</Name><Section xsi:type="ovf:VirtualHardwareSection_Type">`,
  `<Item><rasd:Caption>2 virtual cpu</rasd:Caption><rasd:InstanceId>1</rasd:InstanceId><rasd:ResourceType>3</rasd:ResourceType></Item>`,
  `<Item><rasd:Caption>web01 boot</rasd:Caption><rasd:InstanceId>${I1}</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>${D1}/${I1}</rasd:HostResource></Item>`,
  `<Item><rasd:Caption>web01_data</rasd:Caption><rasd:InstanceId>${I2}</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>${D2}/${I2}</rasd:HostResource></Item>`,
  `<Item><rasd:Caption>nic1</rasd:Caption><rasd:InstanceId>n1</rasd:InstanceId><rasd:ResourceType>10</rasd:ResourceType></Item>`,
  `</Section></Content></ovf:Envelope>`,
].join("\n");

/** The OVA dialect (OvfOvaWriter): File href = id = image id, Disk diskId = disk id with fileRef = image id, HostResource ovf:/disk/<disk>. */
const OVA_DIALECT = [
  `<?xml version='1.0' encoding='UTF-8'?><ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1/" xmlns:rasd="r">`,
  `<References><File ovf:href="${I1}" ovf:id="${I1}" ovf:size="-1"/><File ovf:href="${I2}" ovf:id="${I2}" ovf:size="-1"/></References>`,
  `<DiskSection><Info>List of Virtual Disks</Info><Disk ovf:diskId="${D1}" ovf:fileRef="${I1}" ovf:capacity="10"/><Disk ovf:diskId="${D2}" ovf:fileRef="${I2}" ovf:capacity="1"/></DiskSection>`,
  `<VirtualSystem ovf:id="vm"><VirtualHardwareSection>`,
  `<Item><rasd:InstanceID>${I1}</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>ovf:/disk/${D1}</rasd:HostResource></Item>`,
  `<Item><rasd:InstanceID>${I2}</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>ovf:/disk/${D2}</rasd:HostResource></Item>`,
  `</VirtualHardwareSection></VirtualSystem></ovf:Envelope>`,
].join("\n");

const attr = (xml: string, el: string, name: string) => [...xml.matchAll(new RegExp(`<${el}\\b[^>]*\\s${name}="([^"]*)"`, "g"))].map((m) => m[1]);

function point(disks: { diskId: string; alias: string }[]): ResolvedPoint {
  return {
    vm: { id: "vm-1", name: "web01" },
    number: 3,
    point: { id: "rp3", seq: 3, time: "2025-01-12T02:00:00.000Z", kind: "full", disks: [] } as never,
    disks: disks.map((d) => ({ disk: { ...d, virtualSize: 1, layer: "x", kind: "full", size: 1, digestsFile: "y", checksum: {} } as never, top: "/t", chain: [] }) as ResolvedDisk),
  };
}

describe("export names", () => {
  it("sanitizeName - keeps [A-Za-z0-9._-], replaces the rest, no leading dot, never a path", () => {
    expect(sanitizeName("web01_disk1")).toBe("web01_disk1");
    expect(sanitizeName("web01 boot/disk")).toBe("web01_boot_disk");
    expect(sanitizeName("../../etc/passwd")).toBe("etc_passwd");
    expect(sanitizeName("..")).toBe("");
    expect(sanitizeName(".hidden")).toBe("hidden");
    expect(sanitizeName("Dïsk ∞")).toBe("Disk");
    expect(sanitizeName("x".repeat(300))).toHaveLength(200);
  });

  it("diskFileNames - alias-based, disk id when the alias is empty or unusable, disambiguated on a clash", () => {
    const p = point([
      { diskId: "d1", alias: "data" },
      { diskId: "d2", alias: "data" },
      { diskId: "d3", alias: "" },
      { diskId: "d4", alias: "../" },
    ]);
    expect(diskFileNames(p.disks, "qcow2")).toEqual(["data-d1.qcow2", "data-d2.qcow2", "d3.qcow2", "d4.qcow2"]);
  });

  it("selectDisks - by alias or disk id; an unknown one is an ExportError listing the disks", () => {
    const p = point([
      { diskId: "d1", alias: "boot" },
      { diskId: "d2", alias: "data" },
    ]);
    expect(selectDisks(p, undefined).map((d) => d.disk.diskId)).toEqual(["d1", "d2"]);
    expect(selectDisks(p, ["data"]).map((d) => d.disk.diskId)).toEqual(["d2"]);
    expect(selectDisks(p, ["d1", "data"]).map((d) => d.disk.diskId)).toEqual(["d1", "d2"]);
    let err: unknown;
    try {
      selectDisks(p, ["logs"]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ExportError);
    expect((err as ExportError).code).toBe("EXPORT_UNKNOWN_DISK");
    expect((err as Error).message).toBe("restore point #3 of VM web01 has no disk 'logs'; its disks: boot (d1), data (d2)");
  });
});

describe("export OVF for an OVA", () => {
  it("findDiskFile - the engine's dialect by href '<disk>/<image>', the OVA dialect through Disk fileRef", () => {
    expect(findDiskFile(NATIVE, D1)).toEqual({ href: `${D1}/${I1}`, imageId: I1 });
    expect(findDiskFile(OVA_DIALECT, D2)).toEqual({ href: I2, imageId: I2 });
    expect(findDiskFile(NATIVE, "nope")).toBeUndefined();
    expect(findDiskFile(`<ovf vm="x"/>`, D1)).toBeUndefined();
  });

  it("ovaMemberNames - image ids as oVirt names members; the disk id when the OVF does not list the disk", () => {
    expect(ovaMemberNames(NATIVE, [D1, D2])).toEqual([I1, I2]);
    expect(ovaMemberNames(`<ovf/>`, ["d1", "d2"])).toEqual(["d1", "d2"]);
    // extract_ova.py skips names ending in ovf/dat and 'pad'; long names would need PAX headers.
    expect(ovaMemberNames(`<ovf/>`, ["vm.ovf", "pad", "x.dat", "y".repeat(120)])).toEqual(["disk1", "disk2", "disk3", "disk4"]);
  });

  it("rewriteOvfForOva - every exported disk's File names its member with its size; nothing else changes", () => {
    const { ovf, warnings } = rewriteOvfForOva(NATIVE, [
      { diskId: D1, member: I1, bytes: 1048576 },
      { diskId: D2, member: I2, bytes: 2097152 },
    ]);
    expect(attr(ovf, "File", "ovf:href")).toEqual([I1, I2]);
    expect(attr(ovf, "File", "ovf:size")).toEqual(["1048576", "2097152"]);
    expect(attr(ovf, "File", "ovf:id")).toEqual([I1, I2]);
    expect(ovf).toContain('ovf:description="a &gt; b"');
    expect(ovf.replace(/<File [^>]*>/g, "")).toBe(NATIVE.replace(/<File [^>]*>/g, ""));
    expect(warnings).toEqual([]);
  });

  it("rewriteOvfForOva - a disk left out loses its File, Disk and disk Item (engine dialect); NIC and CPU items stay", () => {
    const { ovf, warnings } = rewriteOvfForOva(NATIVE, [{ diskId: D2, member: I2, bytes: 512 }]);
    expect(attr(ovf, "File", "ovf:href")).toEqual([I2]);
    expect(attr(ovf, "Disk", "ovf:diskId")).toEqual([I2]);
    expect(ovf).not.toContain(I1);
    expect(ovf).toContain("<rasd:Caption>nic1</rasd:Caption>");
    expect(ovf).toContain("<rasd:Caption>2 virtual cpu</rasd:Caption>");
    expect(ovf).toContain(`<rasd:HostResource>${D2}/${I2}</rasd:HostResource>`);
    expect(warnings).toEqual(["1 disk file not in this export removed from the OVF (with their Disk and device entries)"]);
  });

  it("rewriteOvfForOva - the OVA dialect: same for self-closed Files and ovf:/disk/<id> host resources", () => {
    const { ovf } = rewriteOvfForOva(OVA_DIALECT, [{ diskId: D1, member: I1, bytes: 4096 }]);
    expect(attr(ovf, "File", "ovf:href")).toEqual([I1]);
    expect(attr(ovf, "File", "ovf:size")).toEqual(["4096"]);
    expect(ovf).toMatch(new RegExp(`<File ovf:href="${I1}" ovf:id="${I1}" ovf:size="4096"/>`));
    expect(attr(ovf, "Disk", "ovf:diskId")).toEqual([D1]);
    expect(ovf).not.toContain(D2);
    expect(ovf).not.toContain(I2);
  });

  it("rewriteOvfForOva - a disk the OVF does not list gets a File in References; without References, a warning", () => {
    const withRefs = rewriteOvfForOva(`<Envelope><References></References></Envelope>`, [{ diskId: "d9", member: "d9", bytes: 1024 }]);
    expect(withRefs.ovf).toBe(`<Envelope><References><File ovf:href="d9" ovf:id="d9" ovf:size="1024"></File></References></Envelope>`);
    expect(withRefs.warnings[0]).toMatch(/does not list disk d9/);
    const none = rewriteOvfForOva(`<ovf vm="x"/>`, [{ diskId: "d9", member: "d9", bytes: 1024 }]);
    expect(none.ovf).toBe(`<ovf vm="x"/>`);
    expect(none.warnings[0]).toMatch(/no References/);
  });
});

describe("export tar layout", () => {
  it("tarEntrySize / padBefore - 512-byte blocks; a pad member puts the next disk's data on 4 KiB (pack_ova.py)", () => {
    expect(tarEntrySize(0)).toBe(512);
    expect(tarEntrySize(48)).toBe(1024);
    expect(tarEntrySize(1024)).toBe(1536);
    // After a 1024-byte OVF entry: pad header (512) + 2048 bytes, then the disk header, data at 4096.
    expect(padBefore(1024)).toBe(2048);
    expect(1024 + tarEntrySize(2048) + 512).toBe(4096);
    expect(padBefore(3584)).toBeUndefined();
    expect(padBefore(4096)).toBe(3072);
    expect(padBefore(3072)).toBe(0);
  });

  it("tar-stream headers - ustar, and a size of 8 GiB or more in GNU base-256 (0x80 first byte), which extract_ova.py reads", async () => {
    const header = async (size: number) => {
      const pack = tar.pack();
      const w = pack.entry({ name: "img-1", size, mode: 0o644, mtime: new Date(0), type: "file" }, () => {});
      w.on("error", () => {});
      pack.on("error", () => {});
      w.write(Buffer.alloc(512));
      let got = Buffer.alloc(0);
      for await (const c of pack) {
        got = Buffer.concat([got, c as Buffer]);
        if (got.length >= 512) break;
      }
      pack.destroy();
      return got.subarray(0, 512);
    };
    const small = await header(1024 ** 3);
    expect(small.subarray(0, 6).toString()).toBe("img-1\0");
    expect(small.subarray(124, 136).toString()).toBe("10000000000 ");
    expect(small.subarray(257, 263).toString("latin1")).toBe("ustar\0");
    const big = await header(9 * 1024 ** 3);
    expect(big[124]).toBe(0x80);
    expect(Number(big.subarray(125, 136).readBigUInt64BE(3))).toBe(9 * 1024 ** 3);
  });

  it("tarMemberSpec - a qcow2 at an offset of the tar as a json: spec qemu opens", () => {
    const spec = tarMemberSpec("/o/a,b.ova", 4096, 65536);
    expect(spec.startsWith("json:")).toBe(true);
    expect(JSON.parse(spec.slice(5))).toEqual({ driver: "qcow2", file: { driver: "raw", offset: 4096, size: 65536, file: { driver: "file", filename: "/o/a,b.ova" } } });
  });
});
