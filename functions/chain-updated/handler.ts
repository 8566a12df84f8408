/**
 * chain.updated → retention by the VM's policy (never breaking a kept point), release of engine
 * checkpoints Ferry no longer needs (only its own: the ones its chain records), the result in the
 * source engine's audit log, backup.completed.
 */
import type { ChainUpdated } from "../../contracts/chain-updated.ts";
import { errorCode, isPermanent } from "../../contracts/errors.ts";
import { redactText } from "../../adapters/secrets.ts";
import { markCheckpointsReleased, visiblePoints, type ChainRecord } from "../../domain/chain/mod.ts";
import type { RetentionPolicy } from "../../domain/retention/mod.ts";
import type { ChainStore } from "../../pipeline/chain-view.ts";
import { customIdFor } from "../../pipeline/run-ids.ts";

export interface ChainUpdatedEngine {
  removeCheckpoint(vmId: string, checkpointId: string): Promise<void>;
  postEvent(o: { description: string; severity: "normal" | "warning" | "alert" | "error"; customId: number; vmId?: string | undefined }): Promise<void>;
}

export interface Retention {
  /** Plan and execute retention crash-safely; returns the removed restore point ids. */
  apply(vm: { id: string; name: string }, policy: RetentionPolicy, now: Date): Promise<{ removed: string[] }>;
}

export interface ChainUpdatedDeps {
  readonly chains: ChainStore;
  readonly retention: Retention;
  readonly engineFor: (vmId: string, runId?: string) => Promise<ChainUpdatedEngine | undefined>;
  readonly policy: (vmName: string) => RetentionPolicy;
  readonly clock: () => Date;
  readonly log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void };
}

export interface ChainUpdatedContext {
  readonly lastAttempt?: boolean;
}

/** Engine checkpoints of the chain that no longer feed an incremental (all but the newest point's). */
export function checkpointsToRelease(record: ChainRecord): string[] {
  const newest = visiblePoints(record).at(-1);
  return record.restorePoints
    .filter((p) => p.checkpointId && !p.checkpointReleased && p.checkpointId !== newest?.checkpointId)
    .map((p) => p.checkpointId!);
}

export function createChainUpdatedHandler(deps: ChainUpdatedDeps) {
  return async function handleChainUpdated(ev: ChainUpdated & { correlationId: string }, ctx: ChainUpdatedContext = {}) {
    const engine = await deps.engineFor(ev.vm.id, ev.runId);
    const runKey = ev.runId ?? ev.restorePoint.id;
    try {
      const now = deps.clock();
      const { removed } = await deps.retention.apply(ev.vm, deps.policy(ev.vm.name), now);

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
      const reason = (ev as { reason?: string }).reason;
      await engine
        ?.postEvent({
          description:
            `Ferry: backup of VM ${ev.vm.name} completed: restore point ${point?.seq ?? ev.restorePoint.id} (${ev.restorePoint.kind}` +
            `${reason && ev.restorePoint.kind === "full" ? `: ${reason}` : ""}), ${ev.restorePoint.disks.length} disk(s), ${bytes} bytes` +
            `${removed.length ? `; retention removed ${removed.length} restore point(s)` : ""}`.slice(0, 1000),
          severity: "normal",
          customId: customIdFor(runKey, "completed"),
          vmId: ev.vm.id,
        })
        .catch((err: unknown) => deps.log.warn({ err, vm: ev.vm.name }, "could not post the result to the engine audit log"));

      return [
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
    } catch (err) {
      if (isPermanent(err) || ctx.lastAttempt) {
        const message = redactText(err instanceof Error ? err.message : String(err));
        await engine
          ?.postEvent({
            description: `Ferry: backup of VM ${ev.vm.name} failed after the restore point was taken (${errorCode(err)}): ${message}`.slice(0, 1000),
            severity: "alert",
            customId: customIdFor(runKey, "failed"),
            vmId: ev.vm.id,
          })
          .catch(() => undefined);
      }
      throw err;
    }
  };
}
