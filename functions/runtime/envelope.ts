/**
 * The envelope of a received event and of the events a handler emits. Inbound commands may
 * come without id/time/correlationId (a human typed them); the runtime fills them from the
 * JetStream message so they are stable across redeliveries.
 */
import type { Contract } from "../../contracts/define.ts";
import type { Envelope, Outbound } from "./types.ts";
import { ContractViolationError } from "./publisher.ts";

/** Where a stored message sits: enough to give it a stable envelope. */
export interface StoredRef {
  readonly stream: string;
  readonly seq: number;
  readonly time: Date;
  /** The Nats-Msg-Id header, if the publisher set one. */
  readonly msgId?: string;
}

export function receivedEnvelope(value: Record<string, unknown>, msg: StoredRef): Envelope {
  const id = typeof value.id === "string" ? value.id : msg.msgId ? msg.msgId : `${msg.stream}:${msg.seq}`;
  return {
    id,
    time: typeof value.time === "string" ? value.time : msg.time.toISOString(),
    correlationId: typeof value.correlationId === "string" ? value.correlationId : id,
  };
}

/** The VM name for logs and failure events: `vm` is a name string or {id, name}. */
export function vmOf(event: Record<string, unknown>): string | undefined {
  const vm = event.vm;
  if (typeof vm === "string") return vm;
  if (vm && typeof vm === "object" && typeof (vm as { name?: unknown }).name === "string") return (vm as { name: string }).name;
  return undefined;
}

export function emitEvent<T>(
  input: Envelope,
  contract: Contract<T, any>,
  body: Record<string, unknown>,
  opts: { id?: string; key?: string; subject?: string; now?: Date } = {},
): Outbound {
  const subject = opts.subject ?? contract.subject;
  const id = opts.id ?? `${input.id}:${subject}${opts.key ? `:${opts.key}` : ""}`;
  const event = { ...body, id, time: (opts.now ?? new Date()).toISOString(), correlationId: input.correlationId };
  const v = contract.validate(event);
  if (!v.ok) throw new ContractViolationError(subject, v.reason);
  return { subject, event };
}
