import { randomUUID } from "node:crypto";
import type { Engine } from "../engine.ts";
import { cannot, created, HttpFault, incomplete, NotFound, obj, ok, pathId, readBool, readEnum, str, type Ctx } from "../http.ts";
import { collection, encodeNic } from "../json.ts";
import { NIC_INTERFACES, type LabNic, type LabVm, type NicInterface } from "../model.ts";
import type { Router } from "../router.ts";

/**
 * `/vms/{vm}/nics` (VmNicsService / VmNicService). The JSON follows NicMapper (ovirt-engine
 * restapi types): `vnic_profile` is written only when the NIC has a profile, and a PUT with
 * `"vnic_profile": {}` (no id) clears it: `entity.setVnicProfileId(null)` — the NIC stays, on
 * no network ("empty" in the Admin Portal). Messages marked [inferred] are the lab's wording of
 * the engine's validations.
 */

/** VmInterfaceType descriptions, as audit messages show the type. */
const TYPE_DESCRIPTION: Record<NicInterface, string> = {
  virtio: "VirtIO",
  e1000: "e1000",
  rtl8139: "rtl8139",
  rtl8139_virtio: "Dual mode rtl8139, VirtIO",
  spapr_vlan: "sPAPR VLAN",
  pci_passthrough: "PCI Passthrough",
};

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export interface NicInput {
  id?: string;
  name: string;
  interface?: NicInterface;
  mac?: string;
  vnicProfileId?: string;
  linked?: boolean;
  plugged?: boolean;
}

function checkMac(e: Engine, action: string, mac: string, except?: LabNic): string {
  if (!MAC.test(mac)) throw cannot(400, action, "Interface", `MAC Address ${mac} is not valid.`); // [inferred]
  // Multicast addresses (odd first octet) are refused too [inferred].
  if (Number.parseInt(mac.slice(0, 2), 16) & 1) throw cannot(400, action, "Interface", `MAC Address ${mac} is a multicast address.`);
  const lower = mac.toLowerCase();
  if (lower !== except?.mac.toLowerCase() && e.macInUse(lower)) {
    throw cannot(409, action, "Interface", `MAC Address ${lower} is already in use.`); // [inferred]
  }
  return lower;
}

function checkProfile(e: Engine, action: string, id: string): string {
  const p = e.st.vnicProfiles.find((x) => x.id === id.toLowerCase());
  if (!p) throw cannot(400, action, "Interface", "The specified vNIC Profile doesn't exist."); // [inferred]
  return p.id;
}

/** Add a NIC to a VM (validated like AddVmInterfaceCommand, roughly); the MAC comes from the pool unless given. */
export function addNic(e: Engine, vm: LabVm, input: NicInput, correlationId?: string): LabNic {
  if (!input.name) throw incomplete("Nic", ["name"], "add");
  if (vm.nics.some((n) => n.name === input.name)) {
    throw cannot(409, "add", "Interface", "The VM Network Interface name is already in use."); // [inferred]
  }
  const nic: LabNic = {
    id: input.id ?? randomUUID(),
    name: input.name,
    interface: input.interface ?? "virtio",
    mac: input.mac !== undefined ? checkMac(e, "add", input.mac) : e.allocateMac(),
    linked: input.linked ?? true,
    plugged: input.plugged ?? true,
  };
  if (input.vnicProfileId) nic.vnicProfileId = checkProfile(e, "add", input.vnicProfileId);
  vm.nics.push(nic);
  e.audit("NETWORK_ADD_VM_INTERFACE", `Interface ${nic.name} (${TYPE_DESCRIPTION[nic.interface]}) was added to VM ${vm.name}. (User: admin@internal-authz)`, {
    vmId: vm.id,
    ...(correlationId ? { correlationId } : {}),
  });
  e.save();
  return nic;
}

function nicInput(b: Record<string, unknown>): Partial<NicInput> & { profile?: "clear" | string } {
  const out: Partial<NicInput> & { profile?: "clear" | string } = {};
  const name = str(b.name);
  if (name !== undefined) out.name = name;
  const iface = readEnum(b.interface, NIC_INTERFACES, "NicInterface");
  if (iface) out.interface = iface;
  const mac = str(obj(b.mac).address);
  if (mac !== undefined) out.mac = mac;
  const linked = readBool(b.linked);
  if (linked !== undefined) out.linked = linked;
  const plugged = readBool(b.plugged);
  if (plugged !== undefined) out.plugged = plugged;
  if (b.vnic_profile !== undefined && b.vnic_profile !== null) {
    const id = str(obj(b.vnic_profile).id);
    out.profile = id ?? "clear";
  } else if (b.vnic_profile === null) {
    out.profile = "clear";
  }
  return out;
}

export function registerNics(r: Router, e: Engine): void {
  const find = (ctx: Ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const id = pathId(ctx, "nic");
    const nic = vm.nics.find((n) => n.id === id);
    if (!nic) throw new NotFound();
    return { vm, nic };
  };

  r.get("/vms/:vm/nics", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    return ok(collection("nic", vm.nics.map((n) => encodeNic(vm.id, n))));
  });

  r.get("/vms/:vm/nics/:nic", (ctx) => {
    const { vm, nic } = find(ctx);
    return ok(encodeNic(vm.id, nic));
  });

  r.post("/vms/:vm/nics", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    const input = nicInput(obj(ctx.body));
    const nic = addNic(
      e,
      vm,
      {
        name: input.name ?? "",
        ...(input.interface ? { interface: input.interface } : {}),
        ...(input.mac !== undefined ? { mac: input.mac } : {}),
        ...(input.profile && input.profile !== "clear" ? { vnicProfileId: input.profile } : {}),
        ...(input.linked !== undefined ? { linked: input.linked } : {}),
        ...(input.plugged !== undefined ? { plugged: input.plugged } : {}),
      },
      ctx.correlationId,
    );
    return created(encodeNic(vm.id, nic), e.baseUrl);
  });

  r.put("/vms/:vm/nics/:nic", (ctx) => {
    const { vm, nic } = find(ctx);
    const input = nicInput(obj(ctx.body));
    if (input.name !== undefined && input.name !== nic.name) {
      if (!input.name) throw new HttpFault(400, "Incomplete parameters", "Nic [name] required for update");
      if (vm.nics.some((n) => n !== nic && n.name === input.name)) {
        throw cannot(409, "edit", "Interface", "The VM Network Interface name is already in use."); // [inferred]
      }
    }
    const mac = input.mac !== undefined ? checkMac(e, "edit", input.mac, nic) : undefined;
    const profile = input.profile && input.profile !== "clear" ? checkProfile(e, "edit", input.profile) : input.profile;
    if (input.name) nic.name = input.name;
    if (input.interface) nic.interface = input.interface;
    if (mac) nic.mac = mac;
    if (input.linked !== undefined) nic.linked = input.linked;
    if (input.plugged !== undefined) nic.plugged = input.plugged;
    if (profile === "clear") delete nic.vnicProfileId;
    else if (profile) nic.vnicProfileId = profile;
    e.audit("NETWORK_UPDATE_VM_INTERFACE", `Interface ${nic.name} (${TYPE_DESCRIPTION[nic.interface]}) was updated for VM ${vm.name}. (User: admin@internal-authz)`, {
      vmId: vm.id,
      ...(ctx.correlationId ? { correlationId: ctx.correlationId } : {}),
    });
    e.save();
    return ok(encodeNic(vm.id, nic));
  });

  r.delete("/vms/:vm/nics/:nic", (ctx) => {
    const { vm, nic } = find(ctx);
    // A plugged NIC of a running VM is hot-unplugged by the engine first; the lab just removes it.
    vm.nics = vm.nics.filter((n) => n !== nic);
    e.audit("NETWORK_REMOVE_VM_INTERFACE", `Interface ${nic.name} (${TYPE_DESCRIPTION[nic.interface]}) was removed from VM ${vm.name}. (User: admin@internal-authz)`, {
      vmId: vm.id,
      ...(ctx.correlationId ? { correlationId: ctx.correlationId } : {}),
    });
    e.save();
    return { status: 200 };
  });
}
