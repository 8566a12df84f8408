/**
 * The engine-event poller: follows one engine's audit log with `GET /events?from=<last index>`
 * and publishes an `ovirt.event` fact for each event of a kind Ferry acts on (codes.ts).
 *
 * Exactly once, across restarts: the last index lives in KV ferry-guard (pipeline/chain-guard.ts)
 * and moves only after JetStream acknowledged every fact up to it; each fact's msgID is
 * `<engine>:event:<index>`, so a poller that died between publishing and moving the index
 * republishes into JetStream's duplicate window and nothing is stored twice. A first start (no
 * index yet) begins at the engine's newest event: history is not replayed. Several pollers of one
 * engine (two `ferry run all`) are safe the same way: the index moves by compare-and-set.
 */
import type { Logger } from "pino";
import { ovirtEvent, type OvirtEvent } from "../../contracts/mod.ts";
import type { Event } from "../../adapters/ovirt/models.ts";
import type { ChainGuard } from "../../pipeline/chain-guard.ts";
import { ContractViolationError, type Outbound, type PublishAck } from "../runtime/mod.ts";
import { kindOfCode } from "./codes.ts";

export interface PollerDeps {
  readonly engine: string;
  /** `GET /events`: newest first; `from` = the last index already seen. */
  readonly listEvents: (o: { from?: number; max?: number; signal?: AbortSignal }) => Promise<readonly Event[]>;
  readonly guard: Pick<ChainGuard, "position" | "advance">;
  /** The VM's name from Ferry's chains (the event links the VM by id only). */
  readonly vmName: (vmId: string) => Promise<string | undefined>;
  readonly publish: (out: Outbound) => Promise<PublishAck>;
  /** Events with this correlation id were caused by Ferry itself (its own checkpoint removals, restores). */
  readonly ownCorrelationId: string;
  readonly clock: () => Date;
  readonly log: Pick<Logger, "info" | "warn" | "debug">;
}

export interface PollResult {
  /** The index the poller stands at after this poll. */
  readonly index: number;
  readonly seen: number;
  readonly published: number;
  /** A first start: the position was set to the engine's newest event. */
  readonly started?: boolean;
}

const indexOf = (e: Event): number | undefined => e.index ?? (/^\d+$/.test(e.id) ? Number(e.id) : undefined);

/** The fact for one engine event, or undefined when Ferry does not act on it. */
export async function factOf(e: Event, d: Pick<PollerDeps, "engine" | "vmName" | "ownCorrelationId" | "clock">): Promise<OvirtEvent | undefined> {
  const kind = kindOfCode(e.code);
  const index = indexOf(e);
  if (!kind || index === undefined || !e.vm?.id) return undefined;
  if (e.correlation_id === d.ownCorrelationId) return undefined;
  const name = await d.vmName(e.vm.id);
  const id = `${d.engine}:event:${index}`;
  return {
    id,
    time: d.clock().toISOString(),
    correlationId: id,
    engine: d.engine,
    source: "poller",
    kind,
    vm: { id: e.vm.id, ...(name ? { name } : {}) },
    engineEvent: {
      index,
      ...(e.id ? { id: e.id } : {}),
      ...(e.code !== undefined ? { code: e.code } : {}),
      ...(e.severity ? { severity: e.severity.slice(0, 32) } : {}),
      ...(e.time ? { time: new Date(e.time).toISOString() } : {}),
      description: (e.description ?? "").slice(0, 2000),
    },
  };
}

/** Idle polls between two checks that the engine has not gone back behind the position. */
const STALE_CHECK_EVERY = 10;

export function createPoller(d: PollerDeps) {
  let idle = 0;
  return {
    /** One poll: publish what is new, then move the index. */
    async pollOnce(signal?: AbortSignal): Promise<PollResult> {
      const pos = await d.guard.position(d.engine);
      if (!pos) {
        const [newest] = await d.listEvents({ max: 1, ...(signal ? { signal } : {}) });
        const index = (newest && indexOf(newest)) ?? 0;
        const moved = await d.guard.advance(d.engine, index, undefined, d.clock());
        if (moved.ok) d.log.info({ engine: d.engine, index }, "engine events: first start, following from the engine's newest event (history is not replayed)");
        return { index, seen: 0, published: 0, started: true };
      }
      const from = pos.value.index;
      const events = (await d.listEvents({ from, ...(signal ? { signal } : {}) }))
        .map((e) => ({ e, index: indexOf(e) }))
        .filter((x): x is { e: Event; index: number } => x.index !== undefined && x.index > from)
        .sort((a, b) => a.index - b.index);
      if (!events.length) {
        // An engine whose audit log restarted below the position (database restored, engine
        // reinstalled under the same name) would never be heard again: follow its newest event.
        if (++idle % STALE_CHECK_EVERY === 0) {
          const [newest] = await d.listEvents({ max: 1, ...(signal ? { signal } : {}) });
          const top = newest ? indexOf(newest) : undefined;
          if (top !== undefined && top < from) {
            const moved = await d.guard.advance(d.engine, top, pos.revision, d.clock());
            if (moved.ok) d.log.warn({ engine: d.engine, index: top, was: from }, "engine events: the engine's newest event is older than the position (its audit log was reset); following from it");
            return { index: top, seen: 0, published: 0 };
          }
        }
        return { index: from, seen: 0, published: 0 };
      }
      let published = 0;
      for (const { e } of events) {
        signal?.throwIfAborted();
        const fact = await factOf(e, d);
        if (!fact) continue;
        let ack: PublishAck;
        try {
          ack = await d.publish({ subject: ovirtEvent.subject, event: fact as OvirtEvent & { id: string } });
        } catch (err) {
          // An engine event that cannot be said in the contract would stop the poller for good: skip it, loudly.
          if (!(err instanceof ContractViolationError)) throw err;
          d.log.warn({ engine: d.engine, index: fact.engineEvent.index, err }, "engine event skipped: it does not fit ovirt.event");
          continue;
        }
        if (!ack.duplicate) published++;
        d.log.info({ engine: d.engine, index: fact.engineEvent.index, code: fact.engineEvent.code, kind: fact.kind, vm: fact.vm, duplicate: ack.duplicate }, "engine event published");
      }
      const last = events.at(-1)!.index;
      const moved = await d.guard.advance(d.engine, last, pos.revision, d.clock());
      // Another poller of this engine moved it first: it published the same facts (same msgIDs).
      if (!moved.ok) d.log.debug({ engine: d.engine, index: last }, "engine events: another poller moved the index first");
      return { index: last, seen: events.length, published };
    },

    /** Poll every `intervalMs` (± `jitter`, so pollers of several engines spread out) until `signal`. */
    async run(o: { intervalMs: number; jitter?: number; signal: AbortSignal; onPoll?: (r: PollResult) => void }): Promise<void> {
      const jitter = o.jitter ?? 0.2;
      let failures = 0;
      while (!o.signal.aborted) {
        try {
          // Not inside `o.onPoll?.(...)`: an absent callback would skip evaluating the poll itself.
          const result = await this.pollOnce(o.signal);
          o.onPoll?.(result);
          failures = 0;
        } catch (err) {
          if (o.signal.aborted) break;
          failures++;
          // An engine or bus that does not answer: try again next interval; the index did not move.
          d.log.warn({ engine: d.engine, err, failures }, "engine events: poll failed; trying again");
        }
        const wait = Math.max(100, Math.round(o.intervalMs * (1 - jitter + Math.random() * 2 * jitter)));
        await pause(wait, o.signal);
      }
    },
  };
}
export type Poller = ReturnType<typeof createPoller>;

/**
 * Wait `ms` or until `signal` aborts. A listener added to a signal that has ALREADY aborted never
 * fires, so that case returns first (a poll that ended just after SIGTERM used to start a full
 * interval's timer and keep the process alive); the listener goes when the timer does.
 */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
