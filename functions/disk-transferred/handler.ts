/**
 * disk.transferred → the layer recorded in the VM's chain (KV compare-and-set); when every disk of
 * the restore point is in: restore-points.json written atomically to the store FIRST, then the
 * point committed to KV (compare-and-set), then chain.updated. A point is never in KV without
 * being in the store.
 * Idempotent: a redelivered disk is recognised by (restore point, disk) and the completed point
 * is re-announced with the same msgID. A failure for good (permanent, or the last delivery) ends
 * the run: the VM lease the run handed on is released (the alert is functions/alerts' job, from
 * the backup.failed the runtime publishes).
 */
import type { DiskTransferred } from "../../contracts/disk-transferred.ts";
import { addIncomingDisk, ovfPath, onlyIncoming, pointFileKey, type ChainRecord, type DiskLayer, type IncomingDisk, type RestorePoint, syncFromStore } from "../../domain/chain/mod.ts";
import { PermanentError, TransientError, errorCode, isPermanent } from "../../contracts/errors.ts";
import type { ChainStore } from "../../pipeline/chain-view.ts";
import type { Leases } from "../../pipeline/vm-lease.ts";
import type { RunJournal } from "../../pipeline/run-journal.ts";
import { coveredCompletion, coveredFailure, markRecorded } from "../../pipeline/coalesce.ts";
import { redactText } from "../../adapters/secrets.ts";

export interface ManifestWriter {
  /**
   * Bring `<store>/<vm-name>/restore-points.json` up to date with a chain record (adapters/store
   * Store.writeManifest: VM lock, pending retention finished first, files checked; idempotent)
   * and return the manifest as written.
   */
  writeManifest(record: ChainRecord): Promise<ChainRecord>;
}

export interface DiskTransferredDeps {
  readonly chains: ChainStore;
  readonly store: ManifestWriter;
  readonly leases: Pick<Leases, "releaseRun">;
  /**
   * The run journal: the committed point marks the run recorded (a redelivered backup.requested
   * then changes nothing) and answers the requests coalesced into the run (pipeline/coalesce.ts).
   */
  readonly runs?: RunJournal | undefined;
  readonly clock: () => Date;
  readonly log: { error(o: object, m?: string): void };
}

export interface DiskTransferredContext {
  /** This delivery is the last one: a failure now is for good. */
  readonly lastAttempt?: boolean;
  /** Publish now (the outcomes of coalesced requests when the run fails for good). */
  readonly publish?: (subject: string, event: { id: string } & Record<string, unknown>) => Promise<void>;
}

export interface ChainUpdatedOut {
  readonly subject: "chain.updated" | "backup.completed";
  readonly event: { id: string } & Record<string, unknown>;
}

export function createDiskTransferredHandler(deps: DiskTransferredDeps) {
  return async function handleDiskTransferred(ev: DiskTransferred & { correlationId: string }, ctx: DiskTransferredContext = {}): Promise<ChainUpdatedOut[]> {
    try {
      return await record(ev);
    } catch (err) {
      if (isPermanent(err) || ctx.lastAttempt) {
        await failRun(ev, err, ctx).catch((e: unknown) => deps.log.error({ err: e, vm: ev.vm.name }, "could not end the run in its journal"));
        await deps.leases.releaseRun(ev.vm.id, ev.runId).catch((e: unknown) => deps.log.error({ err: e, vm: ev.vm.name }, "could not release the VM lease of a failed run"));
      }
      throw err;
    }
  };

  async function record(ev: DiskTransferred & { correlationId: string }): Promise<ChainUpdatedOut[]> {
    const key = pointFileKey({ id: ev.restorePoint, checkpointId: ev.checkpointId });
    const layer: DiskLayer = {
      diskId: ev.disk.id,
      alias: ev.disk.alias,
      virtualSize: ev.disk.virtualSize,
      layer: ev.layer.path,
      ...(ev.layer.parent ? { parentLayer: ev.layer.parent } : {}),
      kind: ev.mode,
      size: ev.layer.size,
      checksum: ev.checksum,
      digestsFile: ev.digestsFile,
      ...(ev.reason ? { reason: ev.reason } : {}),
    };
    const incoming: IncomingDisk = {
      id: ev.restorePoint,
      time: ev.takenAt,
      ...(ev.checkpointId ? { checkpointId: ev.checkpointId } : {}),
      ...(ev.reason && ev.mode === "full" ? { reason: ev.reason } : {}),
      diskCount: ev.diskCount,
      ovfFile: ovfPath(ev.vm.name, key),
      runId: ev.runId,
      backupId: ev.backupId,
      disk: layer,
    };
    const withDisk = (cur: ChainRecord) => {
      const parentId = cur.restorePoints.find((p) => p.checkpointId && p.checkpointId === ev.fromCheckpointId)?.id;
      // Incomplete points of earlier runs (which ended without completing them) go (KV values are capped).
      return addIncomingDisk(onlyIncoming(cur, ev.restorePoint), { ...incoming, ...(parentId ? { parentId } : {}) }, deps.clock());
    };

    // Store first, KV second: the store is the record that survives a loss of the bus, so a point
    // is committed to KV only once the store holds it. A crash (or a KV failure) between the two
    // leaves the point in the store only; the redelivery finds it there (the manifest write is
    // idempotent) and brings KV in line. A store failure leaves KV without the point.
    let stored: ChainRecord | undefined;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      let completed: RestorePoint | undefined;
      let storeFirst: ChainRecord | undefined;
      await deps.chains.change(
        ev.vm,
        (cur) => {
          completed = undefined;
          storeFirst = undefined;
          const res = withDisk(cur);
          if (!res.completed) return res.record; // disks still missing: only `incoming` grows
          completed = res.completed;
          if (res.record === cur) return cur; // already committed (a redelivery)
          if (stored && storeHas(stored, res.completed)) return res.record; // the store has it: commit
          storeFirst = res.record; // the store has not got it (yet): write it there first
          return cur;
        },
        deps.clock(),
      );
      if (!storeFirst) return completed ? [announce(ev, completed), ...(await recorded(ev))] : [];
      // Idempotent: on a redelivery after a crash the store already holds the point. If KV moves
      // before the commit, the next round recomputes the point and commits it only if the store
      // holds exactly that point (else it is written there again first).
      stored = await deps.store.writeManifest(storeFirst);
      if (!storeHas(stored, completed!)) {
        // The store is ahead of KV (it recorded a point whose KV commit never happened, or other
        // layers for this one): KV follows the store, so the next backup builds on what it holds.
        const manifest = stored;
        await deps.chains.change(ev.vm, (cur) => syncFromStore(cur, manifest, deps.clock()), deps.clock());
        throw new PermanentError(
          "STORE_POINT_NOT_RECORDED",
          `the store did not record restore point ${completed!.id} of VM ${ev.vm.name}: it holds a newer point or other layers for it (KV now follows the store); take the backup again`,
          { vm: ev.vm.name, restorePoint: completed!.id },
        );
      }
    }
    throw new TransientError("CHAIN_CONFLICT", `the chain of VM ${ev.vm.name} kept changing while restore point ${ev.restorePoint} was recorded`, { vm: ev.vm.name });
  }

  /** The run's point is committed: mark the run recorded; its coalesced requests are answered. */
  async function recorded(ev: DiskTransferred): Promise<ChainUpdatedOut[]> {
    if (!deps.runs) return [];
    const now = deps.clock();
    const run = await markRecorded(deps.runs, ev.runId, now);
    return (run?.coalesced ?? []).map((c) => ({ subject: "backup.completed" as const, event: coveredCompletion(run!, c, now) }));
  }

  /** The run failed for good here: journal it failed and tell its coalesced requests. */
  async function failRun(ev: DiskTransferred, err: unknown, ctx: DiskTransferredContext): Promise<void> {
    if (!deps.runs) return;
    const code = errorCode(err);
    const message = redactText(err instanceof Error ? err.message : String(err));
    const run = await deps.runs.change(ev.runId, (cur) => (cur && !cur.recordedAt && cur.phase !== "failed" ? { ...cur, phase: "failed", error: { code, message } } : undefined));
    if (!run || run.recordedAt) return;
    const now = deps.clock();
    for (const c of run.coalesced ?? []) await ctx.publish?.("backup.failed", coveredFailure(run, c, run.error?.code ?? code, run.error?.message ?? message, now));
  }

  function announce(ev: DiskTransferred & { correlationId: string }, point: RestorePoint): ChainUpdatedOut {
    const reasons = [...new Set(point.disks.map((d) => d.reason).filter((r): r is string => !!r))];
    return {
      subject: "chain.updated",
      event: {
        id: `${ev.vm.id}:${point.id}:chain.updated`,
        time: deps.clock().toISOString(),
        correlationId: ev.correlationId,
        runId: ev.runId,
        vm: ev.vm,
        restorePoint: {
          id: point.id,
          ...(point.checkpointId ? { checkpointId: point.checkpointId } : {}),
          time: point.time,
          kind: point.kind,
          disks: point.disks.map((d) => ({
            id: d.diskId,
            layer: { path: d.layer, size: d.size, ...(d.parentLayer ? { parent: d.parentLayer } : {}) },
            checksum: d.checksum,
          })),
        },
        ...(point.reason || reasons.length ? { reason: point.reason ?? reasons.join("; ") } : {}),
      },
    };
  }
}

/** Rounds of store write + KV commit before giving up on a chain that keeps changing. */
const MAX_ROUNDS = 5;

/** The store's manifest holds this point with exactly these layers. */
function storeHas(stored: ChainRecord, point: RestorePoint): boolean {
  const mine = stored.restorePoints.find((p) => p.id === point.id);
  if (!mine) return false;
  const key = (p: RestorePoint) => p.disks.map((d) => `${d.diskId}=${d.layer}<${d.parentLayer ?? ""}#${d.checksum.value}`).sort().join("|");
  return key(mine) === key(point);
}
