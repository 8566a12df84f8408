import type { Contract } from "../../contracts/define.ts";
import type { FailureMapper, FunctionDefinition, Handler } from "./types.ts";

export interface FunctionSpec<T, D extends Partial<T>> {
  readonly name: string;
  /**
   * The subject consumed (default: the contract's). A wildcard (`*.failed`) consumes every stored
   * subject it matches, from one stream (infra/streams streamForFilter); `contract` must then
   * accept each of them, and such a function has no default failure event.
   */
  readonly subject?: string;
  readonly contract: Contract<T, D>;
  readonly concurrency?: number;
  readonly ackWaitMs: number;
  readonly maxDeliver: number;
  readonly backoffMs: readonly number[];
  readonly heartbeatMs?: number;
  readonly handler: Handler<T, D>;
  readonly onFailure?: FailureMapper<T, D>;
}

const NAME = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;

/**
 * Declare a function. Checks the retry policy up front so a bad definition fails at start,
 * not at the first redelivery: every consumer has ack_wait, max_deliver and backoff.
 */
export function defineFunction<T, D extends Partial<T>>(spec: FunctionSpec<T, D>): FunctionDefinition<T, D> {
  const problems: string[] = [];
  if (!NAME.test(spec.name)) problems.push(`name '${spec.name}' must be kebab-case (it is the durable consumer name)`);
  const subject = spec.subject ?? spec.contract.subject;
  if (!/^(?:[A-Za-z0-9_-]+|\*)(?:\.(?:[A-Za-z0-9_-]+|\*))*(?:\.>)?$/.test(subject))
    problems.push(`subject '${subject}' must be a subject, '*' or a trailing '>' as wildcards`);
  const concurrency = spec.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) problems.push("concurrency must be an integer >= 1");
  if (!Number.isInteger(spec.ackWaitMs) || spec.ackWaitMs < 1000) problems.push("ackWaitMs must be an integer >= 1000");
  if (!Number.isInteger(spec.maxDeliver) || spec.maxDeliver < 1) problems.push("maxDeliver must be an integer >= 1 (never unlimited)");
  if (spec.backoffMs.length === 0 || spec.backoffMs.some((b) => !Number.isInteger(b) || b < 0))
    problems.push("backoffMs must be a non-empty list of integer milliseconds");
  const heartbeatMs = spec.heartbeatMs ?? Math.max(250, Math.floor(spec.ackWaitMs / 3));
  if (heartbeatMs >= spec.ackWaitMs) problems.push("heartbeatMs must be shorter than ackWaitMs");
  if (problems.length) throw new Error(`function ${spec.name}: ${problems.join("; ")}`);
  return Object.freeze({
    name: spec.name,
    subject,
    contract: spec.contract,
    concurrency,
    ackWaitMs: spec.ackWaitMs,
    maxDeliver: spec.maxDeliver,
    backoffMs: Object.freeze([...spec.backoffMs]),
    heartbeatMs,
    handler: spec.handler,
    ...(spec.onFailure ? { onFailure: spec.onFailure } : {}),
  }) as FunctionDefinition<T, D>;
}
