/**
 * The backup volume (architecture.md §5): one folder per VM with its qcow2 layers, OVFs, block
 * digests and the chain manifest `restore-points.json`. Directories 0700, files 0600. Every
 * manifest change happens under the VM's folder lock and first finishes any retention run a
 * crash left pending, so the manifest never loses its write-ahead intent.
 */
import { randomUUID } from "node:crypto";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import {
  addRestorePoint,
  assertSegment,
  baseName,
  digestsPath,
  emptyChain,
  findPoint,
  layerChain,
  layerPath,
  markVerified,
  ovfPath,
  parseLayerPath,
  type ChainRecord,
  type DiskLayer,
  type LayerKind,
  type NewRestorePoint,
  type RestorePoint,
} from "../../domain/chain/mod.ts";
import { planRetention, type RetentionPlan, type RetentionPolicy } from "../../domain/retention/mod.ts";
import { qemuImg as defaultQemuImg, type QemuImg } from "../qemu/mod.ts";
import { TransientError } from "../../contracts/errors.ts";
import { StoreError } from "./errors.ts";
import { ensureDir, exists, placeFile, TEMP_PREFIX, writeFileAtomic } from "./fs-atomic.ts";
import { inspectChain, inspectLayer, type LayerFacts } from "./layers.ts";
import { clearStaleLock, withDirLock, type LockOptions } from "./lock.ts";
import { readManifestFile, writeManifestFile } from "./manifest.ts";
import { StorePaths } from "./paths.ts";
import { replayPending, runRetention, type RetentionResult } from "./retention.ts";
import { sweepStore, type SweepOptions, type SweepReport } from "./sweep.ts";
import { findOrphans, vmFolders, type OrphanFile, type OrphanOptions } from "./orphans.ts";
import { checkLayers, verifyDisk, type DiskVerification, type VerifyTools } from "./verify.ts";

export const DEFAULT_STORE_PATH = "./data/backups";

export interface StoreOptions {
  /** The store directory (default ./data/backups, resolved against the process cwd). */
  root: string;
  qemuImg?: QemuImg;
  tools?: VerifyTools;
  lock?: Omit<LockOptions, "signal">;
  clock?: () => Date;
}

export interface ResolvedDisk {
  disk: DiskLayer;
  /** Absolute path of the point's top layer for this disk (open it with qemu; it reads the chain). */
  top: string;
  /** Store-relative layers of the chain, top first. */
  chain: string[];
}

export interface ResolvedPoint {
  vm: { id: string; name: string };
  /** Friendly number, 1 = oldest kept. */
  number: number;
  point: RestorePoint;
  disks: ResolvedDisk[];
  /** Absolute path of the OVF, when recorded. */
  ovf?: string;
}

export interface VerifyReport {
  vm: { id: string; name: string };
  point: { id: string; number: number; time: string; kind: LayerKind };
  ok: boolean;
  time: string;
  disks: DiskVerification[];
}

export interface Store {
  readonly root: string;
  readonly paths: StorePaths;
  absolute(rel: string): string;
  /** Create the store root and restore-logs/ (0700). */
  init(): Promise<void>;
  listVms(): Promise<string[]>;
  readManifest(vmName: string): Promise<ChainRecord | undefined>;
  requireManifest(vmName: string): Promise<ChainRecord>;

  /** Where a layer goes; creates the disk folder (0700). Same shape as backup-requested's port. */
  layerTarget(o: { vmName: string; diskId: string; time: string; key: string; mode: LayerKind }): Promise<{ relPath: string; finalPath: string }>;
  /** A temp file name beside the layer's final name, and the backing file to create it with (relative). */
  prepareLayer(o: { vmName: string; diskId: string; time: string; key: string; kind: LayerKind; parentLayer?: string }): Promise<{
    relPath: string;
    finalPath: string;
    tempPath: string;
    backing?: { path: string; format: "qcow2" };
  }>;
  /** `qemu-img check`, backing checked (and made relative), fsync, rename into place, fsync the folder. */
  placeLayer(o: { tempPath: string; relPath: string; parentLayer?: string; signal?: AbortSignal }): Promise<LayerFacts>;
  /** Remove a layer file no restore point references (and its temp files); refuses a recorded one. */
  removeUnrecorded(pathOrRel: string): Promise<void>;
  fileSize(absPath: string): Promise<number>;
  saveOvf(vmName: string, key: string, ovf: string): Promise<string>;
  saveDigests(vmName: string, key: string, diskId: string, digests: Uint8Array): Promise<string>;
  readDigests(rel: string): Promise<Buffer | undefined>;

  /** Append one complete restore point (files checked first). Idempotent. */
  recordRestorePoint(vm: { id: string; name: string }, point: NewRestorePoint, o?: { signal?: AbortSignal }): Promise<ChainRecord>;
  /**
   * Bring the manifest up to date with a chain record from KV: points newer than the manifest's
   * newest are appended (files checked), flags (verified, checkpointReleased) are merged; points
   * retention already removed from the store are not brought back.
   */
  writeManifest(record: ChainRecord, o?: { signal?: AbortSignal }): Promise<ChainRecord>;
  /** Record a verification (or, with `what: "bootTested"`, a restore test) on a restore point. */
  markVerified(vmName: string, pointId: string, v: { time: string; ok: boolean; detail?: string }, what?: "verified" | "bootTested"): Promise<ChainRecord>;

  /** A restore point by friendly number, 'latest' or id, with its chain inspected as untrusted input. */
  resolvePoint(vmName: string, ref: number | string, o?: { signal?: AbortSignal }): Promise<ResolvedPoint>;
  verify(vmName: string, ref: number | string, o?: { signal?: AbortSignal; record?: boolean }): Promise<VerifyReport>;

  planRetention(vmName: string, policy: RetentionPolicy, o?: { now?: Date; timeZone?: string }): Promise<RetentionPlan>;
  applyRetention(vm: { name: string }, policy: RetentionPolicy, o?: { now?: Date; timeZone?: string; signal?: AbortSignal }): Promise<RetentionResult>;
  /** Finish a retention run a crash left in the manifest; returns the record (undefined: no manifest). */
  replayPending(vmName: string, o?: { signal?: AbortSignal }): Promise<ChainRecord | undefined>;
  sweep(o?: SweepOptions): Promise<SweepReport>;
  /** VM folders, with or without a manifest. */
  vmFolders(): Promise<string[]>;
  /**
   * Under the VM folder lock (a pending retention run finished first): delete the folder's files
   * no restore point, pending retention run or `keep` references, untouched for `olderThanMs`.
   * Returns what was deleted. `vmId`: refuse a folder whose manifest is another VM's.
   */
  removeOrphans(vmName: string, o: OrphanOptions & { vmId?: string | undefined; dryRun?: boolean }): Promise<OrphanFile[]>;
  /**
   * Under the VM folder lock: delete every temp file of the folder, however fresh (a partial
   * layer, digests or manifest write of a run that died). Only for a caller that holds the VM's
   * lease: then no other run can be writing there, and manifest writers hold the folder lock.
   */
  removeDeadTemp(vmName: string): Promise<OrphanFile[]>;
  /** Remove `<vm>/.lock` when its holder is provably gone (lock.ts clearStaleLock); true when removed. */
  clearStaleLock(vmName: string): Promise<boolean>;
  withVmLock<T>(vmName: string, label: string, fn: () => Promise<T>): Promise<T>;
}

export function openStore(o: StoreOptions): Store {
  const paths = new StorePaths(o.root);
  const qemu = o.qemuImg ?? defaultQemuImg;
  const clock = o.clock ?? (() => new Date());
  const tools = o.tools ?? {};

  const withVmLock = async <T>(vmName: string, label: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> => {
    const dir = paths.vmDir(vmName);
    await ensureDir(dir);
    await paths.assertReal(vmName, "dir");
    return withDirLock(dir, label, fn, { ...o.lock, ...(signal ? { signal } : {}) });
  };

  const readManifest = async (vmName: string) => readManifestFile(paths, assertSegment("VM name", vmName));

  const requireManifest = async (vmName: string): Promise<ChainRecord> => {
    const r = await readManifest(vmName);
    if (!r) throw new StoreError("STORE_VM_NOT_FOUND", `the store ${paths.root} has no restore points for VM ${vmName}`, { vm: vmName });
    return r;
  };

  /** Read under the lock, finishing a pending retention run first. */
  const current = async (vmName: string, signal?: AbortSignal): Promise<ChainRecord | undefined> => {
    const r = await readManifest(vmName);
    return r?.pending ? replayPending({ paths, qemu, ...(signal ? { signal } : {}) }, r) : r;
  };

  /** Every file a new point names exists, and each layer's chain is what the point says. */
  const checkPointFiles = async (record: ChainRecord, point: NewRestorePoint, signal?: AbortSignal) => {
    const known = new Set(record.restorePoints.flatMap((p) => p.disks.map((d) => d.layer)));
    for (const d of point.disks) {
      if (d.parentLayer !== undefined && !known.has(d.parentLayer)) {
        throw new StoreError(
          "STORE_PARENT_GONE",
          `layer ${d.layer} builds on ${d.parentLayer}, which the store no longer has (retention merged or removed it while this backup ran); take the backup again`,
          { layer: d.layer, parentLayer: d.parentLayer },
        );
      }
    }
    for (const d of point.disks) known.add(d.layer);
    for (const d of point.disks) {
      const chain = await inspectChain(paths, qemu, d.layer, known, signal);
      const top = chain[0]!;
      if (top.backing !== d.parentLayer) {
        throw new StoreError("STORE_LAYER_MISMATCH", `layer ${d.layer} builds on ${top.backing ?? "nothing"}, but the restore point says ${d.parentLayer ?? "nothing"}`, { layer: d.layer });
      }
      if (top.virtualSize !== d.virtualSize) {
        throw new StoreError("STORE_LAYER_MISMATCH", `layer ${d.layer} has virtual size ${top.virtualSize}, the restore point says ${d.virtualSize}`, { layer: d.layer });
      }
      await paths.assertReal(d.digestsFile, "file");
    }
    if (point.ovfFile) await paths.assertReal(point.ovfFile, "file");
  };

  const store: Store = {
    root: paths.root,
    paths,
    absolute: (rel) => paths.abs(rel),

    async init() {
      await ensureDir(paths.root);
      await ensureDir(paths.restoreLogs());
    },

    async listVms() {
      let entries;
      try {
        entries = await readdir(paths.root, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
        throw err;
      }
      const out: string[] = [];
      for (const e of entries) {
        if (!e.isDirectory() || e.name.startsWith(".") || e.name === "restore-logs") continue;
        if (await exists(paths.manifest(e.name)).catch(() => false)) out.push(e.name);
      }
      return out.sort();
    },

    readManifest,
    requireManifest,

    async layerTarget(t) {
      const relPath = layerPath(t.vmName, t.diskId, t.time, t.key, t.mode);
      const finalPath = paths.abs(relPath);
      await ensureDir(dirname(finalPath));
      return { relPath, finalPath };
    },

    async prepareLayer(t) {
      const relPath = layerPath(t.vmName, t.diskId, t.time, t.key, t.kind);
      if ((t.kind === "incremental") !== (t.parentLayer !== undefined)) {
        throw new StoreError("STORE_BAD_LAYER", `a ${t.kind} layer ${t.parentLayer ? "cannot have" : "needs"} a parent layer`);
      }
      if (t.parentLayer !== undefined && dirname(t.parentLayer) !== dirname(relPath)) {
        throw new StoreError("STORE_BAD_LAYER", `parent layer ${t.parentLayer} is not in ${dirname(relPath)}/`);
      }
      const finalPath = paths.abs(relPath);
      await ensureDir(dirname(finalPath));
      const tempPath = join(dirname(finalPath), `${TEMP_PREFIX}${randomUUID()}`);
      return {
        relPath,
        finalPath,
        tempPath,
        ...(t.parentLayer ? { backing: { path: baseName(t.parentLayer), format: "qcow2" as const } } : {}),
      };
    },

    async placeLayer(t) {
      const name = parseLayerPath(t.relPath);
      if (!name) throw new StoreError("STORE_BAD_PATH", `${t.relPath} is not a layer path`);
      const finalPath = paths.abs(t.relPath);
      if (dirname(t.tempPath) !== dirname(finalPath) || !basename(t.tempPath).startsWith(TEMP_PREFIX)) {
        throw new StoreError("STORE_BAD_PATH", `temp file ${t.tempPath} must be a ${TEMP_PREFIX}* name beside ${t.relPath}`);
      }
      const record = await readManifest(name.vmName);
      if (record?.restorePoints.some((p) => p.disks.some((d) => d.layer === t.relPath))) {
        throw new StoreError("STORE_LAYER_RECORDED", `layer ${t.relPath} is already part of a restore point; not replacing it`, { layer: t.relPath });
      }
      const signal = t.signal ? { signal: t.signal } : {};
      const info = await qemu.info(t.tempPath, { format: "qcow2", ...signal });
      const wanted = t.parentLayer ? baseName(t.parentLayer) : undefined;
      const have = info.backingFilename || undefined;
      if (have !== wanted) {
        // A backing written as an absolute path to the right parent is made relative; anything else is wrong.
        const sameFile = have !== undefined && wanted !== undefined && have === paths.abs(t.parentLayer!);
        if (!sameFile) {
          throw new StoreError("STORE_LAYER_MISMATCH", `new layer for ${t.relPath} builds on ${have ?? "nothing"}, expected ${wanted ?? "nothing"}`, { layer: t.relPath });
        }
        await qemu.rebase(t.tempPath, { format: "qcow2", unsafe: true, backing: { path: wanted!, format: "qcow2" }, ...signal });
      }
      await qemu.check(t.tempPath, { format: "qcow2", ...signal });
      await placeFile(t.tempPath, finalPath);
      return { path: t.relPath, size: (await stat(finalPath)).size, virtualSize: info.virtualSize, ...(wanted ? { backing: t.parentLayer! } : {}) };
    },

    async removeUnrecorded(pathOrRel) {
      const abs = pathOrRel.startsWith("/") ? pathOrRel : paths.abs(pathOrRel);
      const rel = abs.startsWith(`${paths.root}/`) ? abs.slice(paths.root.length + 1) : undefined;
      const name = rel ? parseLayerPath(rel) : undefined;
      if (!rel || !name) throw new StoreError("STORE_BAD_PATH", `${pathOrRel.slice(0, 120)} is not a layer in the store ${paths.root}`);
      const record = await readManifest(name.vmName);
      const referenced = [record, record?.pending?.target].some((r) => r?.restorePoints.some((p) => p.disks.some((d) => d.layer === rel)));
      if (referenced) throw new StoreError("STORE_LAYER_RECORDED", `layer ${rel} is part of a restore point; not removing it`, { layer: rel });
      await rm(abs, { force: true });
      const dir = dirname(abs);
      for (const n of await readdir(dir).catch(() => [] as string[])) {
        if (n.startsWith(`.${basename(abs)}.part-`)) await rm(join(dir, n), { force: true });
      }
    },

    async fileSize(absPath) {
      return (await stat(absPath)).size;
    },

    async saveOvf(vmName, key, ovf) {
      const rel = ovfPath(vmName, key);
      await writeFileAtomic(paths.abs(rel), ovf);
      return rel;
    },

    async saveDigests(vmName, key, diskId, digests) {
      const rel = digestsPath(vmName, key, diskId);
      await writeFileAtomic(paths.abs(rel), digests);
      return rel;
    },

    async readDigests(rel) {
      try {
        return await readFile(await paths.assertReal(rel, "file"));
      } catch (err) {
        if (err instanceof StoreError && err.code === "STORE_FILE_MISSING") return undefined;
        throw err;
      }
    },

    async recordRestorePoint(vm, point, ro = {}) {
      return withVmLock(vm.name, `record ${point.id}`, async () => {
        const cur = (await current(vm.name, ro.signal)) ?? emptyChain(vm, clock());
        if (cur.vm.id !== vm.id) {
          throw new StoreError("STORE_VM_MISMATCH", `the store folder ${vm.name} belongs to VM id ${cur.vm.id}, not ${vm.id} (a different VM with the same name?)`, { vm: vm.name });
        }
        const existing = cur.restorePoints.find((p) => p.id === point.id);
        if (!existing) await checkPointFiles(cur, point, ro.signal);
        const next = addRestorePoint(cur, point, clock());
        if (next !== cur) await writeManifestFile(paths, next);
        return next;
      }, ro.signal);
    },

    async writeManifest(record, wo = {}) {
      return withVmLock(record.vm.name, "write manifest", async () => {
        let cur = (await current(record.vm.name, wo.signal)) ?? { ...emptyChain(record.vm, clock()), nextSeq: 1 };
        if (cur.vm.id !== record.vm.id) {
          throw new StoreError("STORE_VM_MISMATCH", `the store folder ${record.vm.name} belongs to VM id ${cur.vm.id}, not ${record.vm.id}`, { vm: record.vm.name });
        }
        const before = cur;
        const lastSeq = cur.restorePoints.at(-1)?.seq ?? 0;
        for (const p of record.restorePoints) {
          const mine = cur.restorePoints.find((x) => x.id === p.id);
          if (mine) {
            const merged = mergeFlags(mine, p);
            if (merged !== mine) cur = { ...cur, restorePoints: cur.restorePoints.map((x) => (x.id === p.id ? merged : x)) };
            continue;
          }
          if (p.seq <= lastSeq) continue; // removed by retention in the store: do not bring it back
          await checkPointFiles(cur, p, wo.signal);
          cur = addRestorePoint(cur, p, clock());
        }
        if (cur !== before) await writeManifestFile(paths, cur);
        return cur;
      }, wo.signal);
    },

    async markVerified(vmName, pointId, v, what = "verified") {
      return withVmLock(vmName, "mark verified", async () => {
        const cur = await requireManifest(vmName);
        const next = markVerified(cur, pointId, v, what);
        await writeManifestFile(paths, next);
        return next;
      });
    },

    async resolvePoint(vmName, ref, ro = {}) {
      const record = await requireManifest(vmName);
      const { number, point } = findPoint(record, ref);
      const known = new Set<string>();
      for (const r of [record, record.pending?.target]) for (const p of r?.restorePoints ?? []) for (const d of p.disks) known.add(d.layer);
      const disks: ResolvedDisk[] = [];
      for (const d of point.disks) {
        const facts = await inspectChain(paths, qemu, d.layer, known, ro.signal);
        if (!record.pending) {
          // With no retention run in flight, the files must be exactly the recorded chain.
          const recorded = layerChain(record, point.id, d.diskId).map((l) => l.layer);
          const actual = facts.map((f) => f.path);
          if (recorded.join("\n") !== actual.join("\n")) {
            throw new StoreError("STORE_LAYER_MISMATCH", `the qcow2 chain of ${d.layer} is ${actual.join(" <- ")}, the manifest records ${recorded.join(" <- ")}`, { layer: d.layer });
          }
        }
        disks.push({ disk: d, top: paths.abs(d.layer), chain: facts.map((f) => f.path) });
      }
      return {
        vm: record.vm,
        number,
        point,
        disks,
        ...(point.ovfFile ? { ovf: paths.abs(point.ovfFile) } : {}),
      };
    },

    async verify(vmName, ref, vo = {}) {
      // Layers are checked under the folder lock (no merge writes them meanwhile); the long read
      // runs without it, with force-share (merges never change what a kept point reads).
      const { resolved, checks, before } = await withVmLock(vmName, "verify", async () => {
        const resolved = await store.resolvePoint(vmName, ref, vo);
        const checks = [];
        for (const d of resolved.disks) checks.push(await checkLayers(paths, qemu, d.chain, vo.signal));
        return { resolved, checks, before: (await readManifest(vmName))?.updatedAt };
      }, vo.signal);
      const disks: DiskVerification[] = [];
      for (const [i, d] of resolved.disks.entries()) {
        const { readFailed, ...v } = await verifyDisk(paths, d.disk, d.chain, checks[i]!, tools, vo.signal);
        if (readFailed && (await readManifest(vmName))?.updatedAt !== before) {
          throw new TransientError("VERIFY_RACED", `restore point ${resolved.point.id} of VM ${vmName} changed while it was being verified (retention or a backup); verify it again`, { vm: vmName });
        }
        disks.push(v);
      }
      const report: VerifyReport = {
        vm: resolved.vm,
        point: { id: resolved.point.id, number: resolved.number, time: resolved.point.time, kind: resolved.point.kind },
        ok: disks.every((d) => d.ok),
        time: clock().toISOString(),
        disks,
      };
      if (vo.record) {
        const problems = disks.flatMap((d) => d.problems.map((p) => `${d.diskId}: ${p}`));
        await store.markVerified(vmName, resolved.point.id, {
          time: report.time,
          ok: report.ok,
          ...(problems.length ? { detail: problems.join("; ").slice(0, 2000) } : {}),
        }).catch((err: unknown) => {
          // Retention removed the point meanwhile: nothing to record on.
          if ((err as { code?: string }).code !== "RESTORE_POINT_NOT_FOUND") throw err;
        });
      }
      return report;
    },

    async planRetention(vmName, policy, po = {}) {
      const record = await requireManifest(vmName);
      const base = record.pending ? record.pending.target : record;
      return planRetention({ ...base }, policy, { now: po.now ?? clock(), ...(po.timeZone ? { timeZone: po.timeZone } : {}) });
    },

    async applyRetention(vm, policy, ao = {}) {
      return withVmLock(vm.name, "retention", async () => {
        const record = await requireManifest(vm.name);
        return runRetention({ paths, qemu, ...(ao.signal ? { signal: ao.signal } : {}) }, record, policy, {
          now: ao.now ?? clock(),
          ...(ao.timeZone ? { timeZone: ao.timeZone } : {}),
        });
      }, ao.signal);
    },

    async replayPending(vmName, ro = {}) {
      return withVmLock(vmName, "replay", () => current(vmName, ro.signal), ro.signal);
    },

    sweep: (so) => sweepStore(paths, readManifest, so),

    vmFolders: () => vmFolders(paths),

    async removeDeadTemp(vmName) {
      return withVmLock(vmName, "remove dead temp files", async () => {
        // No age limit (-∞): a dead run's file can be seconds old, and an NFS server's clock may run ahead.
        const found = (await findOrphans(paths, vmName, undefined, { olderThanMs: Number.NEGATIVE_INFINITY })).filter((f) => f.kind === "temp");
        for (const f of found) await rm(paths.abs(f.path), { force: true });
        return found;
      });
    },

    async removeOrphans(vmName, ro) {
      // A dry run lists without the lock (a cheap look before taking the lease and the lock).
      if (ro.dryRun) return findOrphans(paths, vmName, await readManifest(vmName), ro);
      return withVmLock(vmName, "remove orphans", async () => {
        const record = await current(vmName);
        if (record && ro.vmId !== undefined && record.vm.id !== ro.vmId) {
          throw new StoreError("STORE_VM_MISMATCH", `the store folder ${vmName} belongs to VM id ${record.vm.id}, not ${ro.vmId}`, { vm: vmName });
        }
        const found = await findOrphans(paths, vmName, record, ro);
        for (const f of found) await rm(paths.abs(f.path), { force: true });
        return found;
      });
    },

    clearStaleLock: (vmName) => clearStaleLock(paths.vmDir(vmName)),

    withVmLock: (vmName, label, fn) => withVmLock(vmName, label, fn),
  };
  return store;
}

function mergeFlags(mine: RestorePoint, theirs: RestorePoint): RestorePoint {
  let out = mine;
  if (theirs.checkpointReleased && !mine.checkpointReleased) out = { ...out, checkpointReleased: true };
  if (theirs.verified && (!mine.verified || theirs.verified.time > mine.verified.time)) out = { ...out, verified: theirs.verified };
  if (theirs.bootTested && (!mine.bootTested || theirs.bootTested.time > mine.bootTested.time)) out = { ...out, bootTested: theirs.bootTested };
  return out;
}

export { inspectLayer };
