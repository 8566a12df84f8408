/**
 * What a restore to the DR engine needs from the lab, through Ferry's engine client (not the
 * control shortcuts): NIC CRUD, networks / vNIC profiles / clusters / storage domains, and an
 * OVF exported by PRD imported on DR with the same CPU topology, memory, boot order and NICs —
 * mapped to DR's profiles by network name, left without a profile when DR lacks the network.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EngineConflictError, EngineFaultError, NotFoundError, createEngineClient, type EngineClient } from "../adapters/ovirt/mod.ts";
import { FAST_TIMINGS, RawApi, startTestLab, type TestLab } from "../lab/test-support.ts";
import type { LabEngine } from "../lab/mod.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

let t: TestLab;
let prd: LabEngine;
let dr: LabEngine;
let prdApi: EngineClient;
let drApi: EngineClient;

const client = (e: LabEngine) =>
  createEngineClient({ url: e.url, user: e.user, password: e.password, caPem: e.caPem, pollIntervalMs: 20, correlationId: "lab-restore-nics" });

beforeAll(async () => {
  t = await startTestLab({ engines: ["prd", "dr"], timings: FAST_TIMINGS });
  prd = t.engine("prd");
  dr = t.engine("dr");
  prdApi = client(prd);
  drApi = client(dr);
}, 60_000);

afterAll(async () => {
  await prdApi?.close();
  await drApi?.close();
  await t?.stop();
});

describe("lab NICs, networks and profiles (engine client)", () => {
  it("nics - a control VM has nic1 on ovirtmgmt; add with a profile, without one, with a MAC; duplicate MAC and name are 409", async () => {
    const vm = await prd.control.createVm({ name: "nic01", disks: [{ size: 4 * MiB }] });
    const [profile] = (await prdApi.vnicProfiles.list()).filter((p) => p.name === "ovirtmgmt");
    const before = await prdApi.nics.list(vm.id);
    expect(before.map((n) => [n.name, n.interface, n.vnic_profile?.id, n.plugged, n.linked])).toEqual([["nic1", "virtio", profile!.id, true, true]]);
    expect(before[0]!.mac?.address).toMatch(/^56:6f(:[0-9a-f]{2}){4}$/);

    const added = await prdApi.nics.add(vm.id, { name: "nic2", interface: "e1000", vnicProfileId: profile!.id });
    expect(added).toMatchObject({ name: "nic2", interface: "e1000", vnic_profile: { id: profile!.id }, vm: { id: vm.id } });
    expect(added.mac?.address).not.toBe(before[0]!.mac?.address);

    const empty = await prdApi.nics.add(vm.id, { name: "nic3", mac: "56:6f:aa:bb:cc:01" });
    expect(empty.vnic_profile).toBeUndefined();
    expect(empty.interface).toBe("virtio");
    expect(empty.mac?.address).toBe("56:6f:aa:bb:cc:01");

    const dupMac = await prdApi.nics.add(vm.id, { name: "nic4", mac: "56:6f:aa:bb:cc:01" }).catch((e: unknown) => e);
    expect(dupMac).toBeInstanceOf(EngineConflictError);
    expect((dupMac as EngineConflictError).detail).toMatch(/^\[Cannot add Interface\. .*already in use/);
    const dupName = await prdApi.nics.add(vm.id, { name: "nic2" }).catch((e: unknown) => e);
    expect(dupName).toBeInstanceOf(EngineConflictError);
    const noName = await prdApi.nics.add(vm.id, { name: "" }).catch((e: unknown) => e);
    expect(noName).toBeInstanceOf(EngineFaultError);
    expect((noName as EngineFaultError).status).toBe(400);

    // The wire: booleans as strings, the MAC nested, the profile a reference with an href.
    const raw = await new RawApi(prd).get(`/vms/${vm.id}/nics/${added.id}`);
    expect(raw.json).toMatchObject({ linked: "true", plugged: "true", mac: { address: added.mac!.address }, vnic_profile: { href: `/ovirt-engine/api/vnicprofiles/${profile!.id}` } });
    expect((await new RawApi(prd).get(`/vms/${vm.id}/nics`)).json.nic).toHaveLength(3);

    // Clear the profile ("vnic_profile": {}), set it again, remove the NIC.
    const cleared = await prdApi.nics.update(vm.id, added.id, { vnicProfileId: null });
    expect(cleared.vnic_profile).toBeUndefined();
    expect((await prdApi.nics.get(vm.id, added.id)).vnic_profile).toBeUndefined();
    const again = await prdApi.nics.update(vm.id, added.id, { vnicProfileId: profile!.id });
    expect(again.vnic_profile?.id).toBe(profile!.id);
    const badProfile = await prdApi.nics.update(vm.id, added.id, { vnicProfileId: "00000000-0000-4000-8000-000000000000" }).catch((e: unknown) => e);
    expect((badProfile as EngineFaultError).status).toBe(400);
    await prdApi.nics.remove(vm.id, added.id);
    expect((await prdApi.nics.list(vm.id)).map((n) => n.name)).toEqual(["nic1", "nic3"]);
    await expect(prdApi.nics.get(vm.id, added.id)).rejects.toBeInstanceOf(NotFoundError);
    const codes = (await prdApi.events.list({ max: 20 })).filter((e) => e.vm?.id === vm.id).map((e) => e.code);
    expect(codes).toEqual(expect.arrayContaining([932, 934, 930]));
  });

  it("infrastructure - several networks, profiles, clusters and storage domains; available/used in bytes (whole GiB)", async () => {
    const net = dr.control.addNetwork({ name: "backend", vnicProfiles: ["backend", "backend-mirror"] });
    dr.control.addNetwork({ name: "dmz" });
    dr.control.addCluster({ name: "Secondary" });
    dr.control.addStorageDomain({ name: "fast", availableBytes: 200 * GiB + 123 });

    const networks = await drApi.networks.list();
    expect(networks.map((n) => n.name)).toEqual(["ovirtmgmt", "backend", "dmz"]);
    expect((await drApi.networks.findByName("backend"))?.id).toBe(net.id);
    expect(await drApi.networks.findByName("nope")).toBeUndefined();
    const profiles = await drApi.vnicProfiles.list();
    const byNet = (id: string) => profiles.filter((p) => p.network?.id === id).map((p) => p.name);
    expect(byNet(net.id)).toEqual(["backend", "backend-mirror"]);
    expect(byNet(networks.find((n) => n.name === "dmz")!.id)).toEqual(["dmz"]);
    expect(byNet(networks.find((n) => n.name === "ovirtmgmt")!.id)).toEqual(["ovirtmgmt"]);

    expect((await drApi.clusters.list()).map((c) => c.name)).toEqual(["Default", "Secondary"]);
    expect((await drApi.clusters.findByName("Secondary"))?.name).toBe("Secondary");

    const fast = await drApi.storageDomains.findByName("fast");
    expect(fast?.available).toBe(200 * GiB);
    expect(fast?.used).toBe(0);
    const raw = await new RawApi(dr).get("/storagedomains?search=name%3Dfast");
    expect(raw.json.storage_domain[0].available).toBe(String(200 * GiB));
    dr.control.setStorageAvailable("fast", 7 * GiB + 5);
    expect((await drApi.storageDomains.get(fast!.id)).available).toBe(7 * GiB);
  });

  it("ovf import - PRD's OVF creates a DR VM with the same CPU, memory, boot order and NICs mapped by network name", async () => {
    prd.control.addNetwork({ name: "backend" });
    prd.control.addNetwork({ name: "storage-net" });
    const src = await prd.control.createVm({
      name: "web01",
      disks: [{ alias: "web01_os", size: 8 * MiB }],
      memory: 3 * GiB,
      cpu: { sockets: 2, cores: 4, threads: 2 },
      bootDevices: ["network", "hd"],
      nics: [
        { name: "nic1", network: "ovirtmgmt" },
        { name: "nic2", network: "backend", interface: "e1000" },
        { name: "nic3", network: "storage-net", interface: "rtl8139" },
      ],
    });
    const prdVm = await prdApi.vms.get(src.id);
    expect(prdVm.cpu?.topology).toEqual({ sockets: 2, cores: 4, threads: 2 });
    expect(prdVm.memory).toBe(3 * GiB);
    expect(prdVm.os?.boot?.devices).toEqual(["network", "hd"]);
    const ovf = await prdApi.vms.getOvf(src.id);
    expect(ovf).toContain("<rasd:Connection>storage-net</rasd:Connection>");

    // DR has ovirtmgmt and backend (from the test above) but no storage-net.
    const drProfiles = await drApi.vnicProfiles.list();
    const drNets = new Map((await drApi.networks.list()).map((n) => [n.id, n.name]));
    const profileOf = (net: string, name: string) => drProfiles.find((p) => p.name === name && drNets.get(p.network!.id) === net)!.id;
    const { id: clusterId } = (await drApi.clusters.findByName("Default"))!;
    const created = await drApi.vms.createFromOvf({ ovf, cluster: { id: clusterId }, name: "web01-restored" });
    expect(created.id).not.toBe(src.id);
    const vm = await drApi.vms.get(created.id);
    expect(vm.cpu?.topology).toEqual({ sockets: 2, cores: 4, threads: 2 });
    expect(vm.memory).toBe(3 * GiB);
    expect(vm.os?.boot?.devices).toEqual(["network", "hd"]);
    expect(vm.status).toBe("down");

    const nics = await drApi.nics.list(created.id);
    expect(nics.map((n) => [n.name, n.interface, n.vnic_profile?.id])).toEqual([
      ["nic1", "virtio", profileOf("ovirtmgmt", "ovirtmgmt")],
      ["nic2", "e1000", profileOf("backend", "backend")],
      ["nic3", "rtl8139", undefined],
    ]);
    // regenerate_ids (import as a new entity): MACs come from DR's pool, not PRD's.
    const prdMacs = new Set(src.nics.map((n) => n.mac));
    expect(nics.every((n) => n.mac?.address && !prdMacs.has(n.mac.address))).toBe(true);
    expect(nics.map((n) => n.id).some((id) => src.nics.some((s) => s.id === id))).toBe(false);

    const events = await drApi.events.list({ max: 30 });
    const invalid = events.find((e) => e.code === 9600 && e.vm?.id === created.id);
    expect(invalid?.description).toBe(
      "While importing VM web01-restored, the Network/s storage-net were found to be Non-VM Networks or do not exist in Cluster. Network Name was not set in the Interface/s nic3.",
    );
    expect(invalid?.severity).toBe("warning");

    // A restore that wants the source's MAC back sets it (free on DR).
    const withMac = await drApi.nics.update(created.id, nics[0]!.id, { mac: src.nics[0]!.mac });
    expect(withMac.mac?.address).toBe(src.nics[0]!.mac);
    const taken = await drApi.nics.update(created.id, nics[1]!.id, { mac: src.nics[0]!.mac }).catch((e: unknown) => e);
    expect(taken).toBeInstanceOf(EngineConflictError);

    // The restore then maps the unmapped NIC itself (or leaves it empty).
    const fixed = await drApi.nics.update(created.id, nics[2]!.id, { vnicProfileId: profileOf("backend", "backend-mirror") });
    expect(fixed.vnic_profile?.id).toBe(profileOf("backend", "backend-mirror"));

    // Without regenerate_ids the NICs keep their ids and MACs (free on DR).
    const kept = await drApi.vms.createFromOvf({ ovf, cluster: { name: "Secondary" }, name: "web01-same-ids", regenerateIds: false });
    expect(kept.id).toBe(src.id);
    expect(kept.cluster?.id).toBe((await drApi.clusters.findByName("Secondary"))!.id);
    const keptNics = await drApi.nics.list(kept.id);
    expect(keptNics.map((n) => n.id)).toEqual(src.nics.map((n) => n.id));
    // nic1's MAC is in use on DR now (set above): that one comes from DR's pool, the others are kept.
    expect(keptNics.map((n) => n.mac?.address === src.nics.find((s) => s.id === n.id)!.mac)).toEqual([false, true, true]);
    // Both imports also tried to attach PRD's disk ids, which DR does not have.
    expect(events.some((e) => e.code === 1221 && e.vm?.id === created.id)).toBe(true);
  });
});
