/**
 * Following the bus for people and scripts (`ferry events`): an ordered consumer per Ferry
 * stream whose subjects can overlap the filter (the whole stream, filtered here), plus a core
 * subscription for core-only subjects (transfer.progress). Ordered consumers are ephemeral and
 * need no cleanup.
 */
import { DeliverPolicy, jetstream, jetstreamManager, type OrderedConsumerOptions } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { coreOnlySubjects, streams } from "../../infra/streams/mod.ts";
import { isMissingResource } from "./errors.ts";

export interface BusEvent {
  readonly subject: string;
  /** "" for core-only subjects. */
  readonly stream: string;
  readonly seq: number;
  readonly received: Date;
  /** The server's timestamp in nanoseconds: orders events across streams (Dates keep only ms). */
  readonly receivedNanos: bigint;
  /** Parsed JSON, or undefined when the payload is not JSON (then `text`). */
  readonly data: unknown;
  readonly text: string;
}

export interface FollowOptions {
  /** Subject filter with NATS wildcards. Default ">" (everything Ferry publishes). */
  readonly subject?: string;
  /** Where to start in the streams. Default: only new messages. */
  readonly from?: { readonly kind: "new" } | { readonly kind: "all" } | { readonly kind: "since"; readonly time: Date };
  readonly signal: AbortSignal;
}

/** Could some subject match both patterns? Token-wise with `*` and `>`. (Ferry's own subjects are concrete.) */
export function subjectsIntersect(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let i = 0; ; i++) {
    const p = x[i];
    const q = y[i];
    if (p === ">" || q === ">") return p !== undefined && q !== undefined;
    if (p === undefined || q === undefined) return p === q;
    if (p !== "*" && q !== "*" && p !== q) return false;
  }
}

function decode(data: Uint8Array): { data: unknown; text: string } {
  const text = new TextDecoder().decode(data);
  try {
    return { data: JSON.parse(text), text };
  } catch {
    return { data: undefined, text };
  }
}

/**
 * Calls `onEvent` for every matching message until `signal` aborts. One ordered consumer per
 * stream over the whole stream, filtered here: an ordered consumer with many filter subjects
 * reported num_pending 0 and delivered nothing on nats-server 2.10.27. With a start in the past,
 * what the streams hold is read first and given in time order across the streams, then events
 * as they come.
 */
export async function followBus(nc: NatsConnection, o: FollowOptions, onEvent: (e: BusEvent) => void): Promise<void> {
  const filter = o.subject ?? ">";
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const from = o.from ?? { kind: "new" };
  const tasks: Promise<void>[] = [];
  const stops: Array<() => void> = [];
  // Until every stream's backlog is read, events are held here and then given sorted by time.
  let held: BusEvent[] | undefined = [];
  const backlogs = new Set<string>();
  const emit = (e: BusEvent) => (held ? held.push(e) : onEvent(e));
  const caughtUp = (stream: string) => {
    backlogs.delete(stream);
    if (backlogs.size > 0 || !held) return;
    // Nanoseconds, not Dates: events published within one millisecond otherwise tie, and stream
    // sequences do not compare across streams (CI saw restore.requested before backup.failed).
    const out = held.sort((a, b) => (a.receivedNanos < b.receivedNanos ? -1 : a.receivedNanos > b.receivedNanos ? 1 : 0));
    held = undefined;
    for (const e of out) onEvent(e);
  };

  const selected = Object.values(streams).filter((def) => def.subjects.some((s) => subjectsIntersect(s, filter)));
  // Every stream's backlog is known before any consumer starts: a stream read to its end
  // before the next one was counted would let the held events out early, out of time order.
  const plans = [];
  for (const def of selected) {
    const state = await jsm.streams.info(def.name).then(
      (i) => i.state,
      (err: unknown) => {
        throw isMissingResource(err)
          ? new Error(`stream ${def.name} does not exist yet: start the functions (ferry run all) or publish once (ferry publish ...)`)
          : err;
      },
    );
    const hasBacklog =
      from.kind !== "new" && state.messages > 0 && (from.kind === "all" || Date.parse(state.last_ts) >= from.time.getTime());
    if (hasBacklog) backlogs.add(def.name);
    // The stream's last message at start: once it is read, the backlog is done.
    plans.push({ name: def.name, lastSeq: state.last_seq });
  }
  const opts: Partial<OrderedConsumerOptions> =
    from.kind === "all"
      ? { deliver_policy: DeliverPolicy.All }
      : from.kind === "since"
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.time.toISOString() }
        : { deliver_policy: DeliverPolicy.New };
  for (const plan of plans) {
    const consumer = await js.consumers.get(plan.name, opts);
    const messages = await consumer.consume();
    stops.push(() => messages.stop());
    tasks.push(
      (async () => {
        for await (const m of messages) {
          // Stream subjects are concrete, so "intersects the filter" is "matches the filter".
          if (subjectsIntersect(m.subject, filter)) emit({ subject: m.subject, stream: m.info.stream, seq: m.seq, received: m.time, receivedNanos: m.timestampNanos, ...decode(m.data) });
          if (backlogs.has(plan.name) && m.seq >= plan.lastSeq) caughtUp(plan.name);
        }
      })(),
    );
  }
  for (const core of coreOnlySubjects) {
    if (!subjectsIntersect(core, filter)) continue;
    const sub = nc.subscribe(core);
    stops.push(() => sub.unsubscribe());
    tasks.push(
      (async () => {
        for await (const m of sub) {
          const received = new Date();
          emit({ subject: m.subject, stream: "", seq: 0, received, receivedNanos: BigInt(received.getTime()) * 1_000_000n, ...decode(m.data) });
        }
      })(),
    );
  }
  if (tasks.length === 0) throw new Error(`no Ferry stream or subject matches '${filter}'`);
  if (backlogs.size === 0) {
    backlogs.add("");
    caughtUp("");
  }
  await new Promise<void>((resolve) => {
    if (o.signal.aborted) resolve();
    else o.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  for (const stop of stops) stop();
  await Promise.allSettled(tasks);
}
