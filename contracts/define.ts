/**
 * A contract is one subject's wire format: a zod schema (the single source), the TypeScript type
 * inferred from it, the JSON Schema generated from it (committed under contracts/schemas/ for
 * non-TypeScript publishers) and an ajv validator compiled from that JSON Schema.
 */
import { z } from "zod";
import { compileSchema, readableErrors, reasonOf, type FieldError, type Validation } from "./validation.ts";

export type { FieldError, Validation } from "./validation.ts";

export interface ContractSpec<S extends z.ZodType, D extends Partial<z.infer<S>>> {
  /** NATS subject (for `<subject>.rejected`, the pattern with a `<subject>` placeholder). */
  readonly subject: string;
  /** 'command' (typed by hand, envelope optional, unknown fields rejected) or 'event'. */
  readonly kind: "command" | "event";
  readonly title: string;
  readonly description: string;
  readonly schema: S;
  /** Defaults for optional fields, applied by withDefaults() and documented in the field's description. */
  readonly defaults?: D;
  readonly examples: { readonly valid: readonly unknown[]; readonly invalid: readonly unknown[] };
}

export interface Contract<T, D extends Partial<T> = Partial<T>> {
  readonly subject: string;
  readonly kind: "command" | "event";
  readonly title: string;
  readonly description: string;
  readonly schema: z.ZodType<T>;
  readonly jsonSchema: Readonly<Record<string, unknown>>;
  readonly defaults: Readonly<D>;
  readonly examples: { readonly valid: readonly unknown[]; readonly invalid: readonly unknown[] };
  /** Validate a parsed JSON value. */
  validate(value: unknown): Validation<T>;
  /** Parse JSON text or bytes, then validate. `not json` → reason "not valid JSON: ...". */
  validateText(text: string | Uint8Array): Validation<T>;
  /** The value with every documented default filled in. */
  withDefaults(value: T): T & Required<Pick<T, keyof D & keyof T>>;
}

export type Infer<C> = C extends Contract<infer T, infer _D> ? T : never;

export const JSON_SCHEMA_BASE = "https://ferry.dev/schemas/";

export function defineContract<S extends z.ZodType, D extends Partial<z.infer<S>> = Record<never, never>>(
  spec: ContractSpec<S, D>,
): Contract<z.infer<S>, D> {
  type T = z.infer<S>;
  const generated = z.toJSONSchema(spec.schema, { target: "draft-2020-12", io: "input" }) as Record<string, unknown>;
  const { $schema, ...body } = generated;
  const jsonSchema = deepFreeze({
    $schema,
    $id: `${JSON_SCHEMA_BASE}${schemaFileName(spec.subject)}`,
    title: spec.title,
    description: spec.description,
    ...body,
  });
  const check = compileSchema(jsonSchema);
  const defaults = Object.freeze({ ...(spec.defaults ?? {}) }) as Readonly<D>;

  const validate = (value: unknown): Validation<T> => {
    if (check(value)) return { ok: true, value: value as T };
    const errors = readableErrors(check.errors);
    return invalid(errors.length ? errors : [{ path: "", message: "is invalid" }]);
  };

  return Object.freeze({
    subject: spec.subject,
    kind: spec.kind,
    title: spec.title,
    description: spec.description,
    schema: spec.schema as unknown as z.ZodType<T>,
    jsonSchema,
    defaults,
    examples: deepFreeze({ valid: [...spec.examples.valid], invalid: [...spec.examples.invalid] }),
    validate,
    validateText(text: string | Uint8Array): Validation<T> {
      const str = typeof text === "string" ? text : new TextDecoder("utf-8", { fatal: false }).decode(text);
      let parsed: unknown;
      try {
        parsed = JSON.parse(str);
      } catch (err) {
        return invalid([{ path: "", message: `not valid JSON (${jsonErrorText(err)})` }]);
      }
      return validate(parsed);
    },
    withDefaults(value: T) {
      const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
      for (const [k, v] of Object.entries(defaults)) if (out[k] === undefined) out[k] = v;
      return out as T & Required<Pick<T, keyof D & keyof T>>;
    },
  });
}

function invalid(errors: FieldError[]): { ok: false; errors: readonly FieldError[]; reason: string } {
  return { ok: false, errors: Object.freeze(errors), reason: reasonOf(errors) };
}

// V8's message quotes the input ("Unexpected token 'o', "not json" is not valid JSON"); keep
// only the part before the quoted payload so a reason never echoes a long or secret input.
function jsonErrorText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const cut = msg.indexOf(', "');
  return (cut > 0 ? msg.slice(0, cut) : msg).slice(0, 120);
}

/** contracts/schemas/<file>: `backup.requested` → `backup.requested.json`, `<subject>.rejected` → `rejected.json`. */
export function schemaFileName(subject: string): string {
  return `${subject.replace(/^<subject>\./, "")}.json`;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
