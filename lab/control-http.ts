import type { IncomingMessage, ServerResponse } from "node:http";
import { ControlError, type FaultPhase, type LabControl, type LabDiskInput, type LabNicInput, type LabVmInput } from "./control.ts";
import { HttpFault, readBody, sendJson } from "./engine/http.ts";
import type { BackupSupport } from "./engine/resources/backups.ts";
import type { BootDevice, NicInterface } from "./engine/model.ts";

/**
 * The control API over HTTP, under `/ferry-lab/` on each engine (same admin credentials as the
 * API: Basic or Bearer). JSON in, JSON out; errors are `{"error": "..."}` with 400/404/409.
 *
 *   GET  /ferry-lab/status
 *   GET  /ferry-lab/events?max=N
 *   POST /ferry-lab/vms                          {name, disks:[{size, format?, qcowVersion?, backup?, alias?, storageDomain?}], status?,
 *                                                 memory?, cpu?:{sockets?, cores?, threads?}, bootDevices?:["hd"|"network"|"cdrom"],
 *                                                 nics?:[{name, network, vnicProfile?, interface?, mac?}], cluster?}
 *   POST /ferry-lab/vms/{vm}/disks               {size, format?, ...}
 *   POST /ferry-lab/vms/{vm}/status              {status: "up"|"down"}
 *   POST /ferry-lab/vms/{vm}/snapshots           {description?}
 *   POST /ferry-lab/vms/{vm}/snapshots/{id}/restore
 *   POST /ferry-lab/vms/{vm}/invalidate-checkpoints
 *   POST /ferry-lab/disks/{disk}/write           {offset, length, pattern? | seed? | zero?}
 *   POST /ferry-lab/disks/{disk}/export          {path, format, atBackup?, atSnapshot?}
 *   POST /ferry-lab/rotate-ca                    {mode?: "replace"|"renew", days?}   (default replace: a new CA key; renew keeps key and subject)
 *   POST /ferry-lab/backup-support              {mode: "hybrid"|"no-incremental"|"none"}
 *   POST /ferry-lab/networks                     {name, vnicProfiles?: [names]}   (default: one profile named like the network)
 *   POST /ferry-lab/clusters                     {name}
 *   POST /ferry-lab/storagedomains               {name, availableBytes, storage?: "nfs"|"iscsi"}
 *   POST /ferry-lab/storagedomains/{sd}/available {bytes}
 *   POST /ferry-lab/revoke-tokens
 *   POST /ferry-lab/faults/fail-next-transfer    {phase, direction?}
 *   POST /ferry-lab/faults/drop-connection       {bytes}
 *   POST /ferry-lab/faults/delete-bitmap         {disk, checkpoint}
 *   POST /ferry-lab/faults/http-errors           {status, count, path?}
 *   POST /ferry-lab/faults/stall-finalize        {ms, target?}
 *   POST /ferry-lab/faults/expire-ticket         {transfer?}
 *   POST /ferry-lab/faults/fail-next-boot        {vm?}
 *   POST /ferry-lab/faults/throttle-imageio    {bytesPerSecond}
 *   POST /ferry-lab/faults/stall-imageio       {ms}
 *   POST /ferry-lab/faults/clear
 * VMs and disks may be named by id or by name/alias.
 */
export function createControlHandler(control: LabControl) {
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const parts = url.pathname.split("/").filter(Boolean).slice(1).map(decodeURIComponent);
    const method = req.method ?? "GET";
    let body: Record<string, unknown> = {};
    if (method === "POST") {
      const raw = await readBody(req, 1024 * 1024);
      if (raw.length) {
        try {
          const parsed: unknown = JSON.parse(raw.toString("utf8"));
          if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
          body = parsed as Record<string, unknown>;
        } catch {
          return sendJson(res, 400, { error: "the body must be a JSON object" });
        }
      }
    }
    try {
      const result = await dispatch(control, method, parts, body, url.searchParams);
      if (result === undefined) return sendJson(res, 404, { error: `no control route ${method} ${url.pathname}` });
      sendJson(res, 200, result);
    } catch (err) {
      if (err instanceof ControlError) return sendJson(res, err.status, { error: err.message });
      if (err instanceof InputError) return sendJson(res, 400, { error: err.message });
      // The engine's own validations (disk configuration, sizes) keep their 400/409.
      if (err instanceof HttpFault) return sendJson(res, err.status, { error: err.detail });
      throw err;
    }
  };
}

class InputError extends Error {}

const num = (b: Record<string, unknown>, k: string, required = true): number | undefined => {
  const v = b[k];
  if (v === undefined && !required) return undefined;
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) throw new InputError(`${k}: expected an integer`);
  return n;
};
const text = (b: Record<string, unknown>, k: string, required = true): string | undefined => {
  const v = b[k];
  if (v === undefined && !required) return undefined;
  if (typeof v !== "string" || !v) throw new InputError(`${k}: expected a string`);
  return v;
};

function nicInput(d: Record<string, unknown>): LabNicInput {
  const n: LabNicInput = { name: text(d, "name")!, network: text(d, "network")! };
  const vnicProfile = text(d, "vnicProfile", false);
  const iface = text(d, "interface", false);
  const mac = text(d, "mac", false);
  if (vnicProfile) n.vnicProfile = vnicProfile;
  if (iface) n.interface = iface as NicInterface; // checked by createVm
  if (mac) n.mac = mac;
  return n;
}

function vmInput(b: Record<string, unknown>): LabVmInput {
  const disks = Array.isArray(b.disks) ? b.disks.map((d) => diskInput((d ?? {}) as Record<string, unknown>)) : [];
  const o: LabVmInput = { name: text(b, "name")!, disks };
  if (b.status === "up" || b.status === "down") o.status = b.status;
  const memory = num(b, "memory", false);
  if (memory !== undefined) o.memory = memory;
  if (b.cpu !== undefined) {
    if (!b.cpu || typeof b.cpu !== "object") throw new InputError("cpu: expected an object");
    const c = b.cpu as Record<string, unknown>;
    const cpu: NonNullable<LabVmInput["cpu"]> = {};
    for (const k of ["sockets", "cores", "threads"] as const) {
      const v = num(c, k, false);
      if (v !== undefined) cpu[k] = v;
    }
    o.cpu = cpu;
  }
  if (b.bootDevices !== undefined) {
    if (!Array.isArray(b.bootDevices) || b.bootDevices.some((x) => typeof x !== "string")) throw new InputError("bootDevices: expected an array of strings");
    o.bootDevices = b.bootDevices as BootDevice[]; // checked by createVm
  }
  if (b.nics !== undefined) {
    if (!Array.isArray(b.nics)) throw new InputError("nics: expected an array");
    o.nics = b.nics.map((n) => nicInput((n ?? {}) as Record<string, unknown>));
  }
  const cluster = text(b, "cluster", false);
  if (cluster) o.cluster = cluster;
  return o;
}

function diskInput(d: Record<string, unknown>): LabDiskInput {
  const input: LabDiskInput = { size: num(d, "size")! };
  const pass = ["alias", "format", "qcowVersion", "backup", "contentType", "storageDomain"] as const;
  for (const k of pass) if (typeof d[k] === "string") (input as unknown as Record<string, unknown>)[k] = d[k];
  for (const k of ["shareable", "sparse", "active", "bootable"] as const) if (typeof d[k] === "boolean") input[k] = d[k];
  return input;
}

async function dispatch(
  c: LabControl,
  method: string,
  p: string[],
  b: Record<string, unknown>,
  q: URLSearchParams,
): Promise<unknown> {
  // "vms/<id>/snapshots/<id>/restore" → "vms/:/snapshots/:/restore"
  const idAfter = new Set(["vms", "disks", "snapshots", "storagedomains"]);
  const route = `${method} ${p.map((s, i) => (i > 0 && idAfter.has(p[i - 1]!) ? ":" : s)).join("/")}`;
  switch (route) {
    case "GET status":
      return c.status();
    case "GET events": {
      const max = q.get("max");
      return { event: c.events(max && /^\d+$/.test(max) ? { max: Number(max) } : {}) };
    }
    case "POST vms":
      return c.createVm(vmInput(b));
    case "POST vms/:/disks":
      return c.addDisk(p[1]!, diskInput(b));
    case "POST vms/:/status": {
      if (b.status !== "up" && b.status !== "down") throw new InputError("status: expected up or down");
      await c.setVmStatus(p[1]!, b.status);
      return { ok: true };
    }
    case "POST vms/:/snapshots":
      return c.takeSnapshot(p[1]!, text(b, "description", false));
    case "POST vms/:/snapshots/:/restore":
      await c.restoreSnapshot(p[1]!, p[3]!);
      return { ok: true };
    case "POST vms/:/invalidate-checkpoints":
      return { invalidated: await c.invalidateCheckpoints(p[1]!) };
    case "POST disks/:/write": {
      const w: { offset: number; length: number; pattern?: number; seed?: number; zero?: boolean } = {
        offset: num(b, "offset")!,
        length: num(b, "length")!,
      };
      const pattern = num(b, "pattern", false);
      const seed = num(b, "seed", false);
      if (pattern !== undefined) w.pattern = pattern;
      if (seed !== undefined) w.seed = seed;
      if (b.zero === true) w.zero = true;
      return c.writeGuestData(p[1]!, w);
    }
    case "POST disks/:/export": {
      const format = b.format === "raw" ? "raw" : b.format === "qcow2" ? "qcow2" : undefined;
      if (!format) throw new InputError("format: expected raw or qcow2");
      const atBackup = text(b, "atBackup", false);
      const atSnapshot = text(b, "atSnapshot", false);
      return c.exportImage(p[1]!, text(b, "path")!, { format, ...(atBackup ? { atBackup } : {}), ...(atSnapshot ? { atSnapshot } : {}) });
    }
    case "POST rotate-ca": {
      const mode = b.mode;
      if (mode !== undefined && mode !== "replace" && mode !== "renew") throw new InputError("mode: expected replace or renew");
      const days = b.days;
      if (days !== undefined && (typeof days !== "number" || !Number.isInteger(days) || days < 1 || days > 36500)) throw new InputError("days: expected a whole number of days");
      return c.rotateCa({ ...(mode ? { mode } : {}), ...(typeof days === "number" ? { days } : {}) });
    }
    case "POST backup-support": {
      const mode = b.mode;
      if (mode !== "hybrid" && mode !== "no-incremental" && mode !== "none") throw new InputError("mode: expected hybrid, no-incremental or none");
      c.setBackupSupport(mode as BackupSupport);
      return { mode };
    }
    case "POST networks": {
      let profiles: string[] | undefined;
      if (b.vnicProfiles !== undefined) {
        if (!Array.isArray(b.vnicProfiles) || b.vnicProfiles.some((x) => typeof x !== "string")) throw new InputError("vnicProfiles: expected an array of names");
        profiles = b.vnicProfiles as string[];
      }
      return c.addNetwork({ name: text(b, "name")!, ...(profiles ? { vnicProfiles: profiles } : {}) });
    }
    case "POST clusters":
      return c.addCluster({ name: text(b, "name")! });
    case "POST storagedomains": {
      const storage = b.storage === undefined ? undefined : b.storage === "nfs" || b.storage === "iscsi" ? b.storage : null;
      if (storage === null) throw new InputError("storage: expected nfs or iscsi");
      return c.addStorageDomain({ name: text(b, "name")!, availableBytes: num(b, "availableBytes")!, ...(storage ? { storage } : {}) });
    }
    case "POST storagedomains/:/available":
      c.setStorageAvailable(p[1]!, num(b, "bytes")!);
      return { ok: true };
    case "POST faults/fail-next-boot":
      c.faults.failNextBoot(text(b, "vm", false));
      return { armed: true };
    case "POST revoke-tokens":
      return { revoked: c.revokeTokens() };
    case "POST faults/fail-next-transfer": {
      const phase = b.phase;
      if (phase !== "initializing" && phase !== "transferring" && phase !== "finalizing") {
        throw new InputError("phase: expected initializing, transferring or finalizing");
      }
      const direction = b.direction === "upload" || b.direction === "download" ? b.direction : undefined;
      c.faults.failNextTransfer(phase as FaultPhase, direction);
      return { armed: true };
    }
    case "POST faults/drop-connection":
      c.faults.dropConnectionAfter(num(b, "bytes")!);
      return { armed: true };
    case "POST faults/delete-bitmap":
      return { removed: await c.faults.deleteBitmap(text(b, "disk")!, text(b, "checkpoint")!) };
    case "POST faults/http-errors":
      c.faults.httpErrors(num(b, "status")!, num(b, "count")!, text(b, "path", false));
      return { armed: true };
    case "POST faults/stall-finalize":
      c.faults.stallFinalize(num(b, "ms")!, b.target === "transfer" ? "transfer" : "backup");
      return { armed: true };
    case "POST faults/expire-ticket":
      return { expired: await c.faults.expireTicket(text(b, "transfer", false)) };
    case "POST faults/throttle-imageio":
      c.faults.throttleImageio(num(b, "bytesPerSecond")!);
      return { armed: true };
    case "POST faults/stall-imageio":
      c.faults.stallImageio(num(b, "ms")!);
      return { armed: true };
    case "POST faults/clear":
      c.faults.clear();
      return { ok: true };
    default:
      return undefined;
  }
}
