/**
 * Following the bus for people and scripts (`ferry events`): an ordered consumer per Ferry
 * stream whose subjects can overlap the filter, plus a core subscription for core-only
 * subjects (transfer.progress). Ordered consumers are ephemeral and need no cleanup.
 */
import { DeliverPolicy, jetstream, type OrderedConsumerOptions } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { coreOnlySubjects, streams } from "../../infra/streams/mod.ts";

export interface BusEvent {
  readonly subject: string;
  /** "" for core-only subjects. */
  readonly stream: string;
  readonly seq: number;
  readonly received: Date;
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

/** Calls `onEvent` for every matching message until `signal` aborts. */
export async function followBus(nc: NatsConnection, o: FollowOptions, onEvent: (e: BusEvent) => void): Promise<void> {
  const filter = o.subject ?? ">";
  const js = jetstream(nc);
  const from = o.from ?? { kind: "new" };
  const tasks: Promise<void>[] = [];
  const stops: Array<() => void> = [];

  for (const def of Object.values(streams)) {
    const subjects = def.subjects.filter((s) => subjectsIntersect(s, filter));
    if (subjects.length === 0) continue;
    const opts: Partial<OrderedConsumerOptions> = {
      // Stream subjects are concrete, so the ones matching the filter are exactly the intersection.
      filter_subjects: subjects,
      ...(from.kind === "all"
        ? { deliver_policy: DeliverPolicy.All }
        : from.kind === "since"
          ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.time.toISOString() }
          : { deliver_policy: DeliverPolicy.New }),
    };
    const consumer = await js.consumers.get(def.name, opts).catch((err: unknown) => {
      throw /stream not found/i.test(String(err))
        ? new Error(`stream ${def.name} does not exist yet: start the functions (ferry run all) or publish once (ferry publish ...)`)
        : err;
    });
    const messages = await consumer.consume();
    stops.push(() => messages.stop());
    tasks.push(
      (async () => {
        for await (const m of messages) {
          const d = decode(m.data);
          onEvent({ subject: m.subject, stream: m.info.stream, seq: m.seq, received: m.time, ...d });
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
        for await (const m of sub) onEvent({ subject: m.subject, stream: "", seq: 0, received: new Date(), ...decode(m.data) });
      })(),
    );
  }
  if (tasks.length === 0) throw new Error(`no Ferry stream or subject matches '${filter}'`);
  await new Promise<void>((resolve) => {
    if (o.signal.aborted) resolve();
    else o.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  for (const stop of stops) stop();
  await Promise.allSettled(tasks);
}
