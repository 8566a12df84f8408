/**
 * The daily summary in each engine's audit log (severity normal): how many VMs are protected,
 * failed, overdue or never backed up, and the bytes in the store — the facts `ferry status`
 * decides (config/status.ts computeStatus over config/status-source.ts), counted, not re-derived.
 *
 * Once per engine and local day (the config's timeZone), however many schedulers run:
 * - a claim in KV ferry-schedule, `summary.<engine>.<YYYYMMDD>`, skips an engine already done;
 * - the event's custom_id is derived from the deployment, the engine and the day, so two posts
 *   that race past the claim (or a crash between post and claim) are refused by the engine as a
 *   duplicate (ovirt-api.md §9) — the summary is there once.
 * Posted first, claimed after (as the scheduler does with slots): a failure to post leaves no
 * claim, so the next try posts it.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { DuplicateEventError, type PostEvent } from "../adapters/ovirt/mod.ts";
import { computeStatus, summarize, type SummaryCounts } from "../config/status.ts";
import { readKvFacts, readOutcomes, type VmPolicies } from "../config/status-source.ts";
import { localDateKey, localTime, TIME_OF_DAY, type SlotClaims } from "../domain/schedule/mod.ts";
import { customIdFor } from "./run-ids.ts";

// The counts live beside computeStatus (config/status.ts), shared with the console's overview.
export { summarize, type SummaryCounts };

export interface DailySummary extends SummaryCounts {
  /** Local day in the zone, YYYY-MM-DD. */
  readonly day: string;
  readonly timeZone: string;
}


/** The local day (YYYY-MM-DD) of an instant in a zone. */
export function summaryDay(now: Date, timeZone: string): string {
  return localDateKey(localTime(now, timeZone));
}

/**
 * The day whose summary is due at `now`: today once the local wall clock has reached `time`
 * ("HH:MM"), else undefined. Comparing wall times (not waiting for an exact minute) means a
 * time skipped by a spring-forward jump is due right after it, and a daemon started later in
 * the day posts at start.
 */
export function summaryDueDay(now: Date, time: string, timeZone: string): string | undefined {
  const m = TIME_OF_DAY.exec(time);
  if (!m) throw new RangeError(`summary time "${time.slice(0, 20)}" must be "HH:MM"`);
  const t = localTime(now, timeZone);
  return t.hour * 60 + t.minute >= Number(m[1]) * 60 + Number(m[2]) ? localDateKey(t) : undefined;
}

const GiB = 1024 ** 3;

/** The audit-log description (the engine keeps at most 4000 characters; names are cut to fit 1000). */
export function summaryText(s: DailySummary): string {
  const names = (label: string, vms: readonly string[]) => (vms.length ? ` ${label}: ${vms.slice(0, 20).join(", ")}${vms.length > 20 ? ` and ${vms.length - 20} more` : ""}.` : "");
  const head =
    `Ferry daily summary ${s.day} (${s.timeZone}): ${s.vms} VM${s.vms === 1 ? "" : "s"}: ` +
    `${s.protected} protected, ${s.failed} failed, ${s.overdue} overdue, ${s.never} never backed up; ` +
    `${(s.bytesStored / GiB).toFixed(2)} GiB stored (${s.bytesStored} bytes).`;
  return `${head}${names("Failed", s.failedVms)}${names("Overdue", s.overdueVms)}${names("Never backed up", s.neverVms)}`.slice(0, 1000);
}

/** The custom_id of one deployment's summary of one day on one engine: the engine keeps it once. */
export function summaryCustomId(deployment: string, engine: string, day: string): number {
  return customIdFor(`daily-summary:${deployment}:${engine}:${day}`, "summary");
}

/** KV ferry-schedule key of an engine's summary of a day (engine names are KV-safe: [A-Za-z0-9_-]). */
export function summaryClaimKey(engine: string, day: string): string {
  return `summary.${engine}.${day.replace(/-/g, "")}`;
}

/** What the summary reads: `ferry status`'s inputs, decided by computeStatus. */
export async function readDailySummary(nc: NatsConnection, o: { policies: VmPolicies; timeZone: string; now: Date }): Promise<DailySummary> {
  const kv = await readKvFacts(nc);
  const outcomes = await readOutcomes(nc);
  const rows = computeStatus({ now: o.now, policies: o.policies, ...kv, outcomes, timeZone: o.timeZone });
  return { ...summarize(rows, kv.chains), day: summaryDay(o.now, o.timeZone), timeZone: o.timeZone };
}

/** The part of adapters/ovirt EngineClient the summary needs. */
export interface SummaryEngine {
  readonly events: { post(e: PostEvent): Promise<unknown> };
}

export type SummaryPostStatus = "posted" | "claimed" | "duplicate" | "failed";

export interface SummaryPostResult {
  readonly engine: string;
  readonly day: string;
  readonly status: SummaryPostStatus;
  readonly error?: string;
}

/** Post `summary` to every engine that has not got it for its day yet (see the module comment). */
export async function postDailySummary(o: {
  summary: DailySummary;
  engines: ReadonlyMap<string, SummaryEngine>;
  claims: SlotClaims;
  deployment: string;
  now: Date;
}): Promise<SummaryPostResult[]> {
  const description = summaryText(o.summary);
  const out: SummaryPostResult[] = [];
  for (const [engine, client] of o.engines) {
    const day = o.summary.day;
    const key = summaryClaimKey(engine, day);
    try {
      if (await o.claims.has(key)) {
        out.push({ engine, day, status: "claimed" });
        continue;
      }
      let status: SummaryPostStatus = "posted";
      try {
        await client.events.post({ description, severity: "normal", origin: "ferry", customId: summaryCustomId(o.deployment, engine, day) });
      } catch (err) {
        if (!(err instanceof DuplicateEventError)) throw err;
        status = "duplicate";
      }
      await o.claims.claim(key, { kind: "daily-summary", engine, day, postedAt: o.now.toISOString() });
      out.push({ engine, day, status });
    } catch (err) {
      out.push({ engine, day, status: "failed", error: err instanceof Error ? err.message : String(err) });
    }
  }
  return out;
}
