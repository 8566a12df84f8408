/**
 * The retention planner: from a chain record and a policy, the restore points to remove and the
 * file steps that remove them without breaking any kept point.
 *
 * Per disk, layers form linear chains (full ← inc ← inc ...). In a chain, a layer is needed when
 * some kept point at or after it in the chain is kept. Per chain:
 * - layers after the last kept one are not needed: they are deleted;
 * - a run of unkept but needed layers U1..Uk below a kept layer K is rolled forward into K:
 *     1. `qemu-img commit -b U1 K` merges U2..Uk and K into U1, so U1 holds K's guest view.
 *        K stays valid throughout: every cluster written into U1 is shadowed by a higher layer
 *        in K's chain, so a crash at any moment leaves K (and everything above it) readable,
 *        and re-running the commit writes the same data again.
 *     2. U1 takes K's place. When the merged layer keeps K's file name (U1 and K are both
 *        incremental), rename(U1, K) swaps it in atomically and K's child still finds it by name.
 *        When the name changes (U1 is full, K was incremental: the merged layer becomes
 *        `<K time>.<K checkpoint>.full.qcow2`), link(U1, new name), then `qemu-img rebase -u`
 *        K's child onto the new name (same content); K and U1 are unlinked after the manifest
 *        names the new file.
 *   Only U1..Uk (unkept points) are ever modified; the cost is the size of the increments, not
 *   of the base. Keeping the base instead (never merging) would be simpler but keeps every old
 *   full alive as long as any later point of its chain is kept, which with keep-weekly means
 *   months of fulls. Merging is used; nothing is kept "just because".
 * The executor (adapters/store) writes this plan into the manifest before touching a file
 * (write-ahead), runs the steps (each idempotent), commits the target record, then deletes.
 */
import {
  checkChain,
  diskChains,
  layerIndex,
  parseLayerPath,
  type ChainRecord,
  type ChainRecordBody,
  type DiskLayer,
  type LayerRef,
  type RestorePoint,
  type RetentionStep,
  ChainError,
} from "../chain/mod.ts";
import { selectKept, type RetentionPolicy } from "./policy.ts";

export interface MergePlan {
  diskId: string;
  /** The kept point whose layer receives the merge. */
  into: string;
  /** Unkept points whose layers are merged (oldest first). */
  from: string[];
  base: string;
  top: string;
  result: string;
}

export interface RetentionPlan {
  vm: { id: string; name: string };
  keep: { id: string; reasons: string[] }[];
  remove: { id: string; reason: string }[];
  merges: MergePlan[];
  steps: RetentionStep[];
  /** Store-relative files deleted after the target record is committed. */
  cleanup: string[];
  /** The record after the plan. Sizes of rewritten layers are estimates until the executor stats them. */
  target: ChainRecordBody;
  /** Layers whose file is rewritten or renamed by the steps (the executor re-reads their size and backing). */
  changedLayers: string[];
  /** Engine checkpoints Ferry no longer needs (only the newest point's checkpoint feeds the next incremental). */
  checkpointsToRemove: string[];
}

export interface PlanOptions {
  now: Date;
  /** Zone of calendar days/weeks/months for keepDaily/Weekly/Monthly. Default UTC. */
  timeZone?: string;
}

export function planRetention(record: ChainRecord, policy: RetentionPolicy, o: PlanOptions): RetentionPlan {
  if (record.pending) {
    throw new ChainError("CHAIN_PENDING", `VM ${record.vm.name} has an unfinished retention run; replay it before planning another`);
  }
  checkChain(record);
  const points = record.restorePoints;
  const decision = selectKept(points, policy, o.now, o.timeZone ?? "UTC");
  const kept = new Set(decision.keep.keys());

  const steps: RetentionStep[] = [];
  const cleanup: string[] = [];
  const merges: MergePlan[] = [];
  const changed = new Set<string>();
  /** old layer path → its path after the plan */
  const renamed = new Map<string, string>();
  /** new layer data for kept layers, by their old path */
  const rewrite = new Map<string, Partial<DiskLayer>>();

  for (const [diskId, chains] of diskChains(record)) {
    for (const chain of chains) planChain(diskId, chain);
  }

  function planChain(diskId: string, chain: LayerRef[]): void {
    let lastKept = -1;
    chain.forEach((ref, i) => {
      if (kept.has(ref.pointId)) lastKept = i;
    });
    let run: LayerRef[] = [];
    chain.forEach((ref, i) => {
      if (i > lastKept) {
        cleanup.push(ref.layer.layer);
        return;
      }
      if (!kept.has(ref.pointId)) {
        run.push(ref);
        return;
      }
      if (run.length) merge(diskId, run, ref, i + 1 <= lastKept ? chain[i + 1] : undefined);
      run = [];
    });
  }

  function merge(diskId: string, run: LayerRef[], k: LayerRef, child: LayerRef | undefined): void {
    const u1 = run[0]!;
    const kName = parseLayerPath(k.layer.layer);
    if (!kName) throw new ChainError("CHAIN_INVALID", `layer ${k.layer.layer} does not follow the store layout`);
    const kind = u1.layer.kind;
    const result = `${kName.vmName}/${kName.diskId}/${kName.time}.${kName.key}.${kind}.qcow2`;
    steps.push({ op: "commit", diskId, top: k.layer.layer, base: u1.layer.layer });
    if (result === k.layer.layer) {
      steps.push({ op: "replace", from: u1.layer.layer, to: k.layer.layer });
      cleanup.push(...run.slice(1).map((r) => r.layer.layer));
    } else {
      steps.push({ op: "link", from: u1.layer.layer, to: result });
      if (child) {
        steps.push({ op: "rebase", layer: child.layer.layer, backing: result });
        changed.add(child.layer.layer);
      }
      cleanup.push(...run.map((r) => r.layer.layer), k.layer.layer);
      renamed.set(k.layer.layer, result);
    }
    changed.add(result);
    const from = run.map((r) => r.pointId);
    rewrite.set(k.layer.layer, {
      layer: result,
      kind,
      parentLayer: u1.layer.parentLayer,
      size: run.reduce((n, r) => n + r.layer.size, k.layer.size),
      mergedFrom: [...(k.layer.mergedFrom ?? []), ...run.flatMap((r) => r.layer.mergedFrom ?? []), ...from],
    });
    merges.push({ diskId, into: k.pointId, from, base: u1.layer.layer, top: k.layer.layer, result });
  }

  const removed = points.filter((p) => !kept.has(p.id));
  for (const p of removed) {
    for (const d of p.disks) cleanup.push(d.digestsFile);
    if (p.ovfFile) cleanup.push(p.ovfFile);
  }

  const owner = new Map<string, RestorePoint>();
  const keptPoints: RestorePoint[] = points
    .filter((p) => kept.has(p.id))
    .map((p) => {
      const disks = p.disks.map((d) => {
        const r = rewrite.get(d.layer);
        const next: DiskLayer = { ...d, ...r };
        const parent = next.parentLayer;
        if (parent === undefined) delete next.parentLayer;
        else next.parentLayer = renamed.get(parent) ?? parent;
        if (!next.mergedFrom?.length) delete next.mergedFrom;
        return next;
      });
      const kind = disks.every((d) => d.kind === "full") ? "full" : "incremental";
      const point: RestorePoint = { ...p, disks, kind };
      const relinked = disks.some((d, i) => d.layer !== p.disks[i]!.layer || d.parentLayer !== p.disks[i]!.parentLayer);
      if (relinked) delete point.verified;
      if (relinked || (p.parentId !== undefined && !kept.has(p.parentId))) {
        // The point it was taken from is gone: it now builds on whatever its layers build on.
        const parents = disks.flatMap((d) => (d.parentLayer ? [owner.get(d.parentLayer)] : [])).filter((x) => x !== undefined);
        const parent = parents.sort((a, b) => b.seq - a.seq)[0];
        if (parent) point.parentId = parent.id;
        else delete point.parentId;
      }
      if (kind === "full" && p.kind !== "full") {
        const merged = new Set(disks.flatMap((d) => d.mergedFrom ?? []));
        point.reason = `rolled forward: retention merged ${merged.size} older restore point${merged.size === 1 ? "" : "s"} into it`;
      }
      for (const d of disks) owner.set(d.layer, point);
      return point;
    });

  const newest = points.at(-1);
  const checkpointsToRemove = points
    .filter((p) => p.checkpointId && !p.checkpointReleased && p !== newest && p.checkpointId !== newest?.checkpointId)
    .map((p) => p.checkpointId!);

  const target: ChainRecordBody = {
    format: 1,
    vm: record.vm,
    nextSeq: record.nextSeq,
    restorePoints: keptPoints,
    updatedAt: removed.length ? o.now.toISOString() : record.updatedAt,
    ...(record.incoming ? { incoming: record.incoming } : {}),
  };
  checkChain(target, `retention target of ${record.vm.name}`);
  assertNothingLost(record, target, kept, cleanup);

  return {
    vm: record.vm,
    keep: [...decision.keep].map(([id, reasons]) => ({ id, reasons })),
    remove: removed.map((p) => ({ id: p.id, reason: decision.remove.get(p.id) ?? "not kept" })),
    merges,
    steps,
    cleanup: [...new Set(cleanup)],
    target,
    changedLayers: [...changed],
    checkpointsToRemove: [...new Set(checkpointsToRemove)],
  };
}

/** Defence in depth: every kept point keeps every disk, and no file a kept point needs is deleted. */
function assertNothingLost(before: ChainRecord, after: ChainRecordBody, kept: Set<string>, cleanup: string[]): void {
  const afterIndex = layerIndex(after);
  const needed = new Set(after.restorePoints.flatMap((p) => [...p.disks.flatMap((d) => [d.layer, d.digestsFile]), ...(p.ovfFile ? [p.ovfFile] : [])]));
  for (const f of cleanup) if (needed.has(f)) throw new ChainError("RETENTION_BUG", `retention would delete ${f}, which a kept point needs`);
  for (const p of before.restorePoints) {
    if (!kept.has(p.id)) continue;
    const q = after.restorePoints.find((x) => x.id === p.id);
    if (!q || q.disks.length !== p.disks.length) throw new ChainError("RETENTION_BUG", `retention would drop disks of kept point ${p.id}`);
    for (const d of q.disks) {
      for (let l: DiskLayer | undefined = d; l; l = l.parentLayer ? afterIndex.get(l.parentLayer)?.layer : undefined) {
        if (!afterIndex.has(l.layer)) throw new ChainError("RETENTION_BUG", `retention would lose layer ${l.layer} of kept point ${p.id}`);
      }
    }
  }
}
