/**
 * Which restore points a retention policy keeps. Every rule is optional; a point is kept when any
 * rule keeps it; then maxAgeDays removes what is older; the newest point is always kept. A policy
 * with no keep rule keeps everything (only maxAgeDays, if set, removes).
 *
 * Rule definitions (the same as restic / borg "keep-*"):
 * - keepLast N:    the N newest restore points.
 * - keepDays D:    every restore point taken in the last D × 24 h (time >= now - D days).
 * - keepDaily N:   for each of the N most recent calendar days that have a restore point, the newest of that day.
 * - keepWeekly N:  the same per ISO week (Monday to Sunday).
 * - keepMonthly N: the same per calendar month.
 * - maxAgeDays A:  nothing older than A × 24 h is kept (except the newest point).
 * Days, weeks and months are those of `timeZone` (the config's timeZone, passed by chain-updated;
 * default UTC for direct callers).
 */
import { z } from "zod";
import { isoWeekKey, localDateKey, localMonthKey, localTime } from "../schedule/zoned.ts";

const count = z.number().int().nonnegative();

export const retentionPolicySchema = z.object({
  keepLast: count.optional(),
  keepDays: z.number().nonnegative().optional(),
  keepDaily: count.optional(),
  keepWeekly: count.optional(),
  keepMonthly: count.optional(),
  maxAgeDays: z.number().positive().optional(),
});
export type RetentionPolicy = z.infer<typeof retentionPolicySchema>;

export interface DatedPoint {
  id: string;
  time: string;
}

export interface KeepDecision {
  /** Kept points with the rules that keep them, e.g. ['daily 2025-01-31', 'last 3']. */
  keep: Map<string, string[]>;
  /** Removed points with the reason. */
  remove: Map<string, string>;
}

const DAY_MS = 86_400_000;

export function hasKeepRule(p: RetentionPolicy): boolean {
  return [p.keepLast, p.keepDays, p.keepDaily, p.keepWeekly, p.keepMonthly].some((v) => v !== undefined);
}

/** Decide per restore point. `points` may be in any order; ties in time are broken by input order. */
export function selectKept(points: readonly DatedPoint[], policy: RetentionPolicy, now: Date, timeZone = "UTC"): KeepDecision {
  const newestFirst = points
    .map((p, i) => ({ ...p, i, ms: Date.parse(p.time) }))
    .sort((a, b) => b.ms - a.ms || b.i - a.i);
  const keep = new Map<string, string[]>();
  const add = (id: string, why: string) => keep.set(id, [...(keep.get(id) ?? []), why]);

  if (!hasKeepRule(policy)) for (const p of newestFirst) add(p.id, "no keep rule");
  if (policy.keepLast) newestFirst.slice(0, policy.keepLast).forEach((p, i) => add(p.id, `last ${i + 1}`));
  if (policy.keepDays !== undefined) {
    const since = now.getTime() - policy.keepDays * DAY_MS;
    for (const p of newestFirst) if (p.ms >= since) add(p.id, `within ${policy.keepDays} days`);
  }
  const buckets = (n: number | undefined, label: string, key: (ms: number) => string) => {
    if (!n) return;
    const seen = new Set<string>();
    for (const p of newestFirst) {
      const k = key(p.ms);
      if (seen.has(k)) continue;
      if (seen.size >= n) break;
      seen.add(k);
      add(p.id, `${label} ${k}`);
    }
  };
  const local = (ms: number) => localTime(new Date(ms), timeZone);
  buckets(policy.keepDaily, "daily", (ms) => localDateKey(local(ms)));
  buckets(policy.keepWeekly, "weekly", (ms) => isoWeekKey(local(ms)));
  buckets(policy.keepMonthly, "monthly", (ms) => localMonthKey(local(ms)));

  const remove = new Map<string, string>();
  if (policy.maxAgeDays !== undefined) {
    const oldest = now.getTime() - policy.maxAgeDays * DAY_MS;
    for (const p of newestFirst) {
      if (p.ms < oldest && keep.has(p.id)) {
        keep.delete(p.id);
        remove.set(p.id, `older than max age ${policy.maxAgeDays} days`);
      }
    }
  }
  const newest = newestFirst[0];
  if (newest && !keep.has(newest.id)) {
    remove.delete(newest.id);
    add(newest.id, "newest");
  }
  for (const p of newestFirst) if (!keep.has(p.id) && !remove.has(p.id)) remove.set(p.id, "not kept by any rule");
  return { keep, remove };
}
