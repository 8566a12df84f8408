/**
 * The reconciler: at start and every few minutes, finds backup runs whose worker died (journal
 * not final, not updated for a while, VM lease expired — a run waiting for its retry keeps its
 * lease handed off, so it is never touched) and engine objects this deployment created that are
 * left open (backups whose description carries this deployment's mark, not in a final phase),
 * and closes them with the same sequence a worker uses (close-run.ts). Goal: nothing stays
 * locked on an engine for more than a few minutes. It takes the run's VM lease while it works, so
 * a late redelivery of the run cannot start in between, and it never touches another
 * deployment's backups. Everything it does is idempotent: two reconcilers at once are harmless.
 *
 * With `orphans` it also removes store files no restore point and no live run references
 * (layers, digests, OVFs, temp files of runs that failed for good), untouched for the grace
 * period, under the VM lease and the store's folder lock; a VM with a live run (a journal not
 * final, a lease held or handed off) is skipped, and an incoming point's files are kept. With
 * `scrub` it verifies one VM's newest restore point per pass when due (pipeline/scrub.ts).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { ReconcileEngine } from "./ports.ts";
import type { BackupRun, RunJournal } from "./run-journal.ts";
import type { Leases } from "./vm-lease.ts";
import { closeRun } from "./close-run.ts";
import { isOwnEngineObject } from "./run-ids.ts";
import type { RestoreEngine } from "./restore-engine.ts";
import type { RestoreJournal } from "./restore-journal.ts";
import { undoRestore } from "./restore-undo.ts";
import { VmBusyError } from "./vm-lease.ts";
import { coveredFailure } from "./coalesce.ts";
import { referencedFiles, type ChainsKv, type OrphanFile, type Store } from "../adapters/store/mod.ts";
import type { Scrubber, ScrubResult } from "./scrub.ts";

export interface OrphanSettings {
  readonly store: Pick<Store, "vmFolders" | "readManifest" | "removeOrphans" | "clearStaleLock">;
  /** Incoming points (a run still recording its disks) keep their files. */
  readonly chains: Pick<ChainsKv, "list">;
  /** A file untouched for less than this is never an orphan (CONFIG_DEFAULTS.orphanGraceHours). */
  readonly graceMs: number;
}

export interface ReconcilerDeps {
  readonly engines: ReadonlyMap<string, ReconcileEngine>;
  readonly runs: RunJournal;
  readonly leases: Leases;
  /** Restore runs whose worker died: what they created on the target is removed. */
  readonly restore?: { readonly engines: ReadonlyMap<string, RestoreEngine>; readonly journal: RestoreJournal } | undefined;
  /** This deployment's mark (pipeline/deployment.ts): only its engine objects are touched. */
  readonly deployment: string;
  /** Reconciler's lease owner name. Default `reconciler`. */
  readonly owner?: string;
  /** Remove a store file no restore point references (a layer of an abandoned run). */
  readonly removeUnrecorded: (relPath: string) => Promise<void>;
  readonly clock: () => Date;
  readonly log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** A run not updated for this long, with no live lease, is abandoned. Default 2 min. */
  readonly staleAfterMs?: number;
  /** Remove orphan store files (absent: only the layers of runs the reconciler abandons). */
  readonly orphans?: OrphanSettings | undefined;
  /** The scheduled scrub, one due VM per pass. */
  readonly scrub?: Pick<Scrubber, "scrubNext"> | undefined;
  /**
   * Publish a `backup.failed` (PubAck awaited): requests coalesced into a run the reconciler
   * abandons get their one outcome here — nobody else would answer them.
   */
  readonly announceFailure?: ((event: { id: string } & Record<string, unknown>) => Promise<void>) | undefined;
}

export interface ReconcileReport {
  readonly abandonedRuns: string[];
  readonly finalizedBackups: string[];
  readonly closedTransfers: string[];
  /** Snapshots of this deployment's finished backups the engine left behind, removed. */
  readonly removedSnapshots: string[];
  /** Orphan store files removed (store-relative path, bytes, kind). */
  readonly removedFiles: OrphanFile[];
  readonly removedBytes: number;
  /** VM folders whose stale `.lock` was removed. */
  readonly clearedLocks: string[];
  /** The VM the scheduled scrub verified in this pass. */
  readonly scrubbed?: ScrubResult | undefined;
}

const FINAL_RUN = new Set(["transferred", "failed", "abandoned"]);
const FINAL_BACKUP = new Set(["succeeded", "failed"]);

export function createReconciler(deps: ReconcilerDeps) {
  const staleAfter = deps.staleAfterMs ?? 120_000;

  async function leaseAlive(vmId: string, now: Date): Promise<{ alive: boolean; runId?: string }> {
    const l = await deps.leases.get(vmId);
    return l && new Date(l.expiresAt) > now ? { alive: true, runId: l.runId } : { alive: false };
  }

  /** Close a dead run under its VM lease; true when it was closed and marked abandoned. */
  async function abandon(run: BackupRun, engine: ReconcileEngine, report: { closedTransfers: string[]; finalizedBackups: string[] }, signal: AbortSignal | undefined): Promise<boolean> {
    const lease = await deps.leases.acquire({ vmId: run.vm.id, runId: run.runId, owner: deps.owner ?? "reconciler", step: "reconciler" });
    try {
      // Released in `finally` even when the process stops mid-close: the journal keeps what is open.
      const closed = await closeRun(run, engine, deps.runs, { onError: "throw", log: deps.log, signal });
      report.closedTransfers.push(...closed.closedTransfers);
      if (closed.finalizedBackup) report.finalizedBackups.push(closed.finalizedBackup);
      for (const d of closed.run.disks) {
        if (d.layer) await deps.removeUnrecorded(d.layer);
        else if (d.tmpPath) await deps.removeUnrecorded(d.tmpPath);
      }
      let marked: BackupRun | undefined;
      await deps.runs.change(run.runId, (cur) => {
        // Someone resumed the run meanwhile (a new attempt or owner): it is not dead.
        if (!cur || FINAL_RUN.has(cur.phase) || cur.attempt !== run.attempt || cur.owner !== run.owner) return undefined;
        marked = { ...cur, phase: "abandoned", backupClosed: true, snapshotRemoved: true, transfers: cur.transfers.map((t) => ({ ...t, state: "closed" as const })), disks: cur.disks.map((d) => ({ id: d.id, state: "pending" as const })) };
        return marked;
      });
      if (!marked) return false;
      // Requests that joined this run get their one outcome (msgID per request: a second pass is a duplicate).
      for (const c of (marked as BackupRun).coalesced ?? []) {
        const message = "its worker stopped and the reconciler closed the run; request the backup again";
        await deps.announceFailure?.(coveredFailure(marked, c, "RUN_ABANDONED", message, deps.clock())).catch((err: unknown) => deps.log.warn({ err, request: c.id, runId: run.runId }, "reconciler could not answer a request coalesced into an abandoned run"));
      }
      return true;
    } finally {
      await lease.release();
    }
  }

  /** Orphan files of every VM folder without a live run; each removal logged. */
  async function removeOrphans(o: OrphanSettings, now: Date, report: { removedFiles: OrphanFile[]; clearedLocks: string[] }): Promise<void> {
    // What is live: run journals not final, and incoming points (their files are kept).
    const runs = await deps.runs.list();
    const chains = await o.chains.list();
    for (const folder of await o.store.vmFolders()) {
      // A lock whose holder is provably gone blocks everyone (a live run too): it goes first.
      if (await o.store.clearStaleLock(folder).catch(() => false)) {
        report.clearedLocks.push(folder);
        deps.log.info({ vm: folder }, "reconciler removed a stale store lock whose holder is gone");
      }
      let manifestId: string | undefined;
      try {
        manifestId = (await o.store.readManifest(folder))?.vm.id;
      } catch (err) {
        deps.log.warn({ err, vm: folder }, "reconciler left a VM folder alone: its manifest is unreadable");
        continue;
      }
      const ids = new Set<string>([
        ...(manifestId ? [manifestId] : []),
        ...chains.filter((c) => c.vm.name === folder).map((c) => c.vm.id),
        ...runs.filter((r) => r.vm.name === folder).map((r) => r.vm.id),
      ]);
      if (runs.some((r) => !FINAL_RUN.has(r.phase) && (r.vm.name === folder || ids.has(r.vm.id)))) continue;
      let live = false;
      for (const id of ids) if ((await leaseAlive(id, now)).alive) live = true;
      if (live) continue;
      // Whatever the KV record names (incoming points, a point whose manifest write is still to come) stays.
      const keep = new Set<string>();
      for (const c of chains) if (ids.has(c.vm.id)) for (const f of referencedFiles(c)) keep.add(f);
      // A look first: the lease and the folder lock are taken only when there is something to remove.
      const candidates = await o.store.removeOrphans(folder, { olderThanMs: o.graceMs, now, keep, dryRun: true }).catch(() => []);
      if (!candidates.length) continue;
      // The VM lease keeps a backup of the VM from starting while files are removed.
      const leaseId = manifestId ?? [...ids][0];
      let lease;
      try {
        lease = leaseId ? await deps.leases.acquire({ vmId: leaseId, runId: `reconciler-orphans-${now.getTime()}`, owner: deps.owner ?? "reconciler", step: "orphans" }) : undefined;
      } catch (err) {
        if (err instanceof VmBusyError) continue;
        throw err;
      }
      try {
        const removed = await o.store.removeOrphans(folder, { olderThanMs: o.graceMs, now, keep, vmId: manifestId });
        for (const f of removed) deps.log.info({ vm: folder, path: f.path, bytes: f.bytes, kind: f.kind }, "reconciler removed an orphan store file");
        report.removedFiles.push(...removed);
      } catch (err) {
        deps.log.warn({ err, vm: folder }, "reconciler could not remove orphan store files yet");
      } finally {
        await lease?.release();
      }
    }
  }

  return {
    /**
     * One pass. `signal` (the process stopping) ends every engine wait and the scrub at once and
     * makes the pass reject with its reason; leases taken are released first.
     */
    async reconcileOnce(signal?: AbortSignal): Promise<ReconcileReport> {
      const now = deps.clock();
      const report = { abandonedRuns: [] as string[], finalizedBackups: [] as string[], closedTransfers: [] as string[], removedSnapshots: [] as string[], removedFiles: [] as OrphanFile[], clearedLocks: [] as string[] };

      // 1. Runs whose worker died: close what their journal says they created.
      for (const run of await deps.runs.list()) {
        signal?.throwIfAborted();
        if (FINAL_RUN.has(run.phase)) continue;
        if (now.getTime() - Date.parse(run.updatedAt) < staleAfter) continue;
        if ((await leaseAlive(run.vm.id, now)).alive) continue;
        const engine = deps.engines.get(run.engine);
        if (!engine) continue;
        try {
          if (!(await abandon(run, engine, report, signal))) continue;
          report.abandonedRuns.push(run.runId);
          deps.log.info({ runId: run.runId, vm: run.vm.name }, "reconciler closed an abandoned backup run");
        } catch (err) {
          signal?.throwIfAborted();
          deps.log.warn({ err, runId: run.runId }, "reconciler could not close a run yet");
        }
      }

      // 1b. Restore runs whose worker died (no redelivery left): remove what they made on the target.
      for (const run of deps.restore ? await deps.restore.journal.list() : []) {
        signal?.throwIfAborted();
        if (run.phase === "done" || run.phase === "failed") continue;
        if (now.getTime() - Date.parse(run.updatedAt) < staleAfter) continue;
        if ((await leaseAlive(`restore.${run.target}.${run.name}`, now)).alive) continue;
        const engine = deps.restore!.engines.get(run.target);
        if (!engine) continue;
        try {
          await undoRestore(engine, run, deps.restore!.journal);
          await deps.restore!.journal.change(run.runId, (cur) => cur && cur.phase !== "done" && cur.attempt === run.attempt ? { ...cur, phase: "failed", error: { code: "RESTORE_ABANDONED", message: "the restore worker died; what it created was removed" } } : undefined);
          report.abandonedRuns.push(run.runId);
          deps.log.info({ runId: run.runId, target: run.target, name: run.name }, "reconciler removed what an abandoned restore created");
        } catch (err) {
          deps.log.warn({ err, runId: run.runId }, "reconciler could not clean up a restore run yet");
        }
      }

      // 2. Ferry backups left open on the engines (journal lost, or a crash before journaling).
      for (const [name, engine] of deps.engines) {
        let vmIds: string[];
        try {
          vmIds = await engine.listVmIds();
        } catch (err) {
          signal?.throwIfAborted();
          deps.log.warn({ err, engine: name }, "reconciler could not list VMs");
          continue;
        }
        let transfers: Awaited<ReturnType<ReconcileEngine["listTransfers"]>> | undefined;
        for (const vmId of vmIds) {
          signal?.throwIfAborted();
          if ((await leaseAlive(vmId, now)).alive) continue;
          let backups;
          try {
            backups = await engine.listBackups(vmId);
          } catch {
            continue;
          }
          // A hybrid backup that ended without merging its snapshot away (the engine restarted
          // mid-backup: VM_BACKUP_FAILED_UNMONITORED, "cleanup may be required"; or the merge
          // failed: VM_BACKUP_SNAPSHOT_POSSIBLE_LEFTOVER) leaves "Auto-generated for Backup VM"
          // on the VM. Ours are removed; the snapshot list is read only when one could be left.
          const over = backups.filter((b) => FINAL_BACKUP.has(b.phase) && b.snapshotId && isOwnEngineObject(b.description, deps.deployment));
          if (over.length) {
            try {
              const present = new Set(await engine.listSnapshotIds(vmId));
              for (const b of over) {
                if (!present.has(b.snapshotId!)) continue;
                await engine.removeSnapshot(vmId, b.snapshotId!, signal);
                report.removedSnapshots.push(b.snapshotId!);
                deps.log.info({ engine: name, vmId, backupId: b.id, phase: b.phase, snapshotId: b.snapshotId }, "reconciler removed the snapshot a finished Ferry backup left behind");
              }
            } catch (err) {
              signal?.throwIfAborted();
              deps.log.warn({ err, engine: name, vmId }, "reconciler could not remove a leftover backup snapshot yet");
            }
          }
          for (const b of backups) {
            if (FINAL_BACKUP.has(b.phase) || !isOwnEngineObject(b.description, deps.deployment)) continue;
            try {
              transfers ??= await engine.listTransfers();
              const disks = new Set((await engine.backupDisks(vmId, b.id).catch(() => [])).map((d) => d.id));
              for (const t of transfers) {
                if (t.diskId && disks.has(t.diskId) && !t.phase.startsWith("finished_")) {
                  await engine.finishTransfer(t.id, signal ? { signal } : {});
                  report.closedTransfers.push(t.id);
                }
              }
              await engine.finalizeBackup(vmId, b.id, signal);
              report.finalizedBackups.push(b.id);
              deps.log.info({ engine: name, vmId, backupId: b.id }, "reconciler finalized a Ferry backup left open");
            } catch (err) {
              signal?.throwIfAborted();
              deps.log.warn({ err, engine: name, backupId: b.id }, "reconciler could not finalize a backup yet");
            }
          }
        }
      }

      // 3. Store files no restore point and no live run references (after the runs above were closed).
      if (deps.orphans) {
        signal?.throwIfAborted();
        try {
          await removeOrphans(deps.orphans, now, report);
        } catch (err) {
          deps.log.warn({ err }, "reconciler could not look for orphan store files");
        }
      }

      // 4. The scheduled scrub: at most one VM per pass, so a week's work spreads out.
      let scrubbed: ScrubResult | undefined;
      if (deps.scrub) {
        signal?.throwIfAborted();
        try {
          scrubbed = await deps.scrub.scrubNext(signal);
        } catch (err) {
          signal?.throwIfAborted();
          deps.log.warn({ err }, "scheduled scrub failed");
        }
      }
      return { ...report, removedBytes: report.removedFiles.reduce((n, f) => n + f.bytes, 0), ...(scrubbed ? { scrubbed } : {}) };
    },

    /**
     * reconcileOnce now and then every `everyMs` until `signal` aborts; resolves once the pass
     * under way has ended (leases released), so the host can wait for it before draining NATS.
     */
    start(everyMs: number, signal: AbortSignal): Promise<void> {
      return (async () => {
        while (!signal.aborted) {
          try {
            const r = await this.reconcileOnce(signal);
            if (r.abandonedRuns.length || r.finalizedBackups.length || r.closedTransfers.length || r.removedSnapshots.length || r.removedFiles.length || r.clearedLocks.length || r.scrubbed) {
              deps.log.info({ ...r, removedFiles: r.removedFiles.map((f) => f.path) }, "reconciler pass");
            }
          } catch (err) {
            if (signal.aborted) break;
            deps.log.warn({ err }, "reconciler pass failed");
          }
          // A pass that ended after the signal fired must not start the 3-minute timer at all.
          if (signal.aborted) break;
          await sleep(everyMs, undefined, { signal }).catch(() => undefined);
        }
      })();
    },
  };
}
