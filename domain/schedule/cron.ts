/**
 * A small 5-field cron matcher: "minute hour day-of-month month day-of-week", each field `*`, a
 * number, a range `a-b`, a step `*\/n` or `a-b/n` (or `a/n` = from a to the end), and lists of
 * these. Month and weekday names (jan..dec, sun..sat) and the macros @hourly, @daily/@midnight,
 * @weekly, @monthly, @yearly/@annually are accepted too. Weekday 0 and 7 are Sunday.
 * Like Vixie cron: when both day-of-month and day-of-week are restricted (neither starts with
 * '*'), a day matches when EITHER matches; otherwise both must.
 */
import { ScheduleError } from "./errors.ts";
import type { LocalTime } from "./zoned.ts";

export interface CronExpression {
  readonly source: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 = Sunday .. 6 = Saturday (7 is folded into 0). */
  readonly daysOfWeek: ReadonlySet<number>;
  readonly domRestricted: boolean;
  readonly dowRestricted: boolean;
}

const MACROS: Record<string, string> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};
const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** Value of names[0]. */
  nameBase?: number;
}

const FIELDS: FieldSpec[] = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12, names: MONTHS, nameBase: 1 },
  { name: "day of week", min: 0, max: 7, names: DAYS, nameBase: 0 },
];

/**
 * The shape of a cron expression as a JSON Schema / ECMAScript pattern: a macro (`@daily`), or
 * five whitespace-separated fields made of digits, letters, `*`, `,`, `/` and `-`. Every
 * expression parseCron accepts matches it; values, ranges and names are checked by parseCron only
 * (contracts/config.schema.json carries this pattern, Ferry itself uses cronProblem).
 */
export const CRON_SHAPE = "^\\s*(?:@[A-Za-z]+|[0-9A-Za-z*,/-]+(?:\\s+[0-9A-Za-z*,/-]+){4})\\s*$";

/** A problem in one expression, without the expression itself (callers say where it came from). */
class CronProblem extends Error {}

/** Why `expression` is not a cron expression parseCron accepts, or undefined when it is one. */
export function cronProblem(expression: string): string | undefined {
  try {
    compile(expression);
    return undefined;
  } catch (err) {
    if (err instanceof CronProblem) return err.message;
    throw err;
  }
}

/** Parse a cron expression; throws ScheduleError SCHEDULE_BAD_CRON naming the field and the rule. */
export function parseCron(expression: string): CronExpression {
  try {
    return compile(expression);
  } catch (err) {
    if (!(err instanceof CronProblem)) throw err;
    throw new ScheduleError("SCHEDULE_BAD_CRON", `cron "${expression.trim().slice(0, 80)}": ${err.message}`);
  }
}

function compile(expression: string): CronExpression {
  const source = expression.trim();
  const expanded = MACROS[source.toLowerCase()] ?? source;
  if (expanded.startsWith("@")) {
    throw new CronProblem(`unknown macro "${expanded.slice(0, 20)}": use ${Object.keys(MACROS).join(", ")}`);
  }
  const parts = expanded === "" ? [] : expanded.split(/\s+/);
  if (parts.length !== 5) {
    throw new CronProblem(`must have 5 fields "minute hour day-of-month month day-of-week" (or a macro such as @daily), found ${parts.length}`);
  }
  const sets = parts.map((p, i) => parseField(p, FIELDS[i]!));
  const dow = new Set([...sets[4]!].map((d) => d % 7));
  return {
    source,
    minutes: sets[0]!,
    hours: sets[1]!,
    daysOfMonth: sets[2]!,
    months: sets[3]!,
    daysOfWeek: dow,
    domRestricted: !parts[2]!.startsWith("*"),
    dowRestricted: !parts[4]!.startsWith("*"),
  };
}

function parseField(field: string, spec: FieldSpec): Set<number> {
  const bad = (why: string) => new CronProblem(`${spec.name} "${field.slice(0, 40)}": ${why}`);
  const allowed = spec.names ? "numbers, names, *, ranges (1-5), lists (1,3) and steps (*/15)" : "numbers, *, ranges (1-5), lists (1,3) and steps (*/15)";
  const value = (text: string): number => {
    const lower = text.toLowerCase();
    const named = spec.names?.indexOf(lower) ?? -1;
    if (named >= 0) return named + (spec.nameBase ?? 0);
    if (!/^\d{1,2}$/.test(text)) throw bad(`use ${allowed}`);
    const n = Number(text);
    if (n < spec.min || n > spec.max) throw bad(`values must be ${spec.min}..${spec.max}`);
    return n;
  };
  const out = new Set<number>();
  for (const item of field.split(",")) {
    const m = /^([^/]+)(?:\/(\d{1,2}))?$/.exec(item);
    if (!m) throw bad(`use ${allowed}`);
    const [, range, stepText] = m;
    const step = stepText === undefined ? 1 : Number(stepText);
    if (step < 1) throw bad("step must be at least 1");
    let lo: number;
    let hi: number;
    if (range === "*") {
      lo = spec.min;
      hi = spec.max;
    } else if (range!.includes("-")) {
      const [a, b, ...rest] = range!.split("-");
      if (rest.length || !a || !b) throw bad("has a malformed range");
      lo = value(a);
      hi = value(b);
      if (lo > hi) throw bad("range start is after its end");
    } else {
      lo = value(range!);
      hi = stepText === undefined ? lo : spec.max;
    }
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

export function cronMatches(cron: CronExpression, t: LocalTime): boolean {
  if (!cron.minutes.has(t.minute) || !cron.hours.has(t.hour) || !cron.months.has(t.month)) return false;
  const dom = cron.daysOfMonth.has(t.day);
  const dow = cron.daysOfWeek.has(t.weekday % 7);
  if (cron.domRestricted && cron.dowRestricted) return dom || dow;
  return dom && dow;
}
