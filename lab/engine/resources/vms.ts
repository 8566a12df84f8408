import { randomUUID } from "node:crypto";
import type { Engine } from "../engine.ts";
import {
  actionDone,
  cannot,
  created,
  HttpFault,
  incomplete,
  obj,
  ok,
  pathId,
  readBool,
  readEnum,
  readInt,
  str,
  type Ctx,
} from "../http.ts";
import { collection, encodeVm } from "../json.ts";
import type { BootDevice, LabCluster, LabSnapshot, LabVm } from "../model.ts";
import { buildOvf, parseOvf, type OvfNic } from "../ovf.ts";
import type { Router } from "../router.ts";
import { matchesSearch, searchParams } from "../search.ts";
import { deleteDisk } from "./disks.ts";
import { addNic } from "./nics.ts";

const MiB = 1024 * 1024;

export function vmOvf(e: Engine, vm: LabVm): string {
  const disks = vm.attachments
    .map((att) => ({ att, disk: e.findDisk(att.diskId) }))
    .filter((x): x is { att: (typeof vm.attachments)[number]; disk: NonNullable<ReturnType<Engine["findDisk"]>> } => !!x.disk);
  return buildOvf(vm, disks, e.st);
}

function allContent(ctx: Ctx): boolean {
  const v = ctx.query.get("all_content");
  return v !== null && v.toLowerCase() === "true";
}

export interface NewVm {
  id?: string;
  name: string;
  description?: string;
  memory?: number;
  clusterId?: string;
  cpu?: { sockets?: number; cores?: number; threads?: number };
  bootDevices?: BootDevice[];
  osType?: string;
  status?: LabVm["status"];
}

/** Create a VM record with its "Active VM" snapshot (no NICs: the Blank template has none). */
export function newVm(e: Engine, o: NewVm): LabVm {
  const vm: LabVm = {
    id: o.id ?? randomUUID(),
    name: o.name,
    description: o.description ?? "",
    status: o.status ?? "down",
    clusterId: o.clusterId ?? e.st.ids.cluster,
    memory: o.memory ?? 1024 * MiB,
    cpuSockets: o.cpu?.sockets ?? 1,
    cpuCores: o.cpu?.cores ?? 1,
    cpuThreads: o.cpu?.threads ?? 1,
    bootDevices: o.bootDevices?.length ? [...o.bootDevices] : ["hd"],
    osType: o.osType ?? "other_linux",
    createdAt: Date.now(),
    attachments: [],
    nics: [],
    activeSnapshotId: randomUUID(),
  };
  e.st.vms.push(vm);
  const active: LabSnapshot = {
    id: vm.activeSnapshotId,
    vmId: vm.id,
    description: "Active VM",
    date: vm.createdAt,
    status: "ok",
    type: "active",
    persistMemory: false,
    disks: [],
  };
  e.st.snapshots.push(active);
  e.save();
  return vm;
}

function vmNameTaken(e: Engine, name: string): boolean {
  return e.st.vms.some((v) => v.name === name);
}

function resolveCluster(e: Engine, body: Record<string, unknown>): LabCluster {
  const c = obj(body.cluster);
  const id = str(c.id);
  const name = str(c.name);
  if (!id && !name) throw incomplete("Vm", ["cluster.id|name"], "add");
  const cluster = e.st.clusters.find((x) => (id ? x.id === id.toLowerCase() : x.name === name));
  if (!cluster) throw cannot(400, "add", "VM", "Cluster ID is not valid.");
  return cluster;
}

/**
 * The NICs of an imported VM, as ImportVmCommandBase.addVmInterfaces does it with
 * VnicProfileHelper (oVirt/ovirt-engine bll/network/vm/VnicProfileHelper.java): a NIC without a
 * network stays without a profile; otherwise the network is looked up by name in the target
 * cluster, and the NIC gets the profile of the OVF's profile name (rasd:OtherResourceType) on that
 * network, else the network's first profile without port mirroring. A network that is missing (or
 * has no usable profile) leaves the NIC with no profile ("empty") and is reported once in
 * IMPORTEXPORT_IMPORT_VM_INVALID_INTERFACES. With regenerate_ids (import as a new entity) the MACs
 * come from the target's pool (shouldReassignMac) and the NICs get new ids [inferred for the ids].
 */
function importNics(e: Engine, vm: LabVm, nics: OvfNic[], asNew: boolean, correlationId?: string): void {
  const invalidNetworks: string[] = [];
  const invalidNics: string[] = [];
  for (const n of nics) {
    let profileId: string | undefined;
    if (n.network) {
      const net = e.st.networks.find((x) => x.name === n.network);
      const onNet = net ? e.st.vnicProfiles.filter((p) => p.networkId === net.id) : [];
      const profile = onNet.find((p) => p.name === n.profile) ?? onNet.find((p) => !p.portMirroring);
      if (profile) profileId = profile.id;
      else {
        if (!invalidNetworks.includes(n.network)) invalidNetworks.push(n.network);
        invalidNics.push(n.name);
      }
    }
    const keepMac = !asNew && n.mac && !e.macInUse(n.mac);
    addNic(
      e,
      vm,
      {
        ...(!asNew && n.id ? { id: n.id } : {}),
        name: n.name,
        interface: n.interface,
        ...(keepMac ? { mac: n.mac! } : {}),
        ...(profileId ? { vnicProfileId: profileId } : {}),
        linked: n.linked,
        plugged: n.plugged,
      },
      correlationId,
    );
  }
  if (invalidNetworks.length) {
    e.audit(
      "IMPORTEXPORT_IMPORT_VM_INVALID_INTERFACES",
      `While importing VM ${vm.name}, the Network/s ${invalidNetworks.join(",")} were found to be Non-VM Networks or do not exist in Cluster. Network Name was not set in the Interface/s ${invalidNics.join(",")}.`,
      { vmId: vm.id, severity: "warning" },
    );
  }
}

export function registerVms(r: Router, e: Engine): void {
  r.get("/vms", (ctx) => {
    const { search, caseSensitive, max } = searchParams(ctx.query);
    let list = e.st.vms.filter((vm) =>
      matchesSearch(search, { name: vm.name, id: vm.id, status: vm.status, description: vm.description }, { caseSensitive }),
    );
    if (max !== undefined) list = list.slice(0, max);
    const full = allContent(ctx);
    return ok(collection("vm", list.map((vm) => encodeVm(vm, e.st, full ? { ovf: vmOvf(e, vm) } : {}))));
  });

  r.get("/vms/:vm", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    return ok(encodeVm(vm, e.st, allContent(ctx) ? { ovf: vmOvf(e, vm) } : {}));
  });

  r.post("/vms", (ctx) => {
    const b = obj(ctx.body);
    const cluster = resolveCluster(e, b);
    const init = obj(b.initialization);
    const conf = obj(init.configuration);
    const memory = readInt(b.memory, "memory");
    const description = str(b.description);
    if (init.configuration !== undefined) {
      const type = readEnum(conf.type, ["ovf", "ova"] as const, "ConfigurationType");
      const data = str(conf.data);
      const missing = [...(type ? [] : ["type"]), ...(data ? [] : ["data"])];
      if (missing.length) throw incomplete("Configuration", missing, "add");
      let ovf;
      try {
        ovf = parseOvf(data!);
      } catch {
        throw cannot(400, "import", "VM", "Failed to parse the OVF configuration.");
      }
      const regenerate = readBool(init.regenerate_ids) ?? false;
      const name = str(b.name) ?? ovf.name;
      if (!name) throw incomplete("Vm", ["name"], "add");
      const id = regenerate ? randomUUID() : (ovf.vmId ?? randomUUID());
      const existing = e.findVm(id);
      if (existing) {
        throw cannot(409, "import", "VM", `Import VM failed - VM ID already exists in the system. Please remove the VM (${existing.name}) from the system first`);
      }
      if (vmNameTaken(e, name)) {
        throw cannot(409, "import", "VM", "Import VM failed - VM Name already exists in the Data Center. Please rename the VM and try again.");
      }
      const vm = newVm(e, {
        id,
        name,
        clusterId: cluster.id,
        description: description ?? ovf.description,
        memory: memory ?? ovf.memory ?? 1024 * MiB,
        ...(ovf.cpu ? { cpu: ovf.cpu } : {}),
        ...(ovf.bootDevices ? { bootDevices: ovf.bootDevices } : {}),
        osType: ovf.osType ?? "other_linux",
      });
      vm.origin = "ovirt";
      importNics(e, vm, ovf.nics, regenerate, ctx.correlationId);
      e.audit("IMPORTEXPORT_IMPORT_VM_FROM_CONFIGURATION", `VM ${vm.name} has been successfully imported from the given configuration.`, {
        vmId: vm.id,
        ...(ctx.correlationId ? { correlationId: ctx.correlationId } : {}),
      });
      // ImportVmFromConfiguration attaches, by id, each disk the OVF lists; a failure is only an audit event.
      const failed: string[] = [];
      for (const d of ovf.disks) {
        const disk = e.findDisk(d.diskId);
        const holder = disk ? e.vmOfDisk(disk.id) : undefined;
        if (!disk || disk.status !== "ok" || (holder && !disk.shareable)) {
          failed.push(d.alias || d.diskId);
          continue;
        }
        vm.attachments.push({
          diskId: disk.id,
          interface: d.interface,
          bootable: d.bootable,
          active: d.active,
          passDiscard: d.passDiscard,
          readOnly: d.readOnly,
        });
      }
      if (failed.length) {
        e.audit(
          "VM_IMPORT_FROM_CONFIGURATION_ATTACH_DISKS_FAILED",
          `VM ${vm.name} has been imported from the given configuration but the following disk(s) failed to attach: ${failed.join(", ")}.`,
          { vmId: vm.id, severity: "warning" },
        );
      }
      e.save();
      return created(encodeVm(vm, e.st), e.baseUrl);
    }
    const name = str(b.name);
    if (!name) throw incomplete("Vm", ["name"], "add");
    if (vmNameTaken(e, name)) {
      throw cannot(409, "add", "VM", "The VM name is already in use, please choose a unique name and try again.");
    }
    const vm = newVm(e, { name, clusterId: cluster.id, ...(description ? { description } : {}), ...(memory ? { memory } : {}) });
    e.audit("USER_ADD_VM", `VM ${vm.name} was created by admin@internal-authz.`, {
      vmId: vm.id,
      ...(ctx.correlationId ? { correlationId: ctx.correlationId } : {}),
    });
    return created(encodeVm(vm, e.st), e.baseUrl);
  });

  r.delete("/vms/:vm", async (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    if (e.openBackups(vm.id).length) throw cannot(409, "remove", "VM", "The VM is during a backup operation.");
    if (vm.status !== "down") throw cannot(409, "remove", "VM", "VM is running.");
    const disks = e.vmDisks(vm);
    if (disks.some((d) => d.status === "locked")) throw cannot(409, "remove", "VM", "Disk is locked. Please try again later.");
    const detachOnly = readBool(ctx.query.get("detach_only")) ?? false;
    vm.attachments = [];
    if (!detachOnly) for (const d of disks) await deleteDisk(e, d, ctx.correlationId);
    e.st.vms = e.st.vms.filter((v) => v.id !== vm.id);
    e.st.snapshots = e.st.snapshots.filter((s) => s.vmId !== vm.id);
    e.st.checkpoints = e.st.checkpoints.filter((c) => c.vmId !== vm.id);
    // The engine's audit log keeps the removed VM's id (the event links it).
    e.audit("USER_REMOVE_VM", `VM ${vm.name} was successfully removed.`, {
      vmId: vm.id,
      ...(ctx.correlationId ? { correlationId: ctx.correlationId } : {}),
    });
    e.save();
    return { status: 200 };
  });

  r.post("/vms/:vm/start", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    startVm(e, vm, ctx.correlationId);
    return actionDone(ctx);
  });
  r.post("/vms/:vm/stop", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    stopVm(e, vm, "stop", ctx.correlationId);
    return actionDone(ctx);
  });
  r.post("/vms/:vm/shutdown", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    stopVm(e, vm, "shutdown", ctx.correlationId);
    return actionDone(ctx);
  });
  r.post("/vms/:vm/reboot", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    if (vm.status !== "up") throw cannot(409, "reboot", "VM", "VM is not running.");
    return actionDone(ctx);
  });
  r.post("/vms/:vm/suspend", (ctx) => {
    const vm = e.vm(pathId(ctx, "vm"));
    if (vm.status !== "up") throw cannot(409, "hibernate", "VM", "VM is not running.");
    vm.status = "suspended";
    e.save();
    return actionDone(ctx);
  });
}

/** The armed failNextBoot fault for this VM (by name or id, or one for any VM), consumed. */
function takeBootFault(e: Engine, vm: LabVm): boolean {
  const i = e.faults.failBoot.findIndex((f) => !f.vm || f.vm === vm.name || f.vm === vm.id);
  if (i < 0) return false;
  e.faults.failBoot.splice(i, 1);
  return true;
}

/**
 * RunVm: down → wait_for_launch → powering_up → up (vmPowerMs split in two). With failNextBoot
 * armed the VM goes back to `down` from wait_for_launch and the engine logs VM_DOWN_ERROR
 * ("VM <name> is down with error. Exit message: Lost connection with qemu process." — wording
 * from a real engine.log line) and USER_INITIATED_RUN_VM_FAILED (the rerun that has no other
 * host to try [inferred]).
 */
export function startVm(e: Engine, vm: LabVm, correlationId?: string, o: { ignoreFaults?: boolean } = {}): void {
  if (e.openBackups(vm.id).length) throw cannot(409, "run", "VM", "The VM is during a backup operation.");
  if (vm.status === "up" || vm.status === "powering_up" || vm.status === "wait_for_launch") throw cannot(409, "run", "VM", "VM is running.");
  if (vm.status !== "down" && vm.status !== "suspended") throw new HttpFault(409, "Operation Failed", `[Cannot run VM. VM status is ${vm.status}.]`);
  const disks = e.vmDisks(vm);
  if (disks.some((d) => d.status === "locked")) throw cannot(409, "run", "VM", "Disk is locked. Please try again later.");
  const fail = o.ignoreFaults ? false : takeBootFault(e, vm);
  const host = `${e.name}-host1`;
  const corr = correlationId ? { correlationId } : {};
  vm.status = "wait_for_launch";
  e.audit("USER_STARTED_VM", `VM ${vm.name} was started by admin@internal-authz (Host: ${host}).`, { vmId: vm.id, ...corr });
  const half = Math.max(1, Math.floor(e.timings.vmPowerMs / 2));
  e.later(half, () => {
    if (vm.status !== "wait_for_launch") return;
    if (fail) {
      vm.status = "down";
      e.audit("VM_DOWN_ERROR", `VM ${vm.name} is down with error. Exit message: Lost connection with qemu process.`, {
        vmId: vm.id,
        severity: "error",
        ...corr,
      });
      e.audit("USER_INITIATED_RUN_VM_FAILED", `Failed to run VM ${vm.name} on Host ${host}.`, { vmId: vm.id, severity: "warning", ...corr });
      return;
    }
    vm.status = "powering_up";
    e.later(Math.max(1, e.timings.vmPowerMs - half), () => {
      if (vm.status !== "powering_up") return;
      vm.status = "up";
      e.audit("USER_RUN_VM", `VM ${vm.name} started on Host ${host}`, { vmId: vm.id, ...corr });
    });
  });
  e.save();
}

export function stopVm(e: Engine, vm: LabVm, how: "stop" | "shutdown", correlationId?: string): void {
  // Only live/cold backups block stop/shutdown; the lab's backups are hybrid (§5.5).
  if (vm.status === "down") throw cannot(409, how === "stop" ? "stop" : "shut down", "VM", "VM is not running.");
  if (how === "stop") {
    vm.status = "down";
    e.audit("USER_STOP_VM", `VM ${vm.name} powered off by admin@internal-authz.`, { vmId: vm.id, ...(correlationId ? { correlationId } : {}) });
  } else {
    vm.status = "powering_down";
    e.audit("USER_INITIATED_SHUTDOWN_VM", `VM shutdown initiated by admin@internal-authz on VM ${vm.name}.`, {
      vmId: vm.id,
      ...(correlationId ? { correlationId } : {}),
    });
    e.later(e.timings.vmPowerMs, () => {
      if (vm.status === "powering_down") {
        vm.status = "down";
        e.audit("VM_DOWN", `VM ${vm.name} is down. Exit message: User shut down from within the guest`, { vmId: vm.id });
      }
    });
  }
  e.save();
}
