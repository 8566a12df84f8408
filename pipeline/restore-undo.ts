/**
 * Remove what a restore run created on its target — open transfers (cancelled), its VM (powered
 * off first), its disks — from the run's journal, and clear those entries. Used by
 * restore-requested on every failure and before a redelivered attempt, and by the reconciler for
 * restore runs whose worker died. Idempotent: what is already gone counts as removed.
 */
import type { RestoreEngine } from "./restore-engine.ts";
import type { RestoreJournal, RestoreRun } from "./restore-journal.ts";

export async function undoRestore(engine: RestoreEngine, run: RestoreRun, journal: RestoreJournal): Promise<void> {
  // Transfers first: a disk stays locked until its transfer is over.
  for (const t of run.transfers) if (t.state === "open") await engine.closeTransfer(t.id);
  if (run.vmId) {
    await engine.stopVm(run.vmId, { timeoutMs: 120_000 }).catch(() => undefined);
    await engine.removeVm(run.vmId);
  }
  for (const d of run.disks) {
    await engine.closeTransfersOf(d.id);
    await engine.removeDisk(d.id);
  }
  await journal.change(run.runId, (cur) => cur && { ...cur, disks: [], transfers: [], vmId: undefined });
}
