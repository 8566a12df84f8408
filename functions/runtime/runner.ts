/**
 * One function's consume loop: pull → validate → handler → publish next events → ack, with the
 * ack verb chosen by what happened (see README.md). One runner per function per process.
 */
import type { Consumer, ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import type { Logger } from "pino";
import { errorCode, isPermanent, TransientError } from "../../contracts/errors.ts";
import { contractFor, failureSubjects, REJECTED_PAYLOAD_MAX, rejectedSubject, type Subject } from "../../contracts/mod.ts";
import { redactText } from "../../adapters/secrets.ts";
import { alertTargetOf, emitEvent, receivedEnvelope, vmOf, type StoredRef } from "./envelope.ts";
import type { Publisher } from "./publisher.ts";
import type { Semaphore } from "./semaphore.ts";
import type { Failure, FunctionDefinition, HandlerContext, Outbound } from "./types.ts";

export interface RunnerStats {
  received: number;
  acked: number;
  rejected: number;
  failed: number;
  retried: number;
  handedBack: number;
  inFlight: number;
  /** Messages received again (delivery count > 1: a retry, or a redelivery after a crash or an ack timeout). */
  redelivered: number;
  lastError?: string;
}

interface InFlight {
  readonly msg: JsMsg;
  readonly abort: AbortController;
  handedBack: boolean;
  readonly done: Promise<void>;
}

export interface RunnerDeps {
  readonly consumer: Consumer;
  readonly publisher: Publisher;
  readonly log: Logger;
  /** Process-wide bound across all functions (ferry run all). */
  readonly processSlots?: Semaphore;
  /** How long one pull waits for a message before asking again. */
  readonly pullExpiresMs?: number;
  readonly clock?: () => Date;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** true if `p` settled within `ms`; the timer is cleared either way, so it never holds the process open. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Backoff for the n-th delivery (1-based); the last value repeats. */
export function backoffFor(backoffMs: readonly number[], deliveryCount: number): number {
  return backoffMs[Math.min(Math.max(deliveryCount, 1), backoffMs.length) - 1] ?? 0;
}

/** One redacted line of an error, for events and term reasons. */
export function errorLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return redactText(text.split("\n")[0] ?? "").slice(0, 500) || "unknown error";
}

export class FunctionRunner {
  readonly stats: RunnerStats = { received: 0, acked: 0, rejected: 0, failed: 0, retried: 0, handedBack: 0, inFlight: 0, redelivered: 0 };
  readonly #inFlight = new Set<InFlight>();
  readonly #fetches = new Set<ConsumerMessages>();
  readonly #stopping = new AbortController();
  #loops: Promise<void>[] = [];

  readonly def: FunctionDefinition;
  private readonly deps: RunnerDeps;
  constructor(
    def: FunctionDefinition,
    deps: RunnerDeps,
  ) {
    this.def = def;
    this.deps = deps;
  }

  start(): void {
    for (let i = 0; i < this.def.concurrency; i++) this.#loops.push(this.#loop());
  }

  /** Stop pulling; give in-flight handlers `graceMs` to finish; hand back (nak) what is left. */
  async stop(graceMs: number): Promise<void> {
    this.#stopping.abort(new Error("stopping"));
    for (const f of this.#fetches) f.stop();
    const allDone = () => Promise.all([...this.#inFlight].map((f) => f.done));
    const finished = await settlesWithin(allDone(), graceMs);
    if (!finished) {
      for (const f of this.#inFlight) {
        f.handedBack = true;
        f.msg.nak(); // immediately available to another instance
        this.stats.handedBack++;
        f.abort.abort(new Error("shutdown: message handed back"));
      }
      this.deps.log.warn({ fn: this.def.name, handedBack: this.#inFlight.size }, "grace period over, in-flight messages handed back");
      // Let aborted handlers unwind briefly; they can no longer ack.
      await settlesWithin(allDone(), 1000);
    }
    await settlesWithin(Promise.all(this.#loops), 1000);
  }

  async #loop(): Promise<void> {
    const stopping = this.#stopping.signal;
    while (!stopping.aborted) {
      let release: (() => void) | undefined;
      try {
        release = this.deps.processSlots ? await this.deps.processSlots.acquire(stopping) : undefined;
        const msg = await this.#next();
        if (!msg) continue;
        if (stopping.aborted) {
          msg.nak(); // pulled while stopping: give it straight back
          continue;
        }
        await this.#handle(msg);
      } catch (err) {
        if (stopping.aborted) break;
        this.deps.log.error({ fn: this.def.name, err }, "pull failed; retrying in 1 s");
        await sleep(1000);
      } finally {
        release?.();
      }
    }
  }

  async #next(): Promise<JsMsg | null> {
    const iter = await this.deps.consumer.fetch({ max_messages: 1, expires: this.deps.pullExpiresMs ?? 5000 });
    this.#fetches.add(iter);
    let got: JsMsg | null = null;
    try {
      for await (const m of iter) got = m;
    } finally {
      this.#fetches.delete(iter);
    }
    return got;
  }

  async #handle(msg: JsMsg): Promise<void> {
    const def = this.def;
    this.stats.received++;
    const dc = msg.info.deliveryCount;
    if (dc > 1) this.stats.redelivered++;
    const baseLog = this.deps.log.child({ fn: def.name, subject: msg.subject, seq: msg.seq, deliveryCount: dc });
    const v = def.contract.validateText(msg.data);
    if (!v.ok) return this.#reject(msg, v.reason, v.errors, baseLog);

    const value = def.contract.withDefaults(v.value) as Record<string, unknown>;
    const envelope = receivedEnvelope(value, {
      stream: msg.info.stream,
      seq: msg.seq,
      time: msg.time,
      msgId: msg.headers?.get("Nats-Msg-Id") || undefined,
    });
    const event = { ...value, ...envelope };
    const log = baseLog.child({ correlationId: envelope.correlationId, vm: vmOf(event) });
    const abort = new AbortController();
    let resolveDone!: () => void;
    const entry: InFlight = { msg, abort, handedBack: false, done: new Promise<void>((r) => (resolveDone = r)) };
    this.#inFlight.add(entry);
    this.stats.inFlight = this.#inFlight.size;
    const working = () => {
      if (!entry.handedBack) msg.working();
    };
    const ctx: HandlerContext = {
      log,
      signal: abort.signal,
      delivery: { fn: def.name, subject: msg.subject, stream: msg.info.stream, seq: msg.seq, deliveryCount: dc, maxDeliver: def.maxDeliver },
      working,
      emit: (contract, body, opts) => emitEvent(envelope, contract, body as Record<string, unknown>, { ...opts, now: this.#now() }),
      publish: (out) => this.deps.publisher.publish(out),
    };
    const heartbeat = setInterval(working, def.heartbeatMs);
    const started = performance.now();
    try {
      const outcome = await def.handler(event as never, ctx);
      if (entry.handedBack) return;
      const published = [];
      for (const out of outcome?.publish ?? []) published.push(await this.deps.publisher.publish(out));
      if (entry.handedBack) return;
      await msg.ackAck();
      this.stats.acked++;
      log.info({ ms: Math.round(performance.now() - started), published: published.length }, "handled");
    } catch (err) {
      if (entry.handedBack) return;
      await this.#fail(msg, event, err, ctx, log);
    } finally {
      clearInterval(heartbeat);
      this.#inFlight.delete(entry);
      this.stats.inFlight = this.#inFlight.size;
      resolveDone();
    }
  }

  async #reject(msg: JsMsg, reason: string, errors: readonly { path: string; message: string }[], log: Logger): Promise<void> {
    this.stats.rejected++;
    const text = redactText(new TextDecoder().decode(msg.data));
    const fallbackId = `${msg.info.stream}:${msg.seq}`;
    let correlationId = fallbackId;
    try {
      const parsed = JSON.parse(text) as { correlationId?: unknown };
      if (parsed && typeof parsed.correlationId === "string" && parsed.correlationId) correlationId = parsed.correlationId;
    } catch {
      /* not JSON: keep the fallback */
    }
    const out: Outbound = {
      subject: rejectedSubject(msg.subject),
      event: {
        id: `${fallbackId}:rejected`,
        time: this.#now().toISOString(),
        correlationId: correlationId.slice(0, 255),
        subject: msg.subject,
        reason: reason.slice(0, 2000),
        errors: errors.map((e) => ({ path: e.path, message: e.message })),
        payload: text.slice(0, REJECTED_PAYLOAD_MAX),
        seq: msg.seq,
      },
    };
    try {
      await this.deps.publisher.publish(out);
    } catch (err) {
      if (msg.info.deliveryCount < this.def.maxDeliver) {
        log.error({ err }, "could not publish the rejection; will retry");
        msg.nak(backoffFor(this.def.backoffMs, msg.info.deliveryCount));
        return;
      }
      log.error({ err }, "could not publish the rejection; terminating anyway");
    }
    msg.term(`invalid: ${reason}`.slice(0, 500));
    log.warn({ reason }, "rejected");
  }

  async #fail(msg: JsMsg, event: Record<string, unknown>, err: unknown, ctx: HandlerContext, log: Logger): Promise<void> {
    const dc = msg.info.deliveryCount;
    const code = errorCode(err);
    const message = errorLine(err);
    this.stats.lastError = `${code}: ${message}`;
    if (!isPermanent(err) && dc < this.def.maxDeliver) {
      const delay = err instanceof TransientError && err.retryAfterMs !== undefined ? err.retryAfterMs : backoffFor(this.def.backoffMs, dc);
      this.stats.retried++;
      msg.nak(delay);
      log.warn({ err, code, delayMs: delay, attempt: dc, maxDeliver: this.def.maxDeliver }, "failed, will retry");
      return;
    }
    const failure: Failure = { code, message, attempts: dc, ...alertTargetOf(event) };
    try {
      const events = this.def.onFailure ? this.def.onFailure(event as never, failure, ctx) : this.#defaultFailure(event, failure, ctx);
      for (const out of events) await this.deps.publisher.publish(out);
    } catch (pubErr) {
      // The failure must be announced; while deliveries remain, try the whole thing again.
      log.error({ err: pubErr, cause: message }, "could not publish the failure event");
      if (dc < this.def.maxDeliver) {
        msg.nak(backoffFor(this.def.backoffMs, dc));
        return;
      }
    }
    this.stats.failed++;
    msg.term(`${code}: ${message}`.slice(0, 500));
    log.error({ err, code, attempts: dc, permanent: isPermanent(err) }, "failed for good");
  }

  /**
   * JetStream gave up on a message without our verdict: its last delivery went to a worker that
   * crashed or hung (max_deliver reached on ack timeout; the server's MAX_DELIVERIES advisory).
   * Announce the failure so the run does not just vanish. The id is deterministic, so several
   * instances receiving the same advisory publish one event.
   */
  async announceExhausted(stored: StoredRef & { readonly data: Uint8Array }, deliveries: number): Promise<void> {
    const log = this.deps.log.child({ fn: this.def.name, subject: this.def.subject, seq: stored.seq, deliveries });
    const v = this.def.contract.validateText(stored.data);
    if (!v.ok) return; // an invalid message is terminated and rejected, never exhausted
    const value = this.def.contract.withDefaults(v.value) as Record<string, unknown>;
    const envelope = receivedEnvelope(value, stored);
    const event = { ...value, ...envelope };
    const failure: Failure = {
      code: "MAX_DELIVER_EXCEEDED",
      message: `gave up after ${deliveries} deliveries without an answer (worker crashed or hung)`,
      attempts: deliveries,
      ...alertTargetOf(event),
    };
    const ctx: HandlerContext = {
      log,
      signal: AbortSignal.abort(),
      delivery: { fn: this.def.name, subject: this.def.subject, stream: stored.stream, seq: stored.seq, deliveryCount: deliveries, maxDeliver: this.def.maxDeliver },
      working: () => undefined,
      emit: (contract, body, opts) => emitEvent(envelope, contract, body as Record<string, unknown>, { ...opts, now: this.#now() }),
      publish: (out) => this.deps.publisher.publish(out),
    };
    const events = this.def.onFailure ? this.def.onFailure(event as never, failure, ctx) : this.#defaultFailure(event, failure, ctx);
    for (const out of events) await this.deps.publisher.publish(out);
    this.stats.failed++;
    log.error({ code: failure.code, correlationId: envelope.correlationId, vm: vmOf(event) }, "deliveries exhausted without an answer");
  }

  #defaultFailure(event: Record<string, unknown>, failure: Failure, ctx: HandlerContext): Outbound[] {
    const subject = failureSubjects[this.def.subject as Subject];
    const vm = vmOf(event);
    if (!subject || !vm) return [];
    const contract = contractFor(subject);
    if (!contract) return [];
    const body: Record<string, unknown> = { vm, code: failure.code, message: failure.message, step: this.def.subject, attempts: failure.attempts };
    if (typeof event.runId === "string") body.runId = event.runId;
    // Where the alert goes (functions/alerts reads these from every *.failed).
    if (failure.engine !== undefined) body.engine = failure.engine;
    if (failure.vmId !== undefined) body.vmId = failure.vmId;
    return [ctx.emit(contract, body as never)];
  }

  #now(): Date {
    return this.deps.clock ? this.deps.clock() : new Date();
  }
}
