/**
 * The alerts function for the runtime: one durable consumer `alerts` on `*.failed` in
 * FERRY_EVENTS (backup.failed, restore.failed, and any later `<kind>.failed`), plus the timer
 * that posts the summaries of closed windows.
 */
import { backupFailed } from "../../contracts/mod.ts";
import { defineFunction, type FunctionDefinition } from "../runtime/mod.ts";
import { createAlerts, type Alerts, type AlertsDeps, type FailureEvent } from "./handler.ts";

/** The subjects consumed: every failure outcome. All `*.failed` contracts share contracts/failure.ts. */
export const ALERTS_SUBJECT = "*.failed";
/** Individual alerts per engine per minute; the rest are counted in one summary for that minute. */
export const ALERTS_PER_MINUTE = 10;
export const WINDOW_MS = 60_000;
/** How often each process looks for closed minutes whose summary is due. */
export const FLUSH_EVERY_MS = 5_000;

export interface AlertsPolicy {
  readonly ackWaitMs?: number;
  readonly maxDeliver?: number;
  readonly backoffMs?: readonly number[];
  readonly concurrency?: number;
}

export function alertsFunction(alerts: Alerts, p: AlertsPolicy = {}): FunctionDefinition {
  return defineFunction({
    name: "alerts",
    subject: ALERTS_SUBJECT,
    // backup.failed's schema is failureFields, loose: it accepts every `*.failed` event
    // (restore.failed only adds an optional `target`); definition.test.ts checks each one.
    contract: backupFailed,
    concurrency: p.concurrency ?? 4,
    ackWaitMs: p.ackWaitMs ?? 30_000,
    // An unreachable engine is retried for about 80 minutes (2 s, 10 s, 60 s, then every 5 min).
    maxDeliver: p.maxDeliver ?? 20,
    backoffMs: p.backoffMs ?? [2_000, 10_000, 60_000, 300_000],
    handler: async (event, ctx) => {
      const result = await alerts.handle(ctx.delivery.subject, event as unknown as FailureEvent);
      ctx.log.debug({ result }, "alert handled");
    },
  });
}

/**
 * Post due summaries every `everyMs` until `signal` aborts (one flush at a time). Resolves once
 * the signal fired and the flush under way (a KV claim, an engine post) has ended, so the host
 * drains NATS after it, not under it.
 */
export function startSummaryFlusher(alerts: Alerts, o: { everyMs: number; signal: AbortSignal; log: AlertsDeps["log"] }): Promise<void> {
  if (o.signal.aborted) return Promise.resolve();
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = alerts
      .flushSummaries()
      .then(() => undefined, (err: unknown) => void o.log.error({ err }, "failure summaries: flush failed"))
      .finally(() => (running = undefined));
  }, o.everyMs);
  timer.unref();
  return new Promise<void>((resolve) => {
    o.signal.addEventListener("abort", () => {
      clearInterval(timer);
      void (running ?? Promise.resolve()).then(resolve);
    }, { once: true });
  });
}

export { createAlerts };
