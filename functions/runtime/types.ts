/**
 * The interface between the function host and a function folder. A function is one durable
 * consumer on one subject: the runtime validates each message against `contract`, calls
 * `handler`, publishes what it returns (with msgID, waiting for the PubAck) and only then acks.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { Kvm } from "@nats-io/kv";
import type { Logger } from "pino";
import type { Contract } from "../../contracts/define.ts";
import type { LoadedConfig } from "../../config/load.ts";

/** Envelope fields the runtime guarantees on every event a handler receives. */
export interface Envelope {
  readonly id: string;
  readonly time: string;
  readonly correlationId: string;
}

/** The event a handler gets: validated, envelope filled in, the contract's defaults applied. */
export type Received<T, D> = T & Required<Pick<T, keyof D & keyof T>> & Envelope;

/** One event to publish. `event.id` is the Nats-Msg-Id unless `msgId` says otherwise. */
export interface Outbound {
  readonly subject: string;
  readonly event: Readonly<Record<string, unknown>> & { readonly id: string };
  readonly msgId?: string;
}

/** What a handler returns: the next events. They are published (PubAck awaited) before the input is acked. */
export interface Outcome {
  readonly publish?: readonly Outbound[];
}

export interface PublishAck {
  /** Empty for core-NATS-only subjects (transfer.progress). */
  readonly stream: string;
  readonly seq: number;
  readonly duplicate: boolean;
}

/** Where the message came from (for logs and deterministic ids). */
export interface Delivery {
  readonly fn: string;
  readonly subject: string;
  readonly stream: string;
  /** Stream sequence of the input message. */
  readonly seq: number;
  /** 1 on first delivery. */
  readonly deliveryCount: number;
  readonly maxDeliver: number;
}

export interface HandlerContext {
  /** Child logger with {fn, subject, seq, correlationId, vm}. Add fields with log.child({...}). */
  readonly log: Logger;
  /** Aborted when the process is shutting down past its grace period: stop and throw. */
  readonly signal: AbortSignal;
  readonly delivery: Delivery;
  /** Extend the ack deadline now. The runtime also calls it on a timer while the handler runs. */
  working(): void;
  /**
   * Build an event of `contract` with the envelope filled: id (default `<input id>:<subject>`,
   * or `<input id>:<subject>:<key>` with opts.key), time = now, correlationId inherited.
   * Validates it against the contract's strict outbound schema (an undeclared field at any level
   * does not fit) and throws a PermanentError (CONTRACT_VIOLATION) if it does not fit.
   */
  emit<T>(contract: Contract<T, any>, body: Omit<T, "id" | "time" | "correlationId">, opts?: { id?: string; key?: string; subject?: string }): Outbound;
  /** Publish now (progress, or a fact that must be out before the handler finishes). Waits for the PubAck. */
  publish(out: Outbound): Promise<PublishAck>;
}

export type Handler<T, D> = (event: Received<T, D>, ctx: HandlerContext) => Promise<Outcome | void>;

/** What failure events to publish when handling fails for good (permanent error or retries exhausted). */
export interface Failure {
  readonly code: string;
  /** One line, already redacted. */
  readonly message: string;
  readonly attempts: number;
  /**
   * Where the alert for this failure goes (contracts/failure.ts `engine`): the input's `engine`
   * field (backup.requested: default 'prd'), when it has a valid one.
   */
  readonly engine?: string;
  /** Where the alert for this failure goes (contracts/failure.ts `vmId`): the input's `vm.id` when `vm` is {id, name}. */
  readonly vmId?: string;
}
export type FailureMapper<T, D> = (event: Received<T, D>, failure: Failure, ctx: HandlerContext) => readonly Outbound[];

export interface FunctionDefinition<T = any, D = any> {
  /** Durable consumer name = the folder name under functions/ (kebab-case). */
  readonly name: string;
  /** The subject consumed (the consumer's filter subject). */
  readonly subject: string;
  readonly contract: Contract<T, any>;
  /** Messages handled at once by one process. Default 1 (heavy work: scale with processes). */
  readonly concurrency: number;
  /** Redelivery after this long without ack or working() (a crashed worker's message comes back). */
  readonly ackWaitMs: number;
  /** Deliveries before giving up (then: the failure event and term). */
  readonly maxDeliver: number;
  /** nak delay by attempt (last value repeats) for transient errors without retryAfterMs. */
  readonly backoffMs: readonly number[];
  /** working() interval while the handler runs. Default ackWaitMs / 3. */
  readonly heartbeatMs: number;
  readonly handler: Handler<T, D>;
  /**
   * Default: the contract's `*.failed` subject from contracts/mod.ts failureSubjects, with
   * {vm, code, message, step, attempts, runId?, engine?, vmId?}.
   */
  readonly onFailure?: FailureMapper<T, D>;
}

/** What functions/<name>/main.ts gets to build its dependencies from. Only main.ts builds real clients. */
export interface FunctionContext<C = LoadedConfig> {
  /** The parsed, frozen Ferry config (config/load.ts; defaults when no file was found). */
  readonly config: C;
  readonly log: Logger;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly kvm: Kvm;
  /**
   * Aborted once the host has stopped handling messages (after SIGTERM's grace period):
   * stop background work (timers, reconcilers) and close clients then. Handlers get their own
   * per-message signal in HandlerContext.
   */
  readonly signal: AbortSignal;
  /**
   * Hand the host a background loop (reconciler, poller, timer) that ends once `signal` aborts.
   * At stop the host aborts `signal` and waits for these (bounded, naming any still running)
   * BEFORE it drains NATS, so a loop can still release its lease or journal its last step.
   * A rejection is logged.
   */
  background(what: string, work: Promise<unknown>): void;
}

/** The default export of functions/<name>/main.ts. */
export type FunctionFactory<C = LoadedConfig> = (ctx: FunctionContext<C>) => FunctionDefinition | Promise<FunctionDefinition>;
