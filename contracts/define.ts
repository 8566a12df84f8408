/**
 * A contract is one subject's wire format: a zod schema (the single source), the TypeScript type
 * inferred from it, the JSON Schema generated from it (committed under contracts/schemas/ for
 * non-TypeScript publishers) and ajv validators compiled from that JSON Schema: `validate` as
 * written (events loose, so a newer producer does not break an older consumer), and
 * `validateOutbound` from a strict copy (no object at any level takes an undeclared field), which
 * is what Ferry checks its own events with before they go on the bus.
 */
import { z } from "zod";
import type { ValidateFunction } from "ajv/dist/2020.js";
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
  /**
   * The JSON Schema events Ferry publishes are checked with: `jsonSchema` with
   * `additionalProperties: false` on every object, so an undeclared field is refused.
   */
  readonly outboundJsonSchema: Readonly<Record<string, unknown>>;
  /** Validate a parsed JSON value as a consumer does (events: undeclared fields allowed). */
  validate(value: unknown): Validation<T>;
  /**
   * Validate a value Ferry is about to publish, against `outboundJsonSchema`: like validate(),
   * and an undeclared field at any level is an error ("mdoe: unknown field", "restorePoint.x: unknown field").
   */
  validateOutbound(value: unknown): Validation<T>;
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
  const outboundJsonSchema = deepFreeze({
    ...strictSchema(jsonSchema),
    // A second schema under the same $id would clash in ajv (and would not be the same document).
    $id: `${JSON_SCHEMA_BASE}outbound/${schemaFileName(spec.subject)}`,
  });
  const check = compileSchema(jsonSchema);
  // Compiled once, on first use: only publishers need it, and a CLI command that never
  // publishes should not pay for a second set of validators at start.
  let checkOutbound: ValidateFunction | undefined;
  const defaults = Object.freeze({ ...(spec.defaults ?? {}) }) as Readonly<D>;

  const validateWith = (fn: ValidateFunction, value: unknown): Validation<T> => {
    if (fn(value)) return { ok: true, value: value as T };
    const errors = readableErrors(fn.errors);
    return invalid(errors.length ? errors : [{ path: "", message: "is invalid" }]);
  };
  const validate = (value: unknown) => validateWith(check, value);
  const validateOutbound = (value: unknown) => validateWith((checkOutbound ??= compileSchema(outboundJsonSchema)), value);

  return Object.freeze({
    subject: spec.subject,
    kind: spec.kind,
    title: spec.title,
    description: spec.description,
    schema: spec.schema as unknown as z.ZodType<T>,
    jsonSchema,
    outboundJsonSchema,
    defaults,
    examples: deepFreeze({ valid: [...spec.examples.valid], invalid: [...spec.examples.invalid] }),
    validate,
    validateOutbound,
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

// Keywords whose value is one subschema / a list of subschemas / a map of name → subschema.
const SUBSCHEMA = ["items", "not", "if", "then", "else", "contains", "propertyNames", "unevaluatedItems", "unevaluatedProperties"];
const SUBSCHEMA_LISTS = ["anyOf", "oneOf", "allOf", "prefixItems"];
const SUBSCHEMA_MAPS = ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"];

/**
 * A copy of a JSON Schema in which every object schema refuses undeclared fields
 * (`additionalProperties: false`). An object schema that already says what its extra fields must
 * look like (a map, `additionalProperties: {type: ...}`) keeps that rule. Contracts use no
 * `allOf` of object schemas, where this would refuse the other branch's fields.
 */
export function strictSchema(schema: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (SUBSCHEMA.includes(key) && isSchemaObject(value)) out[key] = strictSchema(value);
    else if (SUBSCHEMA_LISTS.includes(key) && Array.isArray(value)) out[key] = value.map((v) => (isSchemaObject(v) ? strictSchema(v) : v));
    else if (SUBSCHEMA_MAPS.includes(key) && isSchemaObject(value)) {
      out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, isSchemaObject(v) ? strictSchema(v) : v]));
    } else out[key] = value;
  }
  const isObject = out.type === "object" || (Array.isArray(out.type) && out.type.includes("object")) || "properties" in out;
  const extra = out.additionalProperties;
  const open = extra === undefined || extra === true || (isSchemaObject(extra) && Object.keys(extra).length === 0);
  if (isObject && open) out.additionalProperties = false;
  else if (isSchemaObject(extra)) out.additionalProperties = strictSchema(extra);
  return out;
}

function isSchemaObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
