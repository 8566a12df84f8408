/**
 * disk.transferred → the layer recorded in the VM's chain (KV compare-and-set); when every disk of
 * the restore point is in: restore-points.json written atomically to the store, chain.updated.
 * Idempotent: a redelivered disk is recognised by (restore point, disk) and the completed point
 * is re-announced with the same msgID.
 */
import type { DiskTransferred } from "../../contracts/disk-transferred.ts";
import { addIncomingDisk, digestsPath, ovfPath, pointFileKey, type ChainRecord, type DiskLayer, type RestorePoint } from "../../domain/chain/mod.ts";
import type { ChainStore } from "../reconciler/chain-kv.ts";

export interface ManifestWriter {
  /** Write `<store>/<vm-name>/restore-points.json` atomically (temp, fsync, rename). */
  writeManifest(record: ChainRecord): Promise<void>;
}

export interface DiskTransferredDeps {
  readonly chains: ChainStore;
  readonly store: ManifestWriter;
  readonly clock: () => Date;
}

export interface ChainUpdatedOut {
  readonly subject: "chain.updated";
  readonly event: { id: string } & Record<string, unknown>;
}

/** Extra fields backup-requested puts on disk.transferred (the contract is a loose object). */
interface Extras {
  checkpointId?: string;
  digestsFile?: string;
  takenAt?: string;
  fromCheckpointId?: string;
  parentPoint?: string;
  ovfFile?: string;
}

export function createDiskTransferredHandler(deps: DiskTransferredDeps) {
  return async function handleDiskTransferred(ev: DiskTransferred & { correlationId: string }): Promise<ChainUpdatedOut[]> {
    const x = ev as DiskTransferred & Extras;
    const key = pointFileKey({ id: ev.restorePoint, checkpointId: x.checkpointId });
    const layer: DiskLayer = {
      diskId: ev.disk.id,
      alias: ev.disk.alias,
      virtualSize: ev.disk.virtualSize,
      layer: ev.layer.path,
      ...(ev.layer.parent ? { parentLayer: ev.layer.parent } : {}),
      kind: ev.mode,
      size: ev.layer.size,
      checksum: ev.checksum,
      digestsFile: x.digestsFile ?? digestsPath(ev.vm.name, key, ev.disk.id),
      ...(ev.reason ? { reason: ev.reason } : {}),
    };
    let completed: RestorePoint | undefined;
    const record = await deps.chains.change(
      ev.vm,
      (cur) => {
        const parentId = cur.restorePoints.find((p) => p.checkpointId && p.checkpointId === x.fromCheckpointId)?.id;
        const res = addIncomingDisk(
          cur,
          {
            id: ev.restorePoint,
            time: x.takenAt ?? ev.time,
            ...(x.checkpointId ? { checkpointId: x.checkpointId } : {}),
            ...(parentId ? { parentId } : {}),
            ...(ev.reason && ev.mode === "full" ? { reason: ev.reason } : {}),
            diskCount: ev.diskCount,
            ovfFile: x.ovfFile ?? ovfPath(ev.vm.name, key),
            runId: ev.runId,
            backupId: ev.backupId,
            disk: layer,
          },
          deps.clock(),
        );
        completed = res.completed;
        return res.record;
      },
      deps.clock(),
    );
    if (!completed) return [];
    // The KV record is committed; the manifest follows it (a redelivery rewrites it the same way).
    await deps.store.writeManifest(record);
    const point = completed;
    const reasons = [...new Set(point.disks.map((d) => d.reason).filter((r): r is string => !!r))];
    return [
      {
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
      },
    ];
  };
}
