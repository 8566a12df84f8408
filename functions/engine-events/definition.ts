/**
 * The engine-events function for the runtime: one durable consumer `engine-events` on
 * `ovirt.event` (from this function's own pollers and from `ferry hooks serve`). Marks in KV are
 * idempotent per event id, so a redelivery changes nothing.
 */
import { ovirtEvent } from "../../contracts/mod.ts";
import { defineFunction, type FunctionDefinition } from "../runtime/mod.ts";
import { createEngineEventHandler, type EngineEventDeps } from "./handler.ts";

export interface EngineEventsPolicy {
  readonly ackWaitMs?: number;
  readonly maxDeliver?: number;
  readonly backoffMs?: readonly number[];
}

export function engineEventsFunction(deps: EngineEventDeps, p: EngineEventsPolicy = {}): FunctionDefinition {
  const handle = createEngineEventHandler(deps);
  return defineFunction({
    name: "engine-events",
    contract: ovirtEvent,
    concurrency: 2,
    ackWaitMs: p.ackWaitMs ?? 30_000,
    // KV and the bus only: retried for about half an hour, then logged (ovirt.event has no failure event).
    maxDeliver: p.maxDeliver ?? 10,
    backoffMs: p.backoffMs ?? [1_000, 5_000, 30_000, 300_000],
    handler: handle,
    onFailure: (event, failure, ctx) => {
      ctx.log.error({ code: failure.code, attempts: failure.attempts, vm: event.vm, kind: event.kind }, `engine event not applied: ${failure.message}`);
      return [];
    },
  });
}
