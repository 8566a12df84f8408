/**
 * Wall-clock fields of an instant in an IANA time zone, with Intl only (no tz database of our own).
 * Used by schedules (is 02:00 on a Monday due?) and by retention (which calendar day, ISO week and
 * month a restore point belongs to).
 */
import { ScheduleError } from "./errors.ts";

export interface LocalTime {
  year: number;
  /** 1-12 */
  month: number;
  /** 1-31 */
  day: number;
  /** 0-23 */
  hour: number;
  /** 0-59 */
  minute: number;
  /** ISO weekday: 1 = Monday .. 7 = Sunday */
  weekday: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const WEEKDAY: Record<string, number> = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };

/** The machine's own zone (what "local" means when no zone is configured). */
export function localTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** Why `timeZone` is not a zone Intl knows, or undefined when it is one (the config schema's check). */
export function timeZoneProblem(timeZone: string): string | undefined {
  try {
    formatter(timeZone);
    return undefined;
  } catch (err) {
    if (err instanceof ScheduleError) return err.message;
    throw err;
  }
}

/** Throws a ScheduleError unless `timeZone` is a zone Intl knows ('UTC', 'Europe/Berlin', ...). */
export function assertTimeZone(timeZone: string): string {
  formatter(timeZone);
  return timeZone;
}

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat("en-US", {
        timeZone,
        hourCycle: "h23",
        year: "numeric",
        month: "numeric",
        day: "numeric",
        hour: "numeric",
        minute: "numeric",
        weekday: "short",
      });
    } catch {
      throw new ScheduleError("SCHEDULE_BAD_TIMEZONE", `unknown time zone ${JSON.stringify(timeZone.slice(0, 64))} (use an IANA name like Europe/Berlin or UTC)`);
    }
    formatters.set(timeZone, f);
  }
  return f;
}

export function localTime(instant: Date, timeZone: string): LocalTime {
  const parts: Record<string, string> = {};
  for (const p of formatter(timeZone).formatToParts(instant)) parts[p.type] = p.value;
  return {
    year: Number(parts.year),
    month: Number(parts.month),
    day: Number(parts.day),
    hour: Number(parts.hour) % 24,
    minute: Number(parts.minute),
    weekday: WEEKDAY[parts.weekday ?? ""] ?? 0,
  };
}

/** Local wall-clock minutes since 1970-01-01 00:00 (as if the zone were UTC): orders local times. */
export function wallMinute(t: LocalTime): number {
  return Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute) / 60_000;
}

export function localDateKey(t: LocalTime): string {
  return `${t.year}-${pad(t.month)}-${pad(t.day)}`;
}

export function localMonthKey(t: LocalTime): string {
  return `${t.year}-${pad(t.month)}`;
}

/** ISO-8601 week of the local date, e.g. 2025-W05 (weeks start on Monday; week 1 holds the first Thursday). */
export function isoWeekKey(t: LocalTime): string {
  const d = new Date(Date.UTC(t.year, t.month - 1, t.day));
  const weekday = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - weekday); // the Thursday of this week decides the year
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((d.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${pad(week)}`;
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}
