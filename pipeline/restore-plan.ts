/**
 * The restore preflight: resolve the restore point from the store (the store is the source;
 * KV is an index), read its OVF, and check the target BEFORE anything is changed there — the
 * cluster, the storage domain and every vNIC profile exist after mapping, the storage domain has
 * room for every disk (`qemu-img measure`), the name is free (or `replace`), the target's CA is
 * known. Every problem is collected, so one answer names all of them. Used by restore-requested
 * and by `ferry restore --dry-run` (which prints the plan).
 */
import { readFile } from "node:fs/promises";
import { PermanentError } from "../contracts/errors.ts";
import { qemuImg } from "../adapters/qemu/mod.ts";
import type { ResolvedPoint, Store } from "../adapters/store/mod.ts";
import { readOvf, type OvfVm } from "../domain/ovf/read.ts";
import type { Checksum } from "../domain/chain/mod.ts";
import type { RestoreEngine, TargetVm } from "./restore-engine.ts";

/** The config's restore settings, defaults filled in (pipeline/composition.ts). */
export interface RestoreSettings {
  readonly cluster?: string | undefined;
  readonly storageDomain?: string | undefined;
  readonly nameSuffix: string;
  /** Name suffix of the standing DR copy (mode replicate). */
  readonly replicaSuffix: string;
  readonly start: boolean;
  readonly replaceExisting: boolean;
  /** How long a started VM may take to reach `up`. */
  readonly bootTimeoutMs: number;
}

export interface RestoreMappings {
  /** Source cluster name → target cluster name. */
  readonly clusters?: Readonly<Record<string, string>> | undefined;
  /** Target storage domain: `{"*": "<name>"}` (a single entry applies to every disk). */
  readonly storageDomains?: Readonly<Record<string, string>> | undefined;
  /** Source network name → target vNIC profile name. */
  readonly vnicProfiles?: Readonly<Record<string, string>> | undefined;
}

export interface RestoreRequest {
  readonly vm: string;
  /** Friendly number, 'latest', or a restore point id. */
  readonly point: number | string;
  readonly target: string;
  /** Name of the VM on the target. */
  readonly name: string;
  readonly replace?: boolean | undefined;
  /** Only these disks (aliases). */
  readonly disks?: readonly string[] | undefined;
  readonly mappings?: RestoreMappings | undefined;
  /** Target cluster and storage domain when no mapping names one (config restore.*). */
  readonly cluster?: string | undefined;
  readonly storageDomain?: string | undefined;
}

export interface PlannedDisk {
  readonly sourceId: string;
  readonly alias: string;
  readonly virtualSize: number;
  /** qemu-img measure: what a qcow2 copy of the merged chain needs. */
  readonly requiredBytes: number;
  /** The point's top layer (absolute; qemu reads the chain through it). */
  readonly top: string;
  /** The restore point's checksum of this disk (imageio-compatible). */
  readonly checksum: Checksum;
  readonly interface: string;
  readonly bootable: boolean;
}

export interface PlannedNic {
  readonly name: string;
  readonly network: string;
  readonly vnicProfile?: { readonly id: string; readonly name: string } | undefined;
}

export interface RestorePlan {
  readonly vm: { readonly id: string; readonly name: string };
  readonly point: { readonly id: string; readonly number: number; readonly time: string; readonly kind: string };
  readonly target: string;
  readonly name: string;
  readonly cluster: { readonly id: string; readonly name: string };
  readonly storageDomain: { readonly id: string; readonly name: string; readonly available?: number | undefined };
  readonly disks: readonly PlannedDisk[];
  readonly nics: readonly PlannedNic[];
  /** The VM of that name on the target, when `replace` was asked. */
  readonly replaces?: TargetVm | undefined;
  readonly requiredBytes: number;
  readonly ovf: string;
  readonly ovfVm: OvfVm;
}

/** The preflight found problems; nothing on the target was changed. */
export class RestorePreflightError extends PermanentError {
  readonly problems: readonly string[];
  constructor(target: string, problems: string[]) {
    super("RESTORE_PREFLIGHT", `restore onto ${target} refused before changing anything: ${problems.join("; ")}`, { target, problems });
    this.problems = problems;
  }
}

export interface PlanDeps {
  readonly store: Pick<Store, "resolvePoint">;
  readonly engine: RestoreEngine;
  readonly measure?: (image: string, signal?: AbortSignal) => Promise<number>;
  readonly signal?: AbortSignal | undefined;
}

async function measureQcow2(image: string, signal?: AbortSignal): Promise<number> {
  // forceShare: a backup of the VM may be writing a newer layer on top meanwhile.
  const m = await qemuImg.measure({ image: { path: image, format: "qcow2" }, outputFormat: "qcow2", forceShare: true, ...(signal ? { signal } : {}) });
  return m.required;
}

export async function planRestore(deps: PlanDeps, req: RestoreRequest): Promise<RestorePlan> {
  const resolved: ResolvedPoint = await deps.store.resolvePoint(req.vm, req.point, deps.signal ? { signal: deps.signal } : {});
  if (!resolved.ovf) throw new PermanentError("RESTORE_NO_OVF", `restore point ${resolved.point.id} of VM ${req.vm} has no OVF; it can be restored to files only (ferry restore ${req.vm} --to-dir DIR)`);
  const ovf = await readFile(resolved.ovf, "utf8");
  const ovfVm = readOvf(ovf);
  const problems: string[] = [];
  const e = deps.engine;

  if (!e.trusted) problems.push(`the CA of engine ${req.target} is not known (fetch it: ferry cert fetch ${req.target})`);

  const wanted = req.disks?.length ? new Set(req.disks) : undefined;
  const selected = resolved.disks.filter((d) => !wanted || wanted.has(d.disk.alias) || wanted.has(d.disk.diskId));
  if (wanted) {
    const known = new Set(resolved.disks.flatMap((d) => [d.disk.alias, d.disk.diskId]));
    const unknown = [...wanted].filter((a) => !known.has(a));
    if (unknown.length) problems.push(`no disk ${unknown.map((a) => `'${a}'`).join(", ")} in restore point ${resolved.number} (disks: ${resolved.disks.map((d) => d.disk.alias).join(", ")})`);
  }

  const clusterName = req.mappings?.clusters?.[ovfVm.cluster] ?? req.mappings?.clusters?.["*"] ?? req.cluster ?? "Default";
  const sdName = firstMapped(req.mappings?.storageDomains) ?? req.storageDomain;
  const [cluster, sd, profiles, existing] = await Promise.all([
    e.findCluster(clusterName),
    sdName ? e.findStorageDomain(sdName) : Promise.resolve(undefined),
    e.vnicProfiles(),
    e.findVm(req.name),
  ]);
  if (!cluster) problems.push(`cluster '${clusterName}' does not exist on ${req.target}`);
  if (!sdName) problems.push(`no target storage domain: set restore.storageDomain in the config or map one (mappings.storageDomains)`);
  else if (!sd) problems.push(`storage domain '${sdName}' does not exist on ${req.target}`);
  if (existing && !req.replace) problems.push(`a VM named '${req.name}' already exists on ${req.target} (choose another name, or replace it)`);
  if (existing && req.replace && existing.status !== "down") problems.push(`the VM '${req.name}' to replace on ${req.target} is ${existing.status}; a running VM is never overwritten (stop it first)`);

  const nics: PlannedNic[] = ovfVm.nics.map((n) => {
    if (!n.network) return { name: n.name, network: "" };
    const want = req.mappings?.vnicProfiles?.[n.network];
    const profile = want ? profiles.find((p) => p.name === want) : profiles.find((p) => p.network === n.network && p.name === n.network) ?? profiles.find((p) => p.network === n.network);
    if (!profile) {
      problems.push(
        want
          ? `vNIC profile '${want}' (for network '${n.network}' of NIC ${n.name}) does not exist on ${req.target}`
          : `network '${n.network}' of NIC ${n.name} has no vNIC profile on ${req.target} (map it: mappings.vnicProfiles {"${n.network}": "<profile>"})`,
      );
      return { name: n.name, network: n.network };
    }
    return { name: n.name, network: n.network, vnicProfile: { id: profile.id, name: profile.name } };
  });

  const measure = deps.measure ?? measureQcow2;
  const byId = new Map(ovfVm.disks.map((d) => [d.diskId, d]));
  const disks: PlannedDisk[] = [];
  for (const d of selected) {
    const o = byId.get(d.disk.diskId);
    disks.push({
      sourceId: d.disk.diskId,
      alias: d.disk.alias,
      virtualSize: d.disk.virtualSize,
      requiredBytes: await measure(d.top, deps.signal),
      top: d.top,
      checksum: d.disk.checksum,
      interface: o?.interface ?? "virtio_scsi",
      bootable: o?.bootable ?? false,
    });
  }
  const requiredBytes = disks.reduce((n, d) => n + d.requiredBytes, 0);
  if (sd?.available !== undefined && requiredBytes > sd.available) {
    problems.push(`storage domain '${sd.name}' has ${gib(sd.available)} free, the disks need ${gib(requiredBytes)}`);
  }
  if (problems.length) throw new RestorePreflightError(req.target, problems);
  return {
    vm: resolved.vm,
    point: { id: resolved.point.id, number: resolved.number, time: resolved.point.time, kind: resolved.point.kind },
    target: req.target,
    name: req.name,
    cluster: cluster!,
    storageDomain: sd!,
    disks,
    nics,
    ...(existing && req.replace ? { replaces: existing } : {}),
    requiredBytes,
    ovf,
    ovfVm,
  };
}

/**
 * The target storage domain from the mapping: the OVF records only the source domain's id, so
 * `"*"` (or a mapping with one entry) names the target for every disk.
 */
function firstMapped(m: Readonly<Record<string, string>> | undefined): string | undefined {
  if (!m) return undefined;
  return m["*"] ?? (Object.keys(m).length === 1 ? Object.values(m)[0] : undefined);
}

function gib(n: number): string {
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
