/**
 * chain.updated → retention by the VM's policy (never breaking a kept point), release of engine
 * checkpoints Ferry no longer needs (only its own: the ones its chain records), the result in the
 * source engine's audit log, backup.completed — and, for a VM with replicateToDr, a
 * restore.requested in mode replicate for the new point. The restore point must be in the store: an event
 * naming a point the store does not hold (forged, or from another deployment) announces nothing.
 * Retention runs under the run's VM lease (handed on by backup-requested), released at the end.
 * A failure for good is announced by the runtime (backup.failed) and alerted by functions/alerts.
 */
import type { ChainUpdated } from "../../contracts/chain-updated.ts";
import { PermanentError } from "../../contracts/errors.ts";
import { markCheckpointsReleased, visiblePoints, type ChainRecord } from "../../domain/chain/mod.ts";
import type { RetentionPolicy } from "../../domain/retention/mod.ts";
import type { ChainStore } from "../../pipeline/chain-view.ts";
import { customIdFor } from "../../pipeline/run-ids.ts";

export interface ChainUpdatedEngine {
  removeCheckpoint(vmId: string, checkpointId: string): Promise<void>;
  postEvent(o: { description: string; severity: "normal" | "warning" | "alert" | "error"; customId: number; vmId?: string | undefined }): Promise<void>;
}

export interface Retention {
  /**
   * Plan and execute retention crash-safely under the VM lease of run `runId`; returns the
   * removed restore point ids.
   */
  apply(vm: { id: string; name: string }, policy: RetentionPolicy, now: Date, runId: string): Promise<{ removed: string[] }>;
}

/** Does the store's manifest hold this restore point of this VM, with exactly these disks? */
export type PointInStore = (vm: { id: string; name: string }, point: { id: string; disks: string[] }) => Promise<boolean>;

export interface ChainUpdatedDeps {
  readonly chains: ChainStore;
  readonly retention: Retention;
  readonly pointInStore: PointInStore;
  readonly engineFor: (vmId: string, runId?: string) => Promise<ChainUpdatedEngine | undefined>;
  readonly policy: (vmName: string) => RetentionPolicy;
  /** The VM keeps a DR copy (config vms.<vm>.replicateToDr): each new point is replicated. */
  readonly replicates: (vmName: string) => boolean;
  readonly clock: () => Date;
  readonly log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void };
}

/** Engine checkpoints of the chain that no longer feed an incremental (all but the newest point's). */
export function checkpointsToRelease(record: ChainRecord): string[] {
  const newest = visiblePoints(record).at(-1);
  return record.restorePoints
    .filter((p) => p.checkpointId && !p.checkpointReleased && p.checkpointId !== newest?.checkpointId)
    .map((p) => p.checkpointId!);
}

export function createChainUpdatedHandler(deps: ChainUpdatedDeps) {
  return async function handleChainUpdated(ev: ChainUpdated & { correlationId: string }) {
    const runKey = ev.runId ?? ev.restorePoint.id;
    if (!(await deps.pointInStore(ev.vm, { id: ev.restorePoint.id, disks: ev.restorePoint.disks.map((d) => d.id) }))) {
      throw new PermanentError(
        "CHAIN_POINT_UNKNOWN",
        `restore point ${ev.restorePoint.id} of VM ${ev.vm.name} is not in the store with these disks; nothing was announced`,
        { vm: ev.vm.name, restorePoint: ev.restorePoint.id },
      );
    }
    const engine = await deps.engineFor(ev.vm.id, ev.runId);
    const now = deps.clock();
    const { removed } = await deps.retention.apply(ev.vm, deps.policy(ev.vm.name), now, ev.runId ?? `retention-${ev.vm.id}`);

    let record = await deps.chains.read(ev.vm.id);
    const release = record ? checkpointsToRelease(record) : [];
    const released: string[] = [];
    for (const cp of release) {
      try {
        await engine?.removeCheckpoint(ev.vm.id, cp);
        released.push(cp);
      } catch (err) {
        // Not fatal: the next run retries (the VM may be busy with another operation).
        deps.log.warn({ err, vm: ev.vm.name, checkpoint: cp }, "could not remove an old engine checkpoint");
      }
    }
    if (released.length) record = await deps.chains.change(ev.vm, (cur) => markCheckpointsReleased(cur, released, now), now);

    const point = record?.restorePoints.find((p) => p.id === ev.restorePoint.id);
    const bytes = ev.restorePoint.disks.reduce((n, d) => n + d.layer.size, 0);
    const seconds = Math.max(0, (now.getTime() - Date.parse(ev.restorePoint.time)) / 1000);
    await engine
      ?.postEvent({
        description:
          `Ferry: backup of VM ${ev.vm.name} completed: restore point ${point?.seq ?? ev.restorePoint.id} (${ev.restorePoint.kind}` +
          `${ev.reason && ev.restorePoint.kind === "full" ? `: ${ev.reason}` : ""}), ${ev.restorePoint.disks.length} disk(s), ${bytes} bytes` +
          `${removed.length ? `; retention removed ${removed.length} restore point(s)` : ""}`.slice(0, 1000),
        severity: "normal",
        customId: customIdFor(runKey, "completed"),
        vmId: ev.vm.id,
      })
      .catch((err: unknown) => deps.log.warn({ err, vm: ev.vm.name }, "could not post the result to the engine audit log"));

    const replicate = deps.replicates(ev.vm.name)
      ? [
          {
            subject: "restore.requested" as const,
            event: {
              id: `${ev.vm.id}:${ev.restorePoint.id}:restore.requested`,
              time: now.toISOString(),
              correlationId: ev.correlationId,
              vm: ev.vm.name,
              restorePoint: ev.restorePoint.id,
              target: "dr",
              mode: "replicate" as const,
            },
          },
        ]
      : [];
    return [
      ...replicate,
      {
        subject: "backup.completed" as const,
        event: {
          id: `${ev.vm.id}:${ev.restorePoint.id}:backup.completed`,
          time: now.toISOString(),
          correlationId: ev.correlationId,
          vm: ev.vm.name,
          vmId: ev.vm.id,
          ...(ev.runId ? { runId: ev.runId } : {}),
          restorePoint: ev.restorePoint.id,
          kind: ev.restorePoint.kind,
          bytes,
          seconds,
          retention: { removed },
        },
      },
    ];
  };
}
