/**
 * One lease per VM (KV ferry-leases, key = vm id): one backup run of a VM at a time, from the
 * backup's start until its restore point is recorded and retention has run.
 *
 * The lease belongs to a run and, while a step works on it, to that step's process (owner).
 * A step that finishes hands the lease off (`handOff`): it stays bound to the run, owned by no
 * process, with a longer TTL, and the run's next step (or the run's own retry) takes it at once.
 * Anyone else — another run, or the same run delivered to a second worker while the first still
 * works — gets VM_BUSY. A lease whose holder died expires after `ttlMs` (renewed while working).
 */
import { TransientError } from "../contracts/errors.ts";
import { CONFIG_DEFAULTS } from "../contracts/config.ts";
import { encodeRecord, isCasConflict, kvKey, readRecord, type KvLike } from "../adapters/nats/kv-record.ts";

/** `owner` of a handed-off lease: bound to its run, waiting for the run's next step. */
export const HANDED_OFF = "";

export interface LeaseRecord {
  readonly vmId: string;
  readonly runId: string;
  /** The process working on the run now; HANDED_OFF between steps. */
  readonly owner: string;
  /** The step that holds or last held it (for `ferry status` and logs). */
  readonly step?: string | undefined;
  readonly expiresAt: string;
}

export interface Lease {
  readonly record: LeaseRecord;
  /** Push the expiry forward (call while working). */
  renew(): Promise<void>;
  /** Delete the lease if it is still this run's. */
  release(): Promise<void>;
  /** Keep the lease for the run's next step (or its retry): no owner, the hand-off TTL. */
  handOff(nextStep: string): Promise<void>;
}

export class VmBusyError extends TransientError {
  constructor(vmId: string, holder: LeaseRecord) {
    const what = holder.owner === HANDED_OFF ? `between steps (${holder.step ?? "next step"})` : `in ${holder.step ?? "a step"} on ${holder.owner}`;
    const waitMs = Math.max(1_000, Math.min(30_000, Date.parse(holder.expiresAt) - Date.now()));
    super("VM_BUSY", `backup run ${holder.runId} of VM ${vmId} is still ${what}; its lease lasts until ${holder.expiresAt}`, { vmId, runId: holder.runId }, {
      retryAfterMs: waitMs,
    });
  }
}

export interface Leases {
  /** How long a held lease lives without renewal: renew well within it. */
  readonly ttlMs: number;
  acquire(o: { vmId: string; runId: string; owner: string; step?: string }): Promise<Lease>;
  /**
   * Take back this run's own lease (held by this owner, handed off, or expired) — never create
   * one: undefined when the VM has no lease. A redelivered step of a run whose lease is gone
   * (released: the run ended) must not lock the VM again.
   */
  resume(o: { vmId: string; runId: string; owner: string; step?: string }): Promise<Lease | undefined>;
  get(vmId: string): Promise<LeaseRecord | undefined>;
  /** Release a run's lease from any process (a step that fails the run for good). */
  releaseRun(vmId: string, runId: string): Promise<void>;
}

export interface LeaseOptions {
  /** A held lease lasts this long without renewal (its holder died). */
  readonly ttlMs: number;
  /** A handed-off lease lasts this long (the next step has not started). Default CONFIG_DEFAULTS.handOffTtlMs. */
  readonly handOffTtlMs?: number;
  readonly clock?: () => Date;
}

export function createLeases(kv: KvLike, o: LeaseOptions): Leases {
  const clock = o.clock ?? (() => new Date());
  const expiry = (ms: number) => new Date(clock().getTime() + ms).toISOString();
  const handOffTtl = o.handOffTtlMs ?? CONFIG_DEFAULTS.handOffTtlMs;

  async function releaseIf(key: string, runId: string): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const cur = await readRecord<LeaseRecord>(kv, key);
      if (!cur || cur.value.runId !== runId) return;
      try {
        await kv.delete(key, { previousSeq: cur.revision });
        return;
      } catch (err) {
        // Changed between the read and the delete: read again while it is still ours.
        if (!isCasConflict(err)) throw err;
      }
    }
  }

  return {
    ttlMs: o.ttlMs,
    async get(vmId) {
      return (await readRecord<LeaseRecord>(kv, kvKey(vmId)))?.value;
    },
    releaseRun: (vmId, runId) => releaseIf(kvKey(vmId), runId),
    acquire: (req) => take(req, false) as Promise<Lease>,
    resume: (req) => take(req, true),
  };

  async function take({ vmId, runId, owner, step }: { vmId: string; runId: string; owner: string; step?: string }, existingOnly: boolean): Promise<Lease | undefined> {
    const key = kvKey(vmId);
    let revision = 0;
    let record: LeaseRecord = { vmId, runId, owner, step, expiresAt: expiry(o.ttlMs) };
    for (let i = 0; ; i++) {
      const cur = await readRecord<LeaseRecord>(kv, key);
      record = { vmId, runId, owner, step, expiresAt: expiry(o.ttlMs) };
      try {
        if (!cur && existingOnly) return undefined;
        if (!cur) revision = await kv.create(key, encodeRecord(record));
        else {
          const held = cur.value;
          const expired = new Date(held.expiresAt) <= clock();
          const mine = held.runId === runId && (held.owner === owner || held.owner === HANDED_OFF);
          if (!expired && !mine) throw new VmBusyError(vmId, held);
          if (existingOnly && held.runId !== runId) return undefined;
          revision = await kv.update(key, encodeRecord(record), cur.revision);
        }
        break;
      } catch (err) {
        if (!isCasConflict(err) || i >= 5) throw err;
      }
    }
    // Renew, hand-off and release run one after the other: a release racing an in-flight
    // renewal would read the old revision, lose the compare-and-set and leave the lease held.
    let queue: Promise<unknown> = Promise.resolve();
    let done = false;
    const serial = <T>(op: () => Promise<T>): Promise<T> => {
      const next = queue.then(op, op);
      queue = next.catch(() => undefined);
      return next;
    };
    const lease: Lease = {
      get record() {
        return record;
      },
      renew: () =>
        serial(async () => {
          if (done) return;
          const next = { ...record, expiresAt: expiry(o.ttlMs) };
          try {
            revision = await kv.update(key, encodeRecord(next), revision);
            record = next;
          } catch (err) {
            if (isCasConflict(err)) throw new TransientError("LEASE_LOST", `the lease of VM ${vmId} was taken over`, { vmId, runId });
            throw err;
          }
        }),
      handOff: (nextStep) =>
        serial(async () => {
          if (done) return;
          done = true;
          const next: LeaseRecord = { ...record, owner: HANDED_OFF, step: nextStep, expiresAt: expiry(handOffTtl) };
          try {
            revision = await kv.update(key, encodeRecord(next), revision);
            record = next;
          } catch (err) {
            if (isCasConflict(err)) throw new TransientError("LEASE_LOST", `the lease of VM ${vmId} was taken over before run ${runId} could hand it on`, { vmId, runId });
            throw err;
          }
        }),
      release: () =>
        serial(async () => {
          done = true;
          await releaseIf(key, runId);
        }),
    };
    return lease;
  }
}
