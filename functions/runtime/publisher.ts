/**
 * Publishing next events: stored subjects go through JetStream with Nats-Msg-Id (so a
 * redelivered step re-publishing the same event is a duplicate, not a second event) and the
 * PubAck is awaited; core-only subjects (transfer.progress) are plain core publishes.
 * Every event is checked against its contract's strict outbound schema first (an undeclared
 * field at any level is refused, like a missing one): a handler bug must not put bad or
 * undescribed data on the bus. Consumers stay loose (contract.validate), so a newer producer
 * does not break an older consumer.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { contractFor } from "../../contracts/mod.ts";
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { redactText } from "../../adapters/secrets.ts";
import { streamFor } from "../../infra/streams/mod.ts";
import type { Outbound, PublishAck } from "./types.ts";

export class ContractViolationError extends PermanentError {
  constructor(subject: string, reason: string) {
    super("CONTRACT_VIOLATION", `event for ${subject} does not fit its contract: ${reason}`, { subject });
  }
}

export class PublishFailedError extends TransientError {
  constructor(subject: string, cause: unknown) {
    super("PUBLISH_FAILED", `publishing ${subject} failed: ${redactText(cause instanceof Error ? cause.message : String(cause))}`, { subject }, { cause });
  }
}

export interface Publisher {
  publish(out: Outbound): Promise<PublishAck>;
}

/** Throws ContractViolationError unless `out.event` fits its subject's contract exactly (validateOutbound). */
export function checkOutbound(out: Outbound): void {
  const contract = contractFor(out.subject);
  if (!contract) throw new ContractViolationError(out.subject, "no contract for this subject");
  const v = contract.validateOutbound(out.event);
  if (!v.ok) throw new ContractViolationError(out.subject, v.reason);
}

export function createPublisher(nc: NatsConnection, js: JetStreamClient, o: { timeoutMs?: number } = {}): Publisher {
  return {
    async publish(out: Outbound): Promise<PublishAck> {
      checkOutbound(out);
      const data = JSON.stringify(out.event);
      const stream = streamFor(out.subject);
      try {
        if (!stream) {
          nc.publish(out.subject, data);
          return { stream: "", seq: 0, duplicate: false };
        }
        const ack = await js.publish(out.subject, data, { msgID: out.msgId ?? out.event.id, timeout: o.timeoutMs ?? 10_000 });
        return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
      } catch (err) {
        throw new PublishFailedError(out.subject, err);
      }
    },
  };
}
