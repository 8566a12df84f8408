/**
 * The backup run journal (KV ferry-runs, key = run id): every engine object a run creates is
 * recorded here BEFORE the next one is created, so a restarted worker (redelivery) or the
 * reconciler can finish or clean up what a dead worker left.
 */
import { casUpdate, kvKey, readRecord, type KvLike } from "../adapters/nats/kv-record.ts";

export type RunPhase =
  | "started" // lease taken, nothing on the engine yet
  | "backup" // an engine backup (or snapshot) is being started/used: see backupId/snapshotId
  | "finalizing" // transfers done, closing engine objects
  | "transferred" // every disk.transferred published, engine objects closed
  | "failed" // failed and cleaned up
  | "abandoned"; // cleaned up by the reconciler after its worker died

export interface JournalTransfer {
  readonly id: string;
  readonly diskId: string;
  /** open until finalized or cancelled */
  readonly state: "open" | "closed";
}

export interface JournalDisk {
  readonly id: string;
  readonly state: "pending" | "downloading" | "placed";
  readonly tmpPath?: string | undefined;
  /** Relative path of the placed layer (state placed). */
  readonly layer?: string | undefined;
  /** The disk.transferred event published (or to re-publish) for this disk. */
  readonly event?: Record<string, unknown> | undefined;
}

export interface BackupRun {
  readonly runId: string;
  readonly kind: "backup";
  readonly engine: string;
  readonly vm: { readonly id: string; readonly name: string };
  readonly owner: string;
  /** Follows the run through all its events (the request's correlationId). */
  readonly correlationId?: string | undefined;
  readonly phase: RunPhase;
  readonly attempt: number;
  readonly startedAt: string;
  readonly updatedAt: string;
  /** Engine backup of the current attempt (client-chosen id, journaled before the POST). */
  readonly backupId?: string | undefined;
  readonly backupClosed?: boolean | undefined;
  /** Snapshot of the snapshot-based fallback (journaled right after the POST returns its id). */
  readonly snapshotId?: string | undefined;
  readonly snapshotRemoved?: boolean | undefined;
  readonly restorePoint?: string | undefined;
  readonly checkpointId?: string | undefined;
  /** How the current attempt backs up: engine backup API or the snapshot fallback. */
  readonly method?: "backup" | "snapshot" | undefined;
  readonly mode?: "full" | "incremental" | undefined;
  readonly reason?: string | undefined;
  readonly fromCheckpointId?: string | undefined;
  readonly transfers: readonly JournalTransfer[];
  readonly disks: readonly JournalDisk[];
  readonly error?: { readonly code: string; readonly message: string } | undefined;
  /** When disk-transferred committed the run's restore point (KV): the run's backup is done. */
  readonly recordedAt?: string | undefined;
  /**
   * Requests for the same VM that arrived while this run was in flight (pipeline/coalesce.ts):
   * each gets its outcome from this run — backup.completed when the point is recorded, or
   * backup.failed when the run fails for good.
   */
  readonly coalesced?: readonly CoalescedRequest[] | undefined;
}

export interface CoalescedRequest {
  readonly id: string;
  readonly correlationId: string;
  readonly time: string;
}

export interface RunJournal {
  get(runId: string): Promise<BackupRun | undefined>;
  /** Apply a change with compare-and-set (retried on conflicts); returns the stored record. */
  change(runId: string, fn: (cur: BackupRun | undefined) => BackupRun | undefined): Promise<BackupRun | undefined>;
  list(): Promise<BackupRun[]>;
  remove(runId: string): Promise<void>;
}

export function createRunJournal(kv: KvLike, clock: () => Date = () => new Date()): RunJournal {
  return {
    async get(runId) {
      return (await readRecord<BackupRun>(kv, kvKey(runId)))?.value;
    },
    async change(runId, fn) {
      const res = await casUpdate<BackupRun>(kv, kvKey(runId), (cur) => {
        const next = fn(cur);
        return next ? { ...next, updatedAt: clock().toISOString() } : undefined;
      });
      return res?.value;
    },
    async list() {
      const out: BackupRun[] = [];
      for await (const k of await kv.keys()) {
        const r = await readRecord<BackupRun>(kv, k);
        if (r?.value && r.value.kind === "backup") out.push(r.value);
      }
      return out;
    },
    async remove(runId) {
      await kv.delete(kvKey(runId));
    },
  };
}

export function withTransfer(run: BackupRun, t: JournalTransfer): BackupRun {
  return { ...run, transfers: [...run.transfers.filter((x) => x.id !== t.id), t] };
}

export function withDisk(run: BackupRun, d: JournalDisk): BackupRun {
  return { ...run, disks: [...run.disks.filter((x) => x.id !== d.id), d] };
}

export function openTransfers(run: BackupRun): JournalTransfer[] {
  return run.transfers.filter((t) => t.state === "open");
}
