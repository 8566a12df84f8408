/**
 * Executes a retention plan (domain/retention) on the store, crash-safely:
 *
 *   1. write-ahead: the manifest gets `pending` {phase: 'apply', steps, cleanup, target} before
 *      any file changes; readers stop offering the points being removed;
 *   2. the steps run in order; each is idempotent (commit is skipped once its base is gone,
 *      replace once its source is gone, link once its target exists, rebase -u just sets the name);
 *   3. every layer of the target record is inspected (exists, backing file as recorded), sizes
 *      are re-read, and the target is committed with `pending.phase = 'cleanup'`;
 *   4. files nothing needs any more are deleted; the manifest is written without `pending`.
 *
 * After a crash, replayPending() (called by every writer before it changes the manifest, and by
 * `ferry state rebuild`) runs the same sequence again from the recorded intent.
 */
import { randomUUID } from "node:crypto";
import { link, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { baseName, checkChain, layerIndex, layerChain, type ChainRecord, type ChainRecordBody, type PendingRetention, type RetentionStep } from "../../domain/chain/mod.ts";
import { planRetention, type PlanOptions, type RetentionPlan, type RetentionPolicy } from "../../domain/retention/mod.ts";
import type { QemuImg } from "../qemu/mod.ts";
import { StoreError } from "./errors.ts";
import { exists, fsyncPath } from "./fs-atomic.ts";
import { inspectLayer } from "./layers.ts";
import { writeManifestFile } from "./manifest.ts";
import type { StorePaths } from "./paths.ts";

export interface RetentionContext {
  paths: StorePaths;
  qemu: QemuImg;
  signal?: AbortSignal;
}

export interface RetentionResult {
  plan: RetentionPlan;
  /** The record after the run (no `pending`). */
  record: ChainRecord;
  removed: string[];
}

/** Plan and run retention on a record read under the VM lock (the caller holds it). */
export async function runRetention(
  ctx: RetentionContext,
  current: ChainRecord,
  policy: RetentionPolicy,
  o: PlanOptions,
): Promise<RetentionResult> {
  const record = current.pending ? await replayPending(ctx, current) : current;
  const plan = planRetention(record, policy, o);
  if (plan.remove.length === 0) return { plan, record, removed: [] };
  // Before the intent is written: every layer a kept point needs, and every layer a step touches,
  // is on disk with the backing file the record says. A record that does not match the files
  // (a stale copy, a damaged store) is refused here, before anything changes, instead of leaving
  // an intent that can never complete.
  const needed = new Set<string>();
  for (const p of record.restorePoints) if (!plan.remove.some((r) => r.id === p.id)) for (const l of p.disks) needed.add(l.layer);
  for (const m of plan.merges) for (const rel of [m.base, m.top]) needed.add(rel);
  for (const ref of layerIndex(record).values()) {
    if (!needed.has(ref.layer.layer) && !plan.merges.some((m) => isBetween(record, ref.layer.layer, m))) continue;
    const facts = await inspectLayer(ctx.paths, ctx.qemu, ref.layer.layer, ctx.signal);
    if (facts.backing !== ref.layer.parentLayer) {
      throw new StoreError(
        "STORE_LAYER_MISMATCH",
        `retention refused: layer ${ref.layer.layer} builds on ${facts.backing ?? "nothing"}, the record says ${ref.layer.parentLayer ?? "nothing"}; nothing was changed`,
        { layer: ref.layer.layer },
      );
    }
  }
  const pending: PendingRetention = {
    id: randomUUID(),
    createdAt: o.now.toISOString(),
    phase: "apply",
    removing: plan.remove.map((r) => r.id),
    steps: plan.steps,
    cleanup: plan.cleanup,
    target: plan.target,
  };
  const withIntent: ChainRecord = { ...record, pending };
  checkChain(withIntent, `retention intent of ${record.vm.name}`);
  await writeManifestFile(ctx.paths, withIntent);
  const after = await replayPending(ctx, withIntent);
  return { plan, record: after, removed: pending.removing };
}

/** Finish a retention run recorded in `record.pending` (idempotent; the caller holds the VM lock). */
export async function replayPending(ctx: RetentionContext, record: ChainRecord): Promise<ChainRecord> {
  let pending = record.pending;
  if (!pending) return record;
  let target: ChainRecordBody = pending.target;
  if (pending.phase === "apply") {
    for (const step of pending.steps) {
      ctx.signal?.throwIfAborted();
      await runStep(ctx, step);
    }
    target = await refreshTarget(ctx, target);
    pending = { ...pending, phase: "cleanup", removing: [], target };
    await writeManifestFile(ctx.paths, { ...target, pending });
  }
  const keep = new Set(target.restorePoints.flatMap((p) => [...p.disks.flatMap((d) => [d.layer, d.digestsFile]), ...(p.ovfFile ? [p.ovfFile] : [])]));
  const dirs = new Set<string>();
  for (const rel of pending.cleanup) {
    if (keep.has(rel)) continue; // never delete what the committed record names (defence against a bad intent)
    const abs = ctx.paths.abs(rel);
    await rm(abs, { force: true });
    dirs.add(dirname(abs));
  }
  for (const d of dirs) await fsyncPath(d).catch(() => undefined);
  const done: ChainRecord = { ...target };
  await writeManifestFile(ctx.paths, done);
  return done;
}

/** Whether `layer` lies strictly between a merge's base and top (the layers the commit reads). */
function isBetween(record: ChainRecord, layer: string, m: { diskId: string; top: string; base: string; into: string }): boolean {
  const chain = layerChain(record, m.into, m.diskId).map((l) => l.layer);
  const top = chain.indexOf(m.top);
  const base = chain.indexOf(m.base);
  const at = chain.indexOf(layer);
  return at > top && at < base;
}

async function runStep(ctx: RetentionContext, s: RetentionStep): Promise<void> {
  const abs = (rel: string) => ctx.paths.abs(rel);
  const signal = ctx.signal ? { signal: ctx.signal } : {};
  switch (s.op) {
    case "commit": {
      if (!(await exists(abs(s.base)))) return; // already replaced or linked and cleaned up
      if (!(await exists(abs(s.top)))) {
        throw new StoreError("STORE_RETENTION_BROKEN", `retention cannot merge into ${s.base}: its top layer ${s.top} is missing`, { step: s });
      }
      await ctx.qemu.commit(abs(s.top), { format: "qcow2", base: abs(s.base), ...signal });
      await fsyncPath(abs(s.base));
      return;
    }
    case "replace": {
      if (!(await exists(abs(s.from)))) return;
      await rename(abs(s.from), abs(s.to));
      await fsyncPath(dirname(abs(s.to)));
      return;
    }
    case "link": {
      if (await exists(abs(s.to))) return;
      await link(abs(s.from), abs(s.to));
      await fsyncPath(dirname(abs(s.to)));
      return;
    }
    case "rebase": {
      // Gone = a later step of this plan already renamed it over its own kept child (after this
      // rebase, steps run in order); the target check after the steps catches anything else.
      if (!(await exists(abs(s.layer)))) return;
      // Same guest content under another name: an unsafe rebase only rewrites the header.
      await ctx.qemu.rebase(abs(s.layer), { format: "qcow2", unsafe: true, backing: { path: baseName(s.backing), format: "qcow2" }, ...signal });
      await fsyncPath(abs(s.layer));
      return;
    }
  }
}

/** Re-read the size of every target layer and check that its backing file is the recorded parent. */
async function refreshTarget(ctx: RetentionContext, target: ChainRecordBody): Promise<ChainRecordBody> {
  const restorePoints = [];
  for (const p of target.restorePoints) {
    const disks = [];
    for (const d of p.disks) {
      const facts = await inspectLayer(ctx.paths, ctx.qemu, d.layer, ctx.signal);
      if (facts.backing !== d.parentLayer) {
        throw new StoreError(
          "STORE_RETENTION_BROKEN",
          `after retention, layer ${d.layer} builds on ${facts.backing ?? "nothing"} but should build on ${d.parentLayer ?? "nothing"}; the run is kept pending for inspection`,
          { layer: d.layer },
        );
      }
      disks.push({ ...d, size: facts.size });
    }
    restorePoints.push({ ...p, disks });
  }
  return { ...target, restorePoints };
}
