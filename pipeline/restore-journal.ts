/**
 * The restore run journal (KV ferry-runs, kind "restore"): every object a restore creates on the
 * target — disks (with their client-chosen ids), transfers, the VM — is recorded BEFORE it is
 * created, so a redelivery after a crash, or a failure, removes exactly what the run made and
 * nothing else (a previous DR VM is never touched).
 */
import { casUpdate, kvKey, readRecord, type KvLike } from "../adapters/nats/kv-record.ts";

export interface RestoreRunDisk {
  readonly sourceId: string;
  readonly alias: string;
  /** The disk's id on the target (chosen before the create). */
  readonly id: string;
  readonly state: "creating" | "created" | "uploaded" | "verified";
  readonly checksum?: string | undefined;
}

export interface RestoreRun {
  readonly runId: string;
  readonly kind: "restore";
  readonly target: string;
  readonly vm: { readonly name: string };
  /** Name of the VM on the target. */
  readonly name: string;
  readonly mode: "restore" | "replicate" | "test";
  readonly owner: string;
  readonly correlationId: string;
  readonly phase: "started" | "disks" | "vm" | "done" | "failed";
  readonly attempt: number;
  readonly startedAt: string;
  readonly updatedAt: string;
  readonly disks: readonly RestoreRunDisk[];
  readonly transfers: readonly { readonly id: string; readonly diskId: string; readonly state: "open" | "closed" }[];
  /** The VM this run created on the target. */
  readonly vmId?: string | undefined;
  /** The restore.completed event, once done (a redelivery re-publishes it). */
  readonly completed?: Record<string, unknown> | undefined;
  readonly error?: { readonly code: string; readonly message: string } | undefined;
}

export interface RestoreJournal {
  get(runId: string): Promise<RestoreRun | undefined>;
  change(runId: string, fn: (cur: RestoreRun | undefined) => RestoreRun | undefined): Promise<RestoreRun | undefined>;
  list(): Promise<RestoreRun[]>;
}

export function createRestoreJournal(kv: KvLike, clock: () => Date = () => new Date()): RestoreJournal {
  return {
    async get(runId) {
      const r = (await readRecord<RestoreRun>(kv, kvKey(runId)))?.value;
      return r?.kind === "restore" ? r : undefined;
    },
    async change(runId, fn) {
      const res = await casUpdate<RestoreRun>(kv, kvKey(runId), (cur) => {
        const next = fn(cur?.kind === "restore" ? cur : undefined);
        return next ? { ...next, updatedAt: clock().toISOString() } : undefined;
      });
      return res?.value;
    },
    async list() {
      const out: RestoreRun[] = [];
      for await (const k of await kv.keys()) {
        const r = await readRecord<RestoreRun>(kv, k);
        if (r?.value?.kind === "restore") out.push(r.value);
      }
      return out;
    },
  };
}
