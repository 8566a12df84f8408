/**
 * The snapshot-based full backup (ovirt-api.md §10), for engines without the backup API or with
 * incremental backup disabled: a snapshot without memory, every disk downloaded from its
 * snapshot volume, the snapshot removed on every way out.
 */
import { PermanentError } from "../../contracts/errors.ts";
import { backupIdFor, engineDescription } from "../../pipeline/run-ids.ts";
import { closeRun } from "../../pipeline/close-run.ts";
import type { ChainView } from "../../pipeline/ports.ts";
import type { DiskPlan } from "../../domain/backup/decide.ts";
import { joinReasons } from "./errors.ts";
import { moveDisk } from "./move-disk.ts";
import type { AttemptScope } from "./scope.ts";

export async function snapshotBackup(s: AttemptScope, plan: DiskPlan, chain: ChainView, reason: string | undefined): Promise<void> {
  const { deps, engine, vm, ctx } = s;
  const attemptNo = s.run.attempt + 1;
  await s.change((r) => ({
    ...r, phase: "backup", method: "snapshot", attempt: attemptNo, backupId: backupIdFor(r.runId, attemptNo), backupClosed: true,
    snapshotId: undefined, snapshotRemoved: false, mode: "full", reason, checkpointId: undefined,
    disks: plan.included.map((d) => ({ id: d.id, state: "pending" as const })),
  }));
  await deps.store.saveOvf(vm.name, s.run.restorePoint!, await engine.vmOvf(vm.id));
  let failure: unknown;
  try {
    const snap = await engine.createSnapshot(vm.id, { description: engineDescription(deps.deployment, vm.name, s.run.runId), diskIds: plan.included.map((d) => d.id) }, ctx.signal);
    await s.change((r) => ({ ...r, snapshotId: snap.id }));
    for (const d of plan.included) {
      const imageId = snap.disks.find((x) => x.id === d.id)?.imageId;
      if (!imageId) throw new PermanentError("SNAPSHOT_DISK_MISSING", `snapshot ${snap.id} has no volume of disk ${d.alias}`);
      await moveDisk(s, chain, {
        disk: d, mode: "full", reason: joinReasons(reason, plan.fullOnly.find((f) => f.id === d.id)?.reason), source: { snapshotImageId: imageId },
        diskCount: plan.included.length, skipped: plan.skipped,
      });
    }
  } catch (err) {
    failure = err;
  } finally {
    await s.change((r) => ({ ...r, phase: r.phase === "failed" ? r.phase : "finalizing" }));
    await closeRun(s.run, engine, deps.runs, { onError: "warn", mustFinalize: failure === undefined, log: s.log });
    await s.reload();
  }
  if (failure !== undefined) throw failure;
}
