/**
 * The reconciler: at start and every few minutes, finds backup runs whose worker died (journal
 * not final, lease expired) and engine objects Ferry created that are left open (backups with the
 * 'ferry:' description prefix not in a final phase, their transfers), and closes them: transfers
 * first, then the backup. Goal: nothing stays locked on an engine for more than a few minutes.
 * It runs inside every backup-requested process (no consumer of its own); everything it does is
 * idempotent, so two reconcilers at once are harmless.
 */
import type { BackupEngine } from "./ports.ts";
import { openTransfers, type BackupRun, type RunJournal } from "./run-journal.ts";
import type { Leases } from "./vm-lease.ts";

export const FERRY_PREFIX = "ferry:";

export interface ReconcileEngine extends BackupEngine {
  listTransfers(): Promise<{ id: string; phase: string; diskId?: string | undefined }[]>;
  listVmIds(): Promise<string[]>;
}

export interface ReconcilerDeps {
  readonly engines: ReadonlyMap<string, ReconcileEngine>;
  readonly runs: RunJournal;
  readonly leases: Leases;
  /** Remove a store file no restore point references (a layer of an abandoned run). */
  readonly removeUnrecorded: (relPath: string) => Promise<void>;
  readonly clock: () => Date;
  readonly log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** A run not updated for this long, with no live lease, is abandoned. Default 2 min. */
  readonly staleAfterMs?: number;
}

export interface ReconcileReport {
  readonly abandonedRuns: string[];
  readonly finalizedBackups: string[];
  readonly closedTransfers: string[];
}

const FINAL_RUN = new Set(["transferred", "failed", "abandoned"]);
const FINAL_BACKUP = new Set(["succeeded", "failed"]);

export function createReconciler(deps: ReconcilerDeps) {
  const staleAfter = deps.staleAfterMs ?? 120_000;

  async function leaseAlive(vmId: string, now: Date): Promise<{ alive: boolean; runId?: string }> {
    const l = await deps.leases.get(vmId);
    return l && new Date(l.expiresAt) > now ? { alive: true, runId: l.runId } : { alive: false };
  }

  async function closeRun(run: BackupRun, engine: ReconcileEngine, report: { closedTransfers: string[]; finalizedBackups: string[] }): Promise<void> {
    for (const t of openTransfers(run)) {
      await engine.finishTransfer(t.id);
      report.closedTransfers.push(t.id);
    }
    if (run.backupId && !run.backupClosed && run.method !== "snapshot") {
      await engine.finalizeBackup(run.vm.id, run.backupId);
      report.finalizedBackups.push(run.backupId);
    }
    if (run.snapshotId && !run.snapshotRemoved) await engine.removeSnapshot(run.vm.id, run.snapshotId);
    for (const d of run.disks) {
      if (d.layer) await deps.removeUnrecorded(d.layer);
      else if (d.tmpPath) await deps.removeUnrecorded(d.tmpPath);
    }
  }

  return {
    async reconcileOnce(): Promise<ReconcileReport> {
      const now = deps.clock();
      const report = { abandonedRuns: [] as string[], finalizedBackups: [] as string[], closedTransfers: [] as string[] };

      // 1. Runs whose worker died: close what their journal says they created.
      for (const run of await deps.runs.list()) {
        if (FINAL_RUN.has(run.phase)) continue;
        if (now.getTime() - Date.parse(run.updatedAt) < staleAfter) continue;
        if ((await leaseAlive(run.vm.id, now)).alive) continue;
        const engine = deps.engines.get(run.engine);
        if (!engine) continue;
        try {
          await closeRun(run, engine, report);
          await deps.runs.change(run.runId, (cur) =>
            cur && !FINAL_RUN.has(cur.phase)
              ? { ...cur, phase: "abandoned", backupClosed: true, snapshotRemoved: true, transfers: cur.transfers.map((t) => ({ ...t, state: "closed" as const })), disks: cur.disks.map((d) => ({ id: d.id, state: "pending" as const })) }
              : undefined,
          );
          report.abandonedRuns.push(run.runId);
          deps.log.info({ runId: run.runId, vm: run.vm.name }, "reconciler closed an abandoned backup run");
        } catch (err) {
          deps.log.warn({ err, runId: run.runId }, "reconciler could not close a run yet");
        }
      }

      // 2. Ferry backups left open on the engines (journal lost, or a crash before journaling).
      for (const [name, engine] of deps.engines) {
        let vmIds: string[];
        try {
          vmIds = await engine.listVmIds();
        } catch (err) {
          deps.log.warn({ err, engine: name }, "reconciler could not list VMs");
          continue;
        }
        let transfers: Awaited<ReturnType<ReconcileEngine["listTransfers"]>> | undefined;
        for (const vmId of vmIds) {
          if ((await leaseAlive(vmId, now)).alive) continue;
          let backups;
          try {
            backups = await engine.listBackups(vmId);
          } catch {
            continue;
          }
          for (const b of backups) {
            if (FINAL_BACKUP.has(b.phase) || !(b.description ?? "").startsWith(FERRY_PREFIX)) continue;
            try {
              transfers ??= await engine.listTransfers();
              const disks = new Set((await engine.backupDisks(vmId, b.id).catch(() => [])).map((d) => d.id));
              for (const t of transfers) {
                if (t.diskId && disks.has(t.diskId) && !t.phase.startsWith("finished_")) {
                  await engine.finishTransfer(t.id);
                  report.closedTransfers.push(t.id);
                }
              }
              await engine.finalizeBackup(vmId, b.id);
              report.finalizedBackups.push(b.id);
              deps.log.info({ engine: name, vmId, backupId: b.id }, "reconciler finalized a Ferry backup left open");
            } catch (err) {
              deps.log.warn({ err, engine: name, backupId: b.id }, "reconciler could not finalize a backup yet");
            }
          }
        }
      }
      return report;
    },

    /** reconcileOnce now and then every `everyMs` until `signal` aborts. */
    start(everyMs: number, signal: AbortSignal): Promise<void> {
      return (async () => {
        while (!signal.aborted) {
          try {
            const r = await this.reconcileOnce();
            if (r.abandonedRuns.length || r.finalizedBackups.length || r.closedTransfers.length) deps.log.info({ ...r }, "reconciler pass");
          } catch (err) {
            deps.log.warn({ err }, "reconciler pass failed");
          }
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, everyMs);
            signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
          });
        }
      })();
    },
  };
}
