/**
 * Close everything a backup run holds open on the engine, in the only safe order: transfers first
 * (the engine refuses to finalize a backup with an open transfer), then the backup, or the
 * fallback snapshot. Each closed object is journaled at once, so a crash part-way resumes here.
 * Used by backup-requested (on every way out of an attempt) and by the reconciler (for runs whose
 * worker died).
 */
import { BackupTimeoutError } from "../adapters/ovirt/mod.ts";
import { openTransfers, withTransfer, type BackupRun, type RunJournal } from "./run-journal.ts";
import type { BackupEngine } from "./ports.ts";

export interface CloseOptions {
  /**
   * "warn": log what could not be closed and go on (a worker in `finally`; the reconciler
   * retries later). "throw": stop at the first failure (the reconciler, to try again next pass).
   */
  readonly onError: "warn" | "throw";
  /** The attempt succeeded: a backup that cannot be finalized (other than by a timeout) fails it. */
  readonly mustFinalize?: boolean;
  /** Close the transfers only: the engine backup stays READY for the run's retry to resume. */
  readonly keepBackup?: boolean;
  readonly log: { warn(o: object, m?: string): void };
  /** The process is stopping: every engine wait ends at once (what is left open stays journaled). */
  readonly signal?: AbortSignal | undefined;
}

export interface Closed {
  readonly run: BackupRun;
  readonly closedTransfers: string[];
  readonly finalizedBackup?: string | undefined;
}

export async function closeRun(run0: BackupRun, engine: BackupEngine, runs: RunJournal, o: CloseOptions): Promise<Closed> {
  let run = run0;
  const change = async (fn: (r: BackupRun) => BackupRun) => (run = (await runs.change(run.runId, (cur) => fn(cur ?? run))) ?? run);
  const closedTransfers: string[] = [];
  let finalizedBackup: string | undefined;
  const failed = (err: unknown, what: object, msg: string) => {
    // Stopping is not a failure to report: the journal still says what is open.
    if (o.onError === "throw" || o.signal?.aborted) throw err;
    o.log.warn({ err, ...what }, msg);
  };

  for (const t of openTransfers(run)) {
    o.signal?.throwIfAborted();
    try {
      await engine.finishTransfer(t.id, o.signal ? { signal: o.signal } : {});
      await change((r) => withTransfer(r, { ...t, state: "closed" }));
      closedTransfers.push(t.id);
    } catch (err) {
      failed(err, { transfer: t.id }, "could not close a transfer; the reconciler will retry");
    }
  }
  if (run.backupId && !run.backupClosed && run.method !== "snapshot" && !o.keepBackup) {
    o.signal?.throwIfAborted();
    try {
      await engine.finalizeBackup(run.vm.id, run.backupId, o.signal);
      await change((r) => ({ ...r, backupClosed: true }));
      finalizedBackup = run.backupId;
    } catch (err) {
      if ((o.mustFinalize && !(err instanceof BackupTimeoutError)) || o.signal?.aborted) throw err;
      failed(err, { backup: run.backupId }, "could not finalize the engine backup; the reconciler will retry");
    }
  }
  if (run.snapshotId && !run.snapshotRemoved) {
    o.signal?.throwIfAborted();
    try {
      await engine.removeSnapshot(run.vm.id, run.snapshotId, o.signal);
      await change((r) => ({ ...r, snapshotRemoved: true }));
    } catch (err) {
      failed(err, { snapshot: run.snapshotId }, "could not remove the backup snapshot; the reconciler will retry");
    }
  }
  return { run, closedTransfers, ...(finalizedBackup ? { finalizedBackup } : {}) };
}
