/**
 * One lease per VM (KV ferry-leases, key = vm id) so two backups of one VM never overlap.
 * The record holds owner, run and expiry: a lease whose worker died is taken over after it
 * expires, and a redelivery of the same run takes its own lease back at once.
 */
import { TransientError } from "../contracts/errors.ts";
import { encodeRecord, isCasConflict, kvKey, readRecord, type KvLike } from "../adapters/nats/kv-record.ts";

export interface LeaseRecord {
  readonly vmId: string;
  readonly runId: string;
  readonly owner: string;
  readonly expiresAt: string;
}

export interface Lease {
  readonly record: LeaseRecord;
  /** Push the expiry forward (call while working). */
  renew(): Promise<void>;
  /** Delete the lease if it is still ours. */
  release(): Promise<void>;
}

export class VmBusyError extends TransientError {
  constructor(vmId: string, runId: string, until: string) {
    super("VM_BUSY", `another backup run (${runId}) holds the lease of VM ${vmId} until ${until}`, { vmId, runId }, {
      retryAfterMs: 30_000,
    });
  }
}

export interface Leases {
  acquire(o: { vmId: string; runId: string; owner: string }): Promise<Lease>;
  get(vmId: string): Promise<LeaseRecord | undefined>;
}

export function createLeases(kv: KvLike, o: { ttlMs: number; clock?: () => Date }): Leases {
  const clock = o.clock ?? (() => new Date());
  const expiry = () => new Date(clock().getTime() + o.ttlMs).toISOString();

  return {
    async get(vmId) {
      return (await readRecord<LeaseRecord>(kv, kvKey(vmId)))?.value;
    },
    async acquire({ vmId, runId, owner }) {
      const key = kvKey(vmId);
      let revision = 0;
      let record: LeaseRecord = { vmId, runId, owner, expiresAt: expiry() };
      for (let i = 0; ; i++) {
        const cur = await readRecord<LeaseRecord>(kv, key);
        record = { vmId, runId, owner, expiresAt: expiry() };
        try {
          if (!cur) revision = await kv.create(key, encodeRecord(record));
          else if (cur.value.runId === runId || new Date(cur.value.expiresAt) <= clock()) {
            revision = await kv.update(key, encodeRecord(record), cur.revision);
          } else throw new VmBusyError(vmId, cur.value.runId, cur.value.expiresAt);
          break;
        } catch (err) {
          if (!isCasConflict(err) || i >= 5) throw err;
        }
      }
      // Renew and release run one after the other: a release racing an in-flight renewal would
      // read the old revision, lose the compare-and-set and leave the lease held until it expires.
      let queue: Promise<unknown> = Promise.resolve();
      let released = false;
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
            if (released) return;
            const next = { ...record, expiresAt: expiry() };
            try {
              revision = await kv.update(key, encodeRecord(next), revision);
              record = next;
            } catch (err) {
              if (isCasConflict(err)) throw new TransientError("LEASE_LOST", `the lease of VM ${vmId} was taken over`, { vmId, runId });
              throw err;
            }
          }),
        release: () =>
          serial(async () => {
            released = true;
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
          }),
      };
      return lease;
    },
  };
}
