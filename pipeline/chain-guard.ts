/**
 * The chain guard's state (KV ferry-guard): per engine the event poller's position, per VM a mark
 * that its next backup must be a full because of something that happened on the engine (a
 * snapshot restored, a disk added, ...), and per VM name a mark that the VM was removed.
 *
 * Its own bucket, with no TTL: ferry-runs forgets keys after 30 days, and neither the position of
 * a quiet engine nor a removed VM may be forgotten. A mark is never cleared by a write: it is
 * *active* while no full restore point was taken after it was recorded (`activeMark`), so a full
 * layer clears it without the backup functions knowing about the guard.
 */
import { casUpdate, isCasConflict, kvKey, readRecord, encodeRecord, type KvLike } from "../adapters/nats/kv-record.ts";

/** The correlation id Ferry's own engine calls carry (pipeline/composition.ts): events it caused are not news. */
export function ferryCorrelationId(engine: string): string {
  return `ferry-${engine}`;
}

export interface PollerPosition {
  /** The newest engine event index already published. */
  readonly index: number;
  /** When the position was written (the poller rewrites it at least daily). */
  readonly time: string;
}

export interface GuardMark {
  readonly vm: { readonly id: string; readonly name: string };
  /** Why the next backup must be full: `engine event <index> (<code>): <description>` of the first event. */
  readonly reason: string;
  readonly kind: string;
  readonly engine: string;
  /** When Ferry recorded the mark (its clock: compared with restore point times). */
  readonly recordedAt: string;
  /** Disks named by the events, when they named any. */
  readonly disks?: readonly string[];
  /** Ids of the events folded into this mark (at most 20), so a redelivery changes nothing. */
  readonly events: readonly string[];
  /** Further chain-breaking events after the first, before the next full. */
  readonly more: number;
}

export interface RemovedMark {
  readonly vm: { readonly id?: string | undefined; readonly name: string };
  readonly engine: string;
  readonly reason: string;
  readonly recordedAt: string;
  readonly event: string;
}

const indexKey = (engine: string) => `index.${kvKey(engine)}`;
const vmKey = (vmId: string) => `vm.${kvKey(vmId)}`;
const removedKey = (vmName: string) => `removed.${kvKey(vmName)}`;

/** The mark when it still applies: no full restore point was taken since it was recorded. */
export function activeMark(mark: GuardMark | undefined, lastFullTime: string | undefined): GuardMark | undefined {
  if (!mark) return undefined;
  if (lastFullTime && Date.parse(lastFullTime) >= Date.parse(mark.recordedAt)) return undefined;
  return mark;
}

/** The reason a full layer gets from a mark (the restore point's `reason`). */
export function markReason(mark: GuardMark): string {
  const more = mark.more > 0 ? ` (+${mark.more} more engine event${mark.more === 1 ? "" : "s"})` : "";
  return `${mark.reason}${more}`.slice(0, 1000);
}

export function createChainGuard(kv: KvLike) {
  return {
    async position(engine: string): Promise<{ value: PollerPosition; revision: number } | undefined> {
      return readRecord<PollerPosition>(kv, indexKey(engine));
    },

    /**
     * Move the poller's position to `index`, compare-and-set against `revision` (undefined: the
     * key must not exist yet). False when another poller moved it first.
     */
    async advance(engine: string, index: number, revision: number | undefined, now: Date): Promise<{ ok: true; revision: number } | { ok: false }> {
      const value: PollerPosition = { index, time: now.toISOString() };
      try {
        const rev = revision === undefined ? await kv.create(indexKey(engine), encodeRecord(value)) : await kv.update(indexKey(engine), encodeRecord(value), revision);
        return { ok: true, revision: rev };
      } catch (err) {
        if (isCasConflict(err)) return { ok: false };
        throw err;
      }
    },

    async mark(vmId: string): Promise<GuardMark | undefined> {
      return (await readRecord<GuardMark>(kv, vmKey(vmId)))?.value;
    },

    /**
     * Record that the VM's next backup must be full. An active mark keeps its first reason and
     * counts the later events; a mark a full has already answered (`lastFullTime`) is replaced.
     * Returns the mark as stored and whether this event changed it.
     */
    async markFull(
      m: Omit<GuardMark, "events" | "more" | "recordedAt"> & { eventId: string; now: Date; lastFullTime?: string | undefined },
    ): Promise<{ mark: GuardMark; changed: boolean }> {
      let changed = false;
      const stored = await casUpdate<GuardMark>(kv, vmKey(m.vm.id), (cur) => {
        if (cur?.events.includes(m.eventId)) return undefined;
        changed = true;
        const active = activeMark(cur, m.lastFullTime);
        if (active) {
          const disks = active.disks && m.disks ? [...new Set([...active.disks, ...m.disks])] : undefined;
          return { ...active, ...(disks ? { disks } : {}), events: [...active.events, m.eventId].slice(-20), more: active.more + 1 };
        }
        return {
          vm: m.vm,
          reason: m.reason.slice(0, 1000),
          kind: m.kind,
          engine: m.engine,
          recordedAt: m.now.toISOString(),
          ...(m.disks?.length ? { disks: m.disks } : {}),
          events: [m.eventId],
          more: 0,
        };
      });
      return { mark: stored!.value, changed };
    },

    /** Mark a VM removed. True only for the first report of it (the caller reports it once). */
    async markRemoved(m: RemovedMark): Promise<boolean> {
      try {
        await kv.create(removedKey(m.vm.name), encodeRecord(m));
        return true;
      } catch (err) {
        if (isCasConflict(err)) return false;
        throw err;
      }
    },

    async removed(vmName: string): Promise<RemovedMark | undefined> {
      return (await readRecord<RemovedMark>(kv, removedKey(vmName)))?.value;
    },

    /** Every VM marked removed, by name. */
    async removedVms(): Promise<Map<string, RemovedMark>> {
      const out = new Map<string, RemovedMark>();
      for await (const key of await kv.keys("removed.>")) {
        if (!key.startsWith("removed.")) continue;
        const r = await readRecord<RemovedMark>(kv, key);
        if (r) out.set(r.value.vm.name, r.value);
      }
      return out;
    },
  };
}
export type ChainGuard = ReturnType<typeof createChainGuard>;
