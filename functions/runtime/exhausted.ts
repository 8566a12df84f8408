/**
 * Listening for JetStream's MAX_DELIVERIES advisories of our consumers: the case the consume
 * loop cannot see (the last delivery died with its worker). One queue group per function, so
 * one instance answers each advisory.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import type { Logger } from "pino";
import type { FunctionRunner } from "./runner.ts";

interface MaxDeliveriesAdvisory {
  readonly stream: string;
  readonly consumer: string;
  readonly stream_seq: number;
  readonly deliveries: number;
}

export function watchExhausted(
  nc: NatsConnection,
  jsm: JetStreamManager,
  runner: FunctionRunner,
  stream: string,
  log: Logger,
): Subscription {
  const subject = `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${runner.def.name}`;
  return nc.subscribe(subject, {
    queue: `ferry-exhausted-${runner.def.name}`,
    callback: (err, msg) => {
      if (err) return;
      void (async () => {
        try {
          const adv = msg.json<Partial<Record<keyof MaxDeliveriesAdvisory, unknown>>>();
          const seq = adv.stream_seq;
          const deliveries = adv.deliveries;
          if (typeof seq !== "number" || !Number.isSafeInteger(seq) || typeof deliveries !== "number") {
            log.warn({ fn: runner.def.name, subject: msg.subject }, "ignoring a MAX_DELIVERIES advisory without stream_seq/deliveries");
            return;
          }
          const stored = await jsm.streams.getMessage(stream, { seq });
          if (!stored) return; // aged out or deleted meanwhile
          await runner.announceExhausted(
            { stream, seq: stored.seq, time: stored.time, data: stored.data, msgId: stored.header?.get("Nats-Msg-Id") || undefined },
            deliveries,
          );
        } catch (e) {
          log.error({ err: e, fn: runner.def.name }, "could not announce an exhausted message");
        }
      })();
    },
  });
}
