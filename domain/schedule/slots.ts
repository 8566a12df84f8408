/**
 * When is a VM due? A schedule is a weekday mask + time of day ("1111100" = Monday to Friday,
 * "02:00") or a cron expression, read in a time zone. `dueSlots(schedule, from, to)` lists the
 * instants in (from, to] at which a backup is due; `slotKey(vm, slot)` names one such slot so
 * that two schedulers publishing the same slot publish the same message id.
 *
 * Daylight saving time: minutes are walked in real (UTC) time and read as local wall-clock time.
 * - When the clock jumps forward over a due time (02:30 does not exist that night), the slot is
 *   due at the first real minute after the jump (as Vixie cron does), so a nightly backup is not
 *   skipped once a year.
 * - When the clock falls back and a wall time repeats, only its first occurrence is due, so a
 *   nightly backup does not run twice.
 */
import { createHash } from "node:crypto";
import { cronMatches, parseCron, type CronExpression } from "./cron.ts";
import { ScheduleError } from "./errors.ts";
import { assertTimeZone, localTime, wallMinute, type LocalTime } from "./zoned.ts";

export type Schedule = { days: string; time: string } | { cron: string };

/** A weekday mask: 7 characters of 0/1, Monday first ("1111100" = Monday to Friday). */
export const DAYS_MASK = /^[01]{7}$/;
/** A time of day "HH:MM", 24 hours. */
export const TIME_OF_DAY = /^([01]\d|2[0-3]):([0-5]\d)$/;

export interface CompiledSchedule {
  readonly description: string;
  matches(t: LocalTime): boolean;
}

const MINUTE = 60_000;

export function compileSchedule(schedule: Schedule): CompiledSchedule {
  if ("cron" in schedule) {
    const cron: CronExpression = parseCron(schedule.cron);
    return { description: `cron "${cron.source}"`, matches: (t) => cronMatches(cron, t) };
  }
  const { days, time } = schedule;
  if (!DAYS_MASK.test(days)) {
    throw new ScheduleError("SCHEDULE_BAD_MASK", `weekday mask "${String(days).slice(0, 20)}" must be 7 characters of 0 and 1, Monday first (e.g. "1111100")`);
  }
  const m = TIME_OF_DAY.exec(time);
  if (!m) throw new ScheduleError("SCHEDULE_BAD_TIME", `time "${String(time).slice(0, 20)}" must be "HH:MM" (24 hours, e.g. "02:00")`);
  const hour = Number(m[1]);
  const minute = Number(m[2]);
  return {
    description: `days ${days} at ${time}`,
    matches: (t) => t.hour === hour && t.minute === minute && days[t.weekday - 1] === "1",
  };
}

/** Wall-clock fields of a wall minute number (see wallMinute). */
function wallFields(w: number): LocalTime {
  const d = new Date(w * MINUTE);
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    weekday: d.getUTCDay() || 7,
  };
}

export interface SlotOptions {
  /** IANA zone the schedule is written in. Default: the machine's zone. */
  timeZone?: string;
  /** Refuse windows longer than this (a typo in --since should not walk years of minutes). Default 8 days. */
  maxWindowMs?: number;
}

/** Due instants in (from, to], oldest first, each on a whole minute. */
export function dueSlots(schedule: Schedule | CompiledSchedule, from: Date, to: Date, o: SlotOptions = {}): Date[] {
  const compiled = "matches" in schedule ? schedule : compileSchedule(schedule);
  const zone = assertTimeZone(o.timeZone ?? Intl.DateTimeFormat().resolvedOptions().timeZone);
  const maxWindow = o.maxWindowMs ?? 8 * 86_400_000;
  if (!(to.getTime() > from.getTime())) return [];
  if (to.getTime() - from.getTime() > maxWindow) {
    throw new ScheduleError("SCHEDULE_WINDOW_TOO_LONG", `schedule window ${from.toISOString()}..${to.toISOString()} is longer than ${Math.round(maxWindow / 3_600_000)} hours`);
  }
  const first = Math.floor(from.getTime() / MINUTE) * MINUTE + MINUTE;
  // The highest wall time already seen: look back two hours, the largest DST shift in use.
  let maxWall = -Infinity;
  for (let t = first - 121 * MINUTE; t < first; t += MINUTE) maxWall = Math.max(maxWall, wallMinute(localTime(new Date(t), zone)));
  let prevWall = wallMinute(localTime(new Date(first - MINUTE), zone));
  const out: Date[] = [];
  for (let t = first; t <= to.getTime(); t += MINUTE) {
    const w = wallMinute(localTime(new Date(t), zone));
    let due = false;
    if (w > maxWall) {
      // Normally w = prevWall + 1; after a jump forward, every skipped wall minute counts here.
      for (let x = Math.max(prevWall, maxWall) + 1; x <= w && !due; x++) due = compiled.matches(wallFields(x));
    }
    if (due) out.push(new Date(t));
    maxWall = Math.max(maxWall, w);
    prevWall = w;
  }
  return out;
}

/** `2025-01-31T02:00:00Z`: a slot as it appears in keys and messages. */
export function slotIso(slot: Date): string {
  return slot.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * The de-duplication key of one VM's slot, `<vm>:<slotISO>`: the Nats-Msg-Id (and event id) of
 * the backup.requested published for it. JetStream drops a second publish within the stream's
 * duplicate window; `slotClaimKey` covers re-runs older than that window (see schedule README).
 */
export function slotKey(vm: string, slot: Date): string {
  const key = `${vm}:${slotIso(slot)}`;
  if (key.length <= 255) return key;
  return `${createHash("sha256").update(vm).digest("hex").slice(0, 40)}:${slotIso(slot)}`;
}

/** A KV key for the claim of a slot (KV keys allow only [-/_=.A-Za-z0-9], no empty tokens). */
export function slotClaimKey(vm: string, slot: Date): string {
  const name = Buffer.from(vm, "utf8").toString("base64url");
  return `slot.${name}.${slotIso(slot).replace(/[-:]/g, "")}`;
}
