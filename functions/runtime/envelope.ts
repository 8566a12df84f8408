/**
 * The envelope of a received event and of the events a handler emits. Inbound commands may
 * come without id/time/correlationId (a human typed them); the runtime fills them from the
 * JetStream message so they are stable across redeliveries.
 */
import type { Contract } from "../../contracts/define.ts";
import { engineName, id as idField } from "../../contracts/fields.ts";
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

/**
 * Where the alert for a failure of this input goes (contracts/failure.ts `engine`, `vmId`): its
 * `engine` field (backup.requested has it, default 'prd' once defaults are applied) and `vm.id`
 * when `vm` is {id, name}. A value that would not fit the failure contract is left out, so a
 * stray field on a loosely validated input never costs the failure event.
 */
export function alertTargetOf(event: Record<string, unknown>): { engine?: string; vmId?: string } {
  const out: { engine?: string; vmId?: string } = {};
  const engine = engineName.safeParse(event.engine);
  if (engine.success) out.engine = engine.data;
  const vm = event.vm;
  if (vm && typeof vm === "object" && !Array.isArray(vm)) {
    const vmId = idField.safeParse((vm as { id?: unknown }).id);
    if (vmId.success) out.vmId = vmId.data;
  }
  return out;
}

/**
 * An outbound event of `contract` with the envelope filled in, checked against the contract's
 * strict outbound schema (ContractViolationError when it does not fit or has an undeclared field).
 */
export function emitEvent<T>(
  input: Envelope,
  contract: Contract<T, any>,
  body: Record<string, unknown>,
  opts: { id?: string; key?: string; subject?: string; now?: Date } = {},
): Outbound {
  const subject = opts.subject ?? contract.subject;
  const id = opts.id ?? `${input.id}:${subject}${opts.key ? `:${opts.key}` : ""}`;
  const event = { ...body, id, time: (opts.now ?? new Date()).toISOString(), correlationId: input.correlationId };
  const v = contract.validateOutbound(event);
  if (!v.ok) throw new ContractViolationError(subject, v.reason);
  return { subject, event };
}
