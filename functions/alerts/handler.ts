/**
 * alerts: one engine audit-log alert per failed run (`*.failed`), rate-limited per engine, with
 * one summary per minute for what was held back. A factory over its dependencies: the engine
 * edge is one port, `postAlert`; the run journal and the limiter are plain objects over KV.
 */
import { PermanentError } from "../../contracts/errors.ts";
import { redactText } from "../../adapters/secrets.ts";
import { customIdFor } from "../../pipeline/run-ids.ts";
import type { AlertLimiter } from "./limiter.ts";

/** Audit-log severities (ovirt-api.md §9). */
export type Severity = "normal" | "warning" | "error" | "alert";

export interface AlertPost {
  readonly description: string;
  readonly severity: Severity;
  /** (origin ferry, custom_id) is unique on the engine: a second post of the same id is refused. */
  readonly customId: number;
  readonly vmId?: string | undefined;
}

/**
 * The engine edge: POST /events on the named engine with origin `ferry`. Resolves "duplicate"
 * when the engine already has this custom_id (the alert is there: done). Throws
 * UnknownEngineError for an engine not in the config; engine/network errors propagate
 * (transient ones are retried by the runtime).
 */
export type PostAlert = (engine: string, alert: AlertPost) => Promise<"posted" | "duplicate">;

export class UnknownEngineError extends PermanentError {
  constructor(engine: string) {
    super("UNKNOWN_ENGINE", `engine '${engine}' is not in the config; the alert cannot be posted`, { engine });
  }
}

/**
 * The engine's TLS could not be verified (its CA replaced and not yet accepted): postAlert can
 * never reach it until the operator acts, which is exactly when its failures need to be seen.
 */
export class EngineUntrustedError extends PermanentError {
  constructor(engine: string, cause?: unknown) {
    super("ALERT_ENGINE_UNTRUSTED", `engine '${engine}' is not trusted (TLS verification failed); the alert cannot be posted there`, { engine }, { cause });
  }
}

/** What the alert needs from a run's journal (pipeline/run-journal.ts BackupRun). */
export interface RunInfo {
  readonly engine?: string | undefined;
  readonly vm?: { readonly id?: string | undefined; readonly name?: string | undefined } | undefined;
}

export interface AlertsDeps {
  readonly postAlert: PostAlert;
  /** The run journal (KV ferry-runs) by run id; undefined when the run is not journaled. */
  readonly runs: { get(runId: string): Promise<RunInfo | undefined> };
  readonly limiter: AlertLimiter;
  /** Engine of a failure that names none and has no journal entry (config default, 'prd'). */
  readonly defaultEngine: string;
  /** Is this engine in the config (can postAlert reach it)? */
  readonly hasEngine: (name: string) => boolean;
  /** Another configured engine, for an alert whose own engine is not trusted (EngineUntrustedError). */
  readonly otherEngine?: (name: string) => string | undefined;
  readonly log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void };
}

/** The failure event as the alerts function reads it (contracts/failure.ts failureFields). */
export interface FailureEvent {
  readonly id: string;
  readonly correlationId: string;
  /** When the failure happened: the rate-limit window it counts in. */
  readonly time: string;
  readonly vm: string;
  readonly code: string;
  readonly message: string;
  readonly runId?: string | undefined;
  readonly step?: string | undefined;
  readonly engine?: string | undefined;
  readonly vmId?: string | undefined;
}

export const DESCRIPTION_MAX = 1000;

/** `backup.failed` → "backup"; any `<kind>.failed` → its first token. */
export function kindOf(subject: string): string {
  return subject.split(".")[0] || "run";
}

/** The run's one failure alert: the same custom_id the backup handlers used (pipeline/run-ids.ts). */
export function alertCustomId(ev: Pick<FailureEvent, "runId" | "correlationId">): number {
  return customIdFor(ev.runId ?? ev.correlationId, "failed");
}

/** custom_id of the summary of one engine's window: posted once, whichever process posts it. */
export function summaryCustomId(engine: string, windowStart: number): number {
  return customIdFor(`alerts:${engine}:${windowStart}`, "summary");
}

export function alertDescription(subject: string, ev: Pick<FailureEvent, "vm" | "code" | "message">, redirectedFrom?: string): string {
  // cert.failed is about an engine's certificates, not a VM (its `vm` field carries the engine name).
  const what = kindOf(subject) === "cert" ? `certificate check of engine ${ev.vm}` : `${kindOf(subject)} of VM ${ev.vm}`;
  const who = redirectedFrom ? `Ferry (for engine ${redirectedFrom}, which is not trusted over TLS)` : "Ferry";
  return redactText(`${who}: ${what} failed (${ev.code}): ${ev.message}`).slice(0, DESCRIPTION_MAX);
}

/** The command the summary points to: every failure still in FERRY_EVENTS (cli/commands/events.ts). */
export const FAILURES_COMMAND = "ferry events '*.failed' --all";

export function summaryDescription(s: { heldBack: number; start: number; windowMs: number; limit: number }): string {
  const minute = new Date(s.start).toISOString().replace(/:00\.000Z$/, "Z");
  const span = s.windowMs === 60_000 ? `the minute from ${minute}` : `the ${Math.round(s.windowMs / 1000)} s from ${minute}`;
  const n = s.heldBack;
  return (
    `Ferry: ${n} more failure${n === 1 ? "" : "s"} in ${span} ${n === 1 ? "was" : "were"} not posted individually ` +
    `(at most ${s.limit} alerts per engine per ${s.windowMs === 60_000 ? "minute" : `${Math.round(s.windowMs / 1000)} s`}); see \`${FAILURES_COMMAND}\``
  ).slice(0, DESCRIPTION_MAX);
}

export interface Alerts {
  /** Handle one failure event that arrived on `subject`. */
  handle(subject: string, ev: FailureEvent): Promise<"posted" | "duplicate" | "held-back" | "done" | "no-engine">;
  /** Post the summaries of closed windows (claimed by CAS; one process posts each). */
  flushSummaries(): Promise<number>;
}

export function createAlerts(deps: AlertsDeps): Alerts {
  return {
    async handle(subject, ev) {
      const runKey = ev.runId ?? ev.correlationId;
      const run = ev.engine && ev.vmId ? undefined : await deps.runs.get(runKey);
      const named = ev.engine ?? run?.engine ?? deps.defaultEngine;
      // A failure naming an engine Ferry does not know (a request with a misspelt engine) is still
      // worth an alert: it goes to the default engine, without a VM link (the id means nothing there).
      const engine = deps.hasEngine(named) ? named : deps.defaultEngine;
      if (!deps.hasEngine(engine)) {
        deps.log.error({ engine: named, vm: ev.vm, code: ev.code }, "no engine to post the failure alert to (not in the config)");
        return "no-engine";
      }
      const vmId = engine === named ? (ev.vmId ?? run?.vm?.id) : undefined;
      const customId = alertCustomId(ev);
      const decision = await deps.limiter.decide(engine, customId, Date.parse(ev.time));
      const log = { engine, vm: ev.vm, code: ev.code, customId, window: new Date(decision.window).toISOString() };
      if (decision.kind === "done") return "done";
      if (decision.kind === "hold") {
        deps.log.warn(log, "failure alert held back by the rate limit; counted in the minute's summary");
        return "held-back";
      }
      const description = alertDescription(subject, ev);
      let result: "posted" | "duplicate";
      try {
        result = await deps.postAlert(engine, { description, severity: "alert", customId, ...(vmId ? { vmId } : {}) });
      } catch (err) {
        // The engine's CA was replaced (a failure of exactly this kind is likely what is being
        // reported): the alert goes to another engine, saying where it belongs, rather than nowhere.
        const other = err instanceof EngineUntrustedError ? deps.otherEngine?.(engine) : undefined;
        if (!other) throw err;
        deps.log.warn({ ...log, postedOn: other }, `engine ${engine} is not trusted (TLS); the failure alert goes to engine ${other}`);
        result = await deps.postAlert(other, { description: alertDescription(subject, ev, engine), severity: "alert", customId });
      }
      await deps.limiter.posted(customId).catch((err: unknown) => deps.log.warn({ ...log, err }, "could not record the posted alert"));
      deps.log.info({ ...log, result }, result === "posted" ? "failure alert posted" : "failure alert was already on the engine");
      return result;
    },

    async flushSummaries() {
      let n = 0;
      for (const s of await deps.limiter.claimDueSummaries()) {
        try {
          const result = await deps.postAlert(s.engine, {
            description: summaryDescription({ heldBack: s.heldBack, start: s.start, windowMs: deps.limiter.windowMs, limit: deps.limiter.limit }),
            severity: "alert",
            customId: summaryCustomId(s.engine, s.start),
          });
          await deps.limiter.summaryPosted(s.engine, s.start);
          deps.log.info({ engine: s.engine, window: new Date(s.start).toISOString(), heldBack: s.heldBack, result }, "failure summary posted");
          n++;
        } catch (err) {
          // The claim expires and this or another process posts it later (same custom_id).
          deps.log.error({ err, engine: s.engine, window: new Date(s.start).toISOString(), heldBack: s.heldBack }, "could not post the failure summary; will retry");
        }
      }
      return n;
    },
  };
}
