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
import type { LabSnapshot, LabVm } from "../model.ts";
import { buildOvf, parseOvf } from "../ovf.ts";
import type { Router } from "../router.ts";
import { matchesSearch, searchParams } from "../search.ts";
import { deleteDisk } from "./disks.ts";

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

/** Create a VM record with its "Active VM" snapshot. */
export function newVm(e: Engine, o: { id?: string; name: string; description?: string; memory?: number; cpuCores?: number; osType?: string; status?: LabVm["status"] }): LabVm {
  const vm: LabVm = {
    id: o.id ?? randomUUID(),
    name: o.name,
    description: o.description ?? "",
    status: o.status ?? "down",
    clusterId: e.st.ids.cluster,
    memory: o.memory ?? 1024 * MiB,
    cpuCores: o.cpuCores ?? 1,
    osType: o.osType ?? "other_linux",
    createdAt: Date.now(),
    attachments: [],
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

function resolveCluster(e: Engine, body: Record<string, unknown>): void {
  const c = obj(body.cluster);
  const id = str(c.id);
  const name = str(c.name);
  if (!id && !name) throw incomplete("Vm", ["cluster.id|name"], "add");
  if (id ? id.toLowerCase() !== e.st.ids.cluster : name !== "Default") {
    throw cannot(400, "add", "VM", "Cluster ID is not valid.");
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
    resolveCluster(e, b);
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
        description: description ?? ovf.description,
        memory: memory ?? ovf.memory ?? 1024 * MiB,
        cpuCores: ovf.cpuCores ?? 1,
        osType: ovf.osType ?? "other_linux",
      });
      vm.origin = "ovirt";
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
    const vm = newVm(e, { name, ...(description ? { description } : {}), ...(memory ? { memory } : {}) });
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
    e.audit("USER_REMOVE_VM", `VM ${vm.name} was successfully removed.`, {
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

export function startVm(e: Engine, vm: LabVm, correlationId?: string): void {
  if (e.openBackups(vm.id).length) throw cannot(409, "run", "VM", "The VM is during a backup operation.");
  if (vm.status === "up" || vm.status === "powering_up") throw cannot(409, "run", "VM", "VM is running.");
  if (vm.status !== "down" && vm.status !== "suspended") throw new HttpFault(409, "Operation Failed", `[Cannot run VM. VM status is ${vm.status}.]`);
  const disks = e.vmDisks(vm);
  if (disks.some((d) => d.status === "locked")) throw cannot(409, "run", "VM", "Disk is locked. Please try again later.");
  vm.status = "powering_up";
  e.audit("USER_RUN_VM", `VM ${vm.name} started on Host ${e.name}-host1`, { vmId: vm.id, ...(correlationId ? { correlationId } : {}) });
  e.later(e.timings.vmPowerMs, () => {
    if (vm.status === "powering_up") vm.status = "up";
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
