/**
 * Pure operations on a VM's chain record: validation of its cross-references, friendly numbers,
 * per-disk chains and dependencies, adding a restore point. Records are treated as immutable:
 * every change returns a new record.
 */
import { z } from "zod";
import { ChainError } from "./errors.ts";
import { DIGESTS_DIR, OVF_DIR, baseName, parseLayerPath } from "./naming.ts";
import {
  chainRecordSchema,
  type ChainRecord,
  type ChainRecordBody,
  type DiskLayer,
  type IncomingPoint,
  type LayerKind,
  type RestorePoint,
} from "./schema.ts";

export function emptyChain(vm: { id: string; name: string }, now: Date = new Date()): ChainRecord {
  return { format: 1, vm: { id: vm.id, name: vm.name }, nextSeq: 1, restorePoints: [], updatedAt: now.toISOString() };
}

/** Parse untrusted JSON (KV value, restore-points.json) into a checked record, or a readable ChainError. */
export function parseChainRecord(value: unknown, what = "chain record"): ChainRecord {
  const parsed = chainRecordSchema.safeParse(value);
  if (!parsed.success) {
    const first = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new ChainError("CHAIN_INVALID", `${what} is not a valid chain record: ${first.join("; ")}`, { what });
  }
  const problems = chainProblems(parsed.data);
  if (problems.length) {
    throw new ChainError("CHAIN_INVALID", `${what} is inconsistent: ${problems.slice(0, 3).join("; ")}`, { what, problems });
  }
  return parsed.data;
}

export function parseChainJson(text: string, what = "chain record"): ChainRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ChainError("CHAIN_INVALID", `${what} is not valid JSON`, { what });
  }
  return parseChainRecord(value, what);
}

/** Throws unless the record's cross-references hold (see chainProblems). */
export function checkChain(record: ChainRecord | ChainRecordBody, what = "chain record"): void {
  const problems = chainProblems(record);
  if (problems.length) {
    throw new ChainError("CHAIN_INVALID", `${what} is inconsistent: ${problems.slice(0, 3).join("; ")}`, { what, problems });
  }
}

/**
 * Every invariant that zod cannot state. A record from the store may be hostile, so this is
 * what keeps a path in it from pointing outside the VM's own folder.
 */
export function chainProblems(record: ChainRecord | ChainRecordBody): string[] {
  const out: string[] = [];
  const vm = record.vm.name;
  const ids = new Map<string, RestorePoint>();
  const layers = new Map<string, { point: RestorePoint; disk: DiskLayer }>();
  const children = new Map<string, string>();
  let prevSeq = 0;
  for (const p of record.restorePoints) {
    if (ids.has(p.id)) out.push(`restore point ${p.id} appears twice`);
    if (p.seq <= prevSeq) out.push(`restore point ${p.id}: seq ${p.seq} is not after ${prevSeq}`);
    if (p.seq >= record.nextSeq) out.push(`restore point ${p.id}: seq ${p.seq} is not below nextSeq ${record.nextSeq}`);
    prevSeq = p.seq;
    if (p.parentId !== undefined && !ids.has(p.parentId)) out.push(`restore point ${p.id}: parent ${p.parentId} is not an earlier restore point`);
    const kind: LayerKind = p.disks.every((d) => d.kind === "full") ? "full" : "incremental";
    if (p.kind !== kind) out.push(`restore point ${p.id}: kind ${p.kind} but its disks make it ${kind}`);
    if (p.ovfFile !== undefined && !isFileIn(p.ovfFile, vm, OVF_DIR) ) out.push(`restore point ${p.id}: ovf file ${p.ovfFile} is not under ${vm}/${OVF_DIR}/`);
    const diskIds = new Set<string>();
    for (const d of p.disks) {
      if (diskIds.has(d.diskId)) out.push(`restore point ${p.id}: disk ${d.diskId} appears twice`);
      diskIds.add(d.diskId);
      out.push(...layerProblems(vm, p, d));
      if (layers.has(d.layer)) out.push(`layer ${d.layer} belongs to two restore points`);
      if (d.parentLayer !== undefined) {
        const parent = layers.get(d.parentLayer);
        if (!parent) out.push(`layer ${d.layer}: parent layer ${d.parentLayer} is not a layer of an earlier restore point`);
        else if (parent.disk.diskId !== d.diskId) out.push(`layer ${d.layer}: parent layer ${d.parentLayer} is of another disk`);
        const sibling = children.get(d.parentLayer);
        if (sibling !== undefined) out.push(`layers ${sibling} and ${d.layer} both build on ${d.parentLayer} (chains must be linear)`);
        children.set(d.parentLayer, d.layer);
      }
    }
    for (const d of p.disks) layers.set(d.layer, { point: p, disk: d });
    ids.set(p.id, p);
  }
  for (const inc of record.incoming ?? []) {
    if (ids.has(inc.id)) out.push(`incoming restore point ${inc.id} is already recorded`);
    if (inc.disks.length > inc.diskCount) out.push(`incoming restore point ${inc.id} has more disks than ${inc.diskCount}`);
  }
  if ("pending" in record && record.pending) {
    const pending = record.pending;
    for (const id of pending.removing) if (!ids.has(id)) out.push(`pending retention removes unknown restore point ${id}`);
    if (pending.target.vm.id !== record.vm.id || pending.target.vm.name !== vm) out.push("pending retention target is of another VM");
    out.push(...chainProblems(pending.target).map((p) => `pending target: ${p}`));
    for (const f of pending.cleanup) if (!f.startsWith(`${vm}/`)) out.push(`pending retention deletes ${f} outside ${vm}/`);
    for (const s of pending.steps) {
      for (const path of Object.values(s)) {
        if (typeof path === "string" && path.includes("/") && !parseLayerPath(path)) out.push(`pending step ${s.op} names ${path}, not a layer path`);
        else if (typeof path === "string" && path.includes("/") && parseLayerPath(path)?.vmName !== vm) out.push(`pending step ${s.op} names ${path} outside ${vm}/`);
      }
    }
  }
  return out;
}

function isFileIn(path: string, vm: string, dir: string): boolean {
  const parts = path.split("/");
  return parts.length === 3 && parts[0] === vm && parts[1] === dir && /^(?!\.{1,2}$)[A-Za-z0-9._-]+$/.test(parts[2]!);
}

function layerProblems(vm: string, p: RestorePoint | IncomingPoint, d: DiskLayer): string[] {
  const out: string[] = [];
  const parsed = parseLayerPath(d.layer);
  if (!parsed || parsed.vmName !== vm || parsed.diskId !== d.diskId) {
    out.push(`restore point ${p.id}: layer ${d.layer} is not a layer file under ${vm}/${d.diskId}/`);
  } else if (parsed.kind !== d.kind) {
    out.push(`restore point ${p.id}: layer ${d.layer} is named ${parsed.kind} but recorded as ${d.kind}`);
  }
  if (d.parentLayer !== undefined) {
    const pp = parseLayerPath(d.parentLayer);
    if (!pp || pp.vmName !== vm || pp.diskId !== d.diskId) out.push(`restore point ${p.id}: parent layer ${d.parentLayer} is not under ${vm}/${d.diskId}/`);
  }
  if ((d.kind === "incremental") !== (d.parentLayer !== undefined)) {
    out.push(`restore point ${p.id}: layer ${d.layer} is ${d.kind} ${d.parentLayer ? "with" : "without"} a parent layer`);
  }
  if (!isFileIn(d.digestsFile, vm, DIGESTS_DIR)) out.push(`restore point ${p.id}: digests file ${d.digestsFile} is not under ${vm}/${DIGESTS_DIR}/`);
  return out;
}

// --- Reading -------------------------------------------------------------------------------

/** Restore points a reader may use: a pending retention run hides the points it is removing. */
export function visiblePoints(record: ChainRecord): RestorePoint[] {
  const removing = new Set(record.pending?.removing ?? []);
  return record.restorePoints.filter((p) => !removing.has(p.id));
}

export interface NumberedPoint {
  /** 1 = the oldest kept restore point. Changes when retention removes older points. */
  number: number;
  point: RestorePoint;
}

export function numberedPoints(record: ChainRecord): NumberedPoint[] {
  return visiblePoints(record).map((point, i) => ({ number: i + 1, point }));
}

/** A restore point by friendly number, 'latest', or id. */
export function findPoint(record: ChainRecord, ref: number | "latest" | string): NumberedPoint {
  const points = numberedPoints(record);
  let found: NumberedPoint | undefined;
  if (ref === "latest") found = points.at(-1);
  else if (typeof ref === "number") found = points[ref - 1];
  else if (/^\d+$/.test(ref)) found = points[Number(ref) - 1];
  else found = points.find((p) => p.point.id === ref || p.point.checkpointId === ref);
  if (!found) {
    const range = points.length ? `1-${points.length}` : "none";
    throw new ChainError(
      "RESTORE_POINT_NOT_FOUND",
      `VM ${record.vm.name} has no restore point ${String(ref)} (restore points: ${range})`,
      { vm: record.vm.name, ref: String(ref) },
    );
  }
  return found;
}

export interface LayerRef {
  pointId: string;
  layer: DiskLayer;
}

/** Every layer of the record by store-relative path. */
export function layerIndex(record: ChainRecord | ChainRecordBody): Map<string, LayerRef> {
  const map = new Map<string, LayerRef>();
  for (const p of record.restorePoints) for (const d of p.disks) map.set(d.layer, { pointId: p.id, layer: d });
  return map;
}

/** The layers one disk of a restore point needs, top first (the point's own layer) down to the full base. */
export function layerChain(record: ChainRecord | ChainRecordBody, pointId: string, diskId: string): DiskLayer[] {
  const index = layerIndex(record);
  const point = record.restorePoints.find((p) => p.id === pointId);
  const top = point?.disks.find((d) => d.diskId === diskId);
  if (!point || !top) throw new ChainError("RESTORE_POINT_NOT_FOUND", `restore point ${pointId} has no disk ${diskId}`);
  const chain: DiskLayer[] = [top];
  const seen = new Set([top.layer]);
  for (let cur = top; cur.parentLayer !== undefined; ) {
    const parent = index.get(cur.parentLayer);
    if (!parent) throw new ChainError("CHAIN_PARENT_MISSING", `layer ${cur.layer} builds on ${cur.parentLayer}, which is not recorded`);
    if (seen.has(parent.layer.layer)) throw new ChainError("CHAIN_INVALID", `layer chain of ${top.layer} loops`);
    seen.add(parent.layer.layer);
    chain.push(parent.layer);
    cur = parent.layer;
  }
  return chain;
}

/** Per disk, the layers a restore point needs (top first). */
export function pointLayers(record: ChainRecord | ChainRecordBody, pointId: string): Map<string, DiskLayer[]> {
  const point = record.restorePoints.find((p) => p.id === pointId);
  if (!point) throw new ChainError("RESTORE_POINT_NOT_FOUND", `no restore point ${pointId}`);
  return new Map(point.disks.map((d) => [d.diskId, layerChain(record, pointId, d.diskId)]));
}

/** The restore points whose layers `pointId` needs (itself included). */
export function pointDependencies(record: ChainRecord | ChainRecordBody, pointId: string): Set<string> {
  const index = layerIndex(record);
  const out = new Set<string>();
  for (const chain of pointLayers(record, pointId).values()) for (const l of chain) out.add(index.get(l.layer)!.pointId);
  return out;
}

/** Per disk, its linear chains (oldest layer first); a disk gets a new chain at every full layer. */
export function diskChains(record: ChainRecord | ChainRecordBody): Map<string, LayerRef[][]> {
  const index = layerIndex(record);
  const child = new Map<string, LayerRef>();
  for (const ref of index.values()) if (ref.layer.parentLayer !== undefined) child.set(ref.layer.parentLayer, ref);
  const out = new Map<string, LayerRef[][]>();
  for (const ref of index.values()) {
    if (ref.layer.parentLayer !== undefined) continue;
    const chain: LayerRef[] = [ref];
    for (let c = child.get(ref.layer.layer); c; c = child.get(c.layer.layer)) chain.push(c);
    const list = out.get(ref.layer.diskId) ?? [];
    list.push(chain);
    out.set(ref.layer.diskId, list);
  }
  return out;
}

/** The newest layer of a disk: what the disk's next incremental layer builds on. */
export function tipLayer(record: ChainRecord, diskId: string): DiskLayer | undefined {
  for (let i = record.restorePoints.length - 1; i >= 0; i--) {
    const d = record.restorePoints[i]!.disks.find((x) => x.diskId === diskId);
    if (d) return d;
  }
  return undefined;
}

/** Disk layer summed sizes of a restore point's own layers. */
export function pointSize(point: RestorePoint): number {
  return point.disks.reduce((n, d) => n + d.size, 0);
}

/**
 * What domain/backup/decide.ts needs to choose full or incremental
 * (shape of its ChainSummary).
 */
export function summarizeChain(
  record: ChainRecord | undefined,
  /** The store's manifest, whose verifications (`ferry verify`) are newer than KV's. */
  verifiedIn?: ChainRecord,
): {
  last?: { id: string; time: string; checkpointId?: string };
  lastFullTime?: string;
  incrementalsSinceFull: number;
  ownCheckpoints: string[];
  broken?: string;
} {
  if (!record) return { incrementalsSinceFull: 0, ownCheckpoints: [] };
  const points = visiblePoints(record);
  const last = points.at(-1);
  let lastFullTime: string | undefined;
  let incrementals = 0;
  let broken: string | undefined;
  const verification = new Map((verifiedIn?.restorePoints ?? []).map((p) => [p.id, p.verified]));
  for (let i = points.length - 1; i >= 0; i--) {
    const p = points[i]!;
    // A point of the current chain that failed verification: nothing may build on it.
    const v = verification.get(p.id) ?? p.verified;
    if (v && !v.ok && !broken) broken = `restore point ${p.seq} failed verification on ${v.time.slice(0, 16).replace("T", " ")}${v.detail ? ` (${v.detail.slice(0, 200)})` : ""}; the chain is not built on`;
    if (p.kind === "full") {
      lastFullTime = p.time;
      break;
    }
    incrementals++;
  }
  return {
    ...(broken ? { broken } : {}),
    ...(last ? { last: { id: last.id, time: last.time, ...(last.checkpointId ? { checkpointId: last.checkpointId } : {}) } } : {}),
    ...(lastFullTime ? { lastFullTime } : {}),
    incrementalsSinceFull: incrementals,
    ownCheckpoints: record.restorePoints.flatMap((p) => (p.checkpointId && !p.checkpointReleased ? [p.checkpointId] : [])),
  };
}

// --- Changing ------------------------------------------------------------------------------

/** A restore point to add: `seq` defaults to the record's nextSeq (a copy from KV keeps its own). */
export type NewRestorePoint = Omit<RestorePoint, "seq" | "kind"> & { kind?: LayerKind; seq?: number };

/**
 * Append a complete restore point. Validates that every incremental layer builds on the newest
 * layer of its disk (so chains stay linear) and that nothing is recorded twice. Adding the same
 * point again (a redelivered event) returns the record unchanged.
 */
export function addRestorePoint(record: ChainRecord, input: NewRestorePoint, now: Date = new Date()): ChainRecord {
  if (record.pending) {
    throw new ChainError("CHAIN_PENDING", `VM ${record.vm.name} has an unfinished retention run; replay it first`, { vm: record.vm.name });
  }
  const existing = record.restorePoints.find((p) => p.id === input.id);
  if (existing) {
    if (sameLayers(existing.disks, input.disks)) return record;
    throw new ChainError("CHAIN_DUPLICATE", `restore point ${input.id} is already recorded with other layers`, { id: input.id });
  }
  const kind: LayerKind = input.disks.every((d) => d.kind === "full") ? "full" : "incremental";
  if (input.kind !== undefined && input.kind !== kind) {
    throw new ChainError("CHAIN_INVALID", `restore point ${input.id} is declared ${input.kind} but its disks make it ${kind}`);
  }
  for (const d of input.disks) {
    if (d.parentLayer === undefined) continue;
    const tip = tipLayer(record, d.diskId);
    if (!tip || tip.layer !== d.parentLayer) {
      throw new ChainError(
        "CHAIN_PARENT_MISSING",
        `layer ${d.layer} builds on ${d.parentLayer}, but the newest recorded layer of disk ${d.diskId} is ${tip?.layer ?? "none"}`,
        { layer: d.layer, parentLayer: d.parentLayer, tip: tip?.layer },
      );
    }
  }
  const seq = input.seq ?? record.nextSeq;
  if (!Number.isInteger(seq) || seq < record.nextSeq) {
    throw new ChainError("CHAIN_INVALID", `restore point ${input.id} has seq ${seq}, but the chain is already at ${record.nextSeq}`);
  }
  const point: RestorePoint = { ...input, kind, seq };
  const next: ChainRecord = {
    ...record,
    nextSeq: seq + 1,
    restorePoints: [...record.restorePoints, point],
    incoming: dropIncoming(record.incoming, input.id),
    updatedAt: now.toISOString(),
  };
  if (!next.incoming) delete next.incoming;
  checkChain(next, `chain of ${record.vm.name} after adding ${input.id}`);
  return next;
}

/**
 * The record with no incoming (incomplete) point but `id`. One backup run per VM at a time (the VM
 * lease spans the run): when a run's disk arrives, any other incomplete point is from a run that
 * ended without completing it, and nothing else would ever remove it. Same record when none.
 */
export function onlyIncoming(record: ChainRecord, id: string): ChainRecord {
  const stale = (record.incoming ?? []).filter((p) => p.id !== id);
  if (!stale.length) return record;
  const keep = (record.incoming ?? []).filter((p) => p.id === id);
  const next: ChainRecord = { ...record, incoming: keep };
  if (!keep.length) delete next.incoming;
  return next;
}

function dropIncoming(list: IncomingPoint[] | undefined, id: string): IncomingPoint[] | undefined {
  const rest = (list ?? []).filter((p) => p.id !== id);
  return rest.length ? rest : undefined;
}

function sameLayers(a: DiskLayer[], b: DiskLayer[]): boolean {
  const key = (l: DiskLayer[]) => l.map((d) => `${d.diskId}=${d.layer}<${d.parentLayer ?? ""}#${d.checksum.value}`).sort().join("|");
  return key(a) === key(b);
}

export type IncomingDisk = Omit<IncomingPoint, "disks"> & { disk: DiskLayer };

/**
 * Record one disk of a restore point whose disks arrive one by one (disk.transferred). When the
 * last disk is in, the point moves to restorePoints and is returned as `completed`. Idempotent
 * per (point, disk).
 */
export function addIncomingDisk(record: ChainRecord, input: IncomingDisk, now: Date = new Date()): { record: ChainRecord; completed?: RestorePoint } {
  const done = record.restorePoints.find((p) => p.id === input.id);
  if (done) return { record, completed: done };
  const { disk, ...meta } = input;
  const list = record.incoming ?? [];
  const current = list.find((p) => p.id === input.id) ?? { ...meta, disks: [] };
  const same = current.disks.find((d) => d.diskId === disk.diskId);
  if (same && same.layer !== disk.layer) {
    throw new ChainError("CHAIN_DUPLICATE", `disk ${disk.diskId} of restore point ${input.id} is already recorded as ${same.layer}`);
  }
  const disks = same ? current.disks : [...current.disks, disk];
  const updated: IncomingPoint = { ...current, diskCount: meta.diskCount, disks };
  if (disks.length < updated.diskCount) {
    const next = { ...record, incoming: [...list.filter((p) => p.id !== input.id), updated], updatedAt: now.toISOString() };
    checkChain(next);
    return { record: next };
  }
  const { diskCount: _n, disks: all, ...pointMeta } = updated;
  const next = addRestorePoint({ ...record, incoming: dropIncoming(list, input.id) }, { ...pointMeta, disks: all }, now);
  return { record: next, completed: next.restorePoints.at(-1)! };
}

export function markVerified(
  record: ChainRecord,
  pointId: string,
  verified: { time: string; ok: boolean; detail?: string },
  what: "verified" | "bootTested" = "verified",
): ChainRecord {
  if (!record.restorePoints.some((p) => p.id === pointId)) throw new ChainError("RESTORE_POINT_NOT_FOUND", `no restore point ${pointId}`);
  const mark = (points: RestorePoint[]) => points.map((p) => (p.id === pointId ? { ...p, [what]: verified } : p));
  const next: ChainRecord = { ...record, restorePoints: mark(record.restorePoints), updatedAt: verified.time };
  if (record.pending) next.pending = { ...record.pending, target: { ...record.pending.target, restorePoints: mark(record.pending.target.restorePoints) } };
  return next;
}

/** Note that these engine checkpoints were deleted on the engine, so they are not deleted again. */
export function markCheckpointsReleased(record: ChainRecord, checkpointIds: readonly string[], now: Date = new Date()): ChainRecord {
  const ids = new Set(checkpointIds);
  return {
    ...record,
    restorePoints: record.restorePoints.map((p) => (p.checkpointId && ids.has(p.checkpointId) ? { ...p, checkpointReleased: true } : p)),
    updatedAt: now.toISOString(),
  };
}

/** The file name of a layer path (what a child's qcow2 backing file names). */
export const layerFile = baseName;

export const chainRecordJsonSchema = (): Record<string, unknown> =>
  z.toJSONSchema(chainRecordSchema, { target: "draft-2020-12", io: "input" }) as Record<string, unknown>;

export interface PointSummary {
  number: number;
  id: string;
  time: string;
  kind: LayerKind;
  checkpointId?: string;
  /** Friendly number of the point this one builds on. */
  parent?: number;
  /** Layers read to restore it (the longest disk chain). */
  depth: number;
  /** Bytes of this point's own layers. */
  size: number;
  /** Bytes of everything a restore of it reads (its layers and all below). */
  chainSize: number;
  verified?: { time: string; ok: boolean; detail?: string };
  /** The last restore test (booted on an engine). */
  bootTested?: { time: string; ok: boolean; detail?: string };
  /** Why it is full, or why some of its disks are. */
  reason?: string;
  disks: { diskId: string; alias: string; kind: LayerKind; virtualSize: number; size: number; layer: string; parentLayer?: string; reason?: string }[];
}

/** One row per visible restore point, oldest first: what `ferry checkpoints` shows. */
export function describePoints(record: ChainRecord): PointSummary[] {
  const numbered = numberedPoints(record);
  const numberOf = new Map(numbered.map((n) => [n.point.id, n.number]));
  const index = layerIndex(record);
  return numbered.map(({ number, point }) => {
    const chains = [...pointLayers(record, point.id).values()];
    const parentIds = point.disks.flatMap((d) => (d.parentLayer ? [index.get(d.parentLayer)?.pointId] : []));
    const parentNumbers = parentIds.map((id) => (id ? numberOf.get(id) : undefined)).filter((n): n is number => n !== undefined);
    const diskReasons = point.disks.flatMap((d) => (d.reason ? [`${d.alias || d.diskId}: ${d.reason}`] : []));
    const reason = point.reason ?? (diskReasons.length ? diskReasons.join("; ") : undefined);
    return {
      number,
      id: point.id,
      time: point.time,
      kind: point.kind,
      ...(point.checkpointId ? { checkpointId: point.checkpointId } : {}),
      ...(parentNumbers.length ? { parent: Math.max(...parentNumbers) } : {}),
      depth: Math.max(...chains.map((c) => c.length)),
      size: pointSize(point),
      chainSize: chains.flat().reduce((n, l) => n + l.size, 0),
      ...(point.verified ? { verified: point.verified } : {}),
      ...(point.bootTested ? { bootTested: point.bootTested } : {}),
      ...(reason ? { reason } : {}),
      disks: point.disks.map((d) => ({
        diskId: d.diskId,
        alias: d.alias,
        kind: d.kind,
        virtualSize: d.virtualSize,
        size: d.size,
        layer: d.layer,
        ...(d.parentLayer ? { parentLayer: d.parentLayer } : {}),
        ...(d.reason ? { reason: d.reason } : {}),
      })),
    };
  });
}

/**
 * The KV record after the store changed (retention ran, or a rebuild): the store's restore points
 * (it is the truth for files), with the KV-only parts kept — points KV has that are newer than
 * the store's newest (their manifest write is still to come), flags set in KV
 * (checkpointReleased, a newer verification), incoming points, and the higher nextSeq.
 */
export function syncFromStore(kv: ChainRecord | undefined, store: ChainRecord, now: Date = new Date()): ChainRecord {
  const { pending: _p, incoming: _i, ...base } = store;
  if (!kv) return { ...base };
  const lastSeq = store.restorePoints.at(-1)?.seq ?? 0;
  const kvById = new Map(kv.restorePoints.map((p) => [p.id, p]));
  const points = store.restorePoints.map((p) => {
    const k = kvById.get(p.id);
    if (!k) return p;
    let out = p;
    if (k.checkpointReleased && !p.checkpointReleased) out = { ...out, checkpointReleased: true };
    if (k.verified && (!p.verified || k.verified.time > p.verified.time)) out = { ...out, verified: k.verified };
    if (k.bootTested && (!p.bootTested || k.bootTested.time > p.bootTested.time)) out = { ...out, bootTested: k.bootTested };
    return out;
  });
  const newer = kv.restorePoints.filter((p) => p.seq > lastSeq && !store.restorePoints.some((s) => s.id === p.id));
  const next: ChainRecord = {
    ...base,
    restorePoints: [...points, ...newer],
    nextSeq: Math.max(kv.nextSeq, store.nextSeq),
    updatedAt: now.toISOString(),
    ...(kv.incoming?.length ? { incoming: kv.incoming } : {}),
  };
  // A KV point built on a layer retention renamed cannot be kept as is: drop it from this view (the
  // store refuses it too, with STORE_PARENT_GONE) rather than store an inconsistent record.
  return chainProblems(next).length ? { ...base, nextSeq: next.nextSeq, updatedAt: next.updatedAt, ...(kv.incoming?.length ? { incoming: kv.incoming } : {}) } : next;
}
