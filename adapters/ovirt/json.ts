/**
 * The engine's JSON conventions (ovirt-api.md §1.2), as zod building blocks:
 * integers and booleans usually arrive as strings, dates as epoch milliseconds, an empty
 * collection as `{}`, and collections (top level or nested) wrapped in `{"<singular>": [...]}`.
 * Every block accepts both the string and the native form and outputs real JS values.
 */
import { z } from "zod";

const INT_TEXT = /^-?\d+$/;

/** An integer sent as a JSON number or a decimal string. Values beyond 2^53 lose precision (only `exp` gets there). */
export const int = z.union([z.number().int(), z.string().regex(INT_TEXT, "expected an integer").transform(Number)]);

/** A boolean sent as true/false, "true"/"false" (any case) or, for old clients, 0/1. */
export const bool = z.union([
  z.boolean(),
  z
    .string()
    .regex(/^(true|false|0|1)$/i, "expected a boolean")
    .transform((s) => s.toLowerCase() === "true" || s === "1"),
  z.union([z.literal(0), z.literal(1)]).transform((n) => n === 1),
]);

/** A date: epoch milliseconds (number or numeric string); ISO text is accepted too (the XML form). */
export const date = z.union([
  z.number().transform((ms) => new Date(ms)),
  z.string().transform((s, ctx) => {
    const d = INT_TEXT.test(s) ? new Date(Number(s)) : new Date(s);
    if (Number.isNaN(d.getTime())) {
      ctx.issues.push({ code: "custom", message: "expected epoch milliseconds or an ISO date", input: s });
      return z.NEVER;
    }
    return d;
  }),
]);

/** A link to another entity. */
export const ref = z.object({ id: z.string(), href: z.string().optional() });
export type Ref = z.output<typeof ref>;

/**
 * Unwraps `{"<key>": [...]}` or `{}` to an array. A bare array is accepted too. An object that
 * holds some other array (a wrong key) is left alone, so validation fails instead of reading
 * a wrongly keyed answer as "empty".
 */
function unwrap(key: string) {
  return (value: unknown): unknown => {
    if (value === null || value === undefined || Array.isArray(value)) return value ?? [];
    if (typeof value !== "object") return value;
    const o = value as Record<string, unknown>;
    if (key in o) return o[key] ?? [];
    const hasOtherArray = Object.values(o).some((v) => Array.isArray(v));
    return hasOtherArray ? value : [];
  };
}

/** A collection, top level or nested: `{"disk": [...]}`, `{}` or `[...]` → an array of items. */
export function collection<T extends z.ZodType>(key: string, item: T) {
  return z.preprocess(unwrap(key), z.array(item));
}

/** An action's answer (`{"status": "complete"}`, maybe with a job). */
export const actionResult = z.object({ status: z.string().optional(), job: ref.optional() });
