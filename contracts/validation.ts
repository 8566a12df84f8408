/**
 * Validation at the bus edge: ajv compiles each contract's JSON Schema (the same document that
 * is committed under contracts/schemas/), and its errors are turned into one readable line per
 * field ("vm: required") for `<subject>.rejected` events and the CLI.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { patternMessages } from "./fields.ts";

export interface FieldError {
  /** Dotted path of the field ("vm", "layer.path", "disks.0.id"); "" for the whole message. */
  readonly path: string;
  readonly message: string;
}

export type Validation<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly errors: readonly FieldError[]; readonly reason: string };

// ajv-formats is CommonJS; under NodeNext its default import is the module object or the plugin.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ??
  addFormatsModule) as unknown as (ajv: Ajv2020) => Ajv2020;

const ajv = new Ajv2020({ allErrors: true, verbose: true, strict: true });
addFormats(ajv);

export function compileSchema(schema: object): ValidateFunction {
  return ajv.compile(schema);
}

const FORMAT_NAMES: Record<string, string> = {
  "date-time": "an ISO-8601 date-time like 2025-01-31T02:00:00Z",
};

function describeType(t: unknown): string {
  const list = Array.isArray(t) ? t : [t];
  return list.map((x) => (x === "integer" ? "an integer" : x === "object" || x === "array" ? `an ${x}` : `a ${String(x)}`)).join(" or ");
}

function describeBranches(branches: unknown): string {
  if (!Array.isArray(branches)) return "one of the allowed forms";
  return branches
    .map((b: Record<string, unknown>) =>
      "const" in b ? JSON.stringify(b.const) : Array.isArray(b.enum) ? b.enum.map((v) => JSON.stringify(v)).join(" or ") : describeType(b.type),
    )
    .join(" or ");
}

function joinPath(instancePath: string, extra?: string): string {
  const parts = instancePath.split("/").slice(1).map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  if (extra !== undefined) parts.push(extra);
  return parts.join(".");
}

function messageFor(e: ErrorObject): FieldError | undefined {
  const p = e.params as Record<string, unknown>;
  const parent = (e.parentSchema ?? {}) as Record<string, unknown>;
  const path = joinPath(e.instancePath);
  switch (e.keyword) {
    case "required":
      return { path: joinPath(e.instancePath, String(p.missingProperty)), message: "required" };
    case "additionalProperties":
      return { path: joinPath(e.instancePath, String(p.additionalProperty)), message: "unknown field" };
    case "type":
      return { path, message: `must be ${describeType(p.type)}` };
    case "minLength":
      return { path, message: p.limit === 1 ? "must not be empty" : `must be at least ${String(p.limit)} characters` };
    case "maxLength":
      return { path, message: `must be at most ${String(p.limit)} characters` };
    case "pattern": {
      const known = patternMessages.get(String(p.pattern));
      if (known) return { path, message: known };
      const format = typeof parent.format === "string" ? FORMAT_NAMES[parent.format] : undefined;
      return { path, message: format ? `must be ${format}` : `must match ${String(p.pattern)}` };
    }
    case "format":
      return { path, message: `must be ${FORMAT_NAMES[String(p.format)] ?? `a valid ${String(p.format)}`}` };
    case "enum":
      return { path, message: `must be one of: ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}` };
    case "const":
      return { path, message: `must be ${JSON.stringify(p.allowedValue)}` };
    case "minimum":
    case "exclusiveMinimum":
    case "maximum":
    case "exclusiveMaximum":
      return { path, message: `must be ${String(p.comparison)} ${String(p.limit)}` };
    case "minItems":
      return { path, message: `must have at least ${String(p.limit)} item(s)` };
    case "maxItems":
      return { path, message: `must have at most ${String(p.limit)} items` };
    case "anyOf":
    case "oneOf":
      return { path, message: `must be ${describeBranches(e.schema)}` };
    case "allOf":
    case "if":
    case "not":
      return undefined;
    default:
      return { path, message: e.message ?? "is invalid" };
  }
}

/** ajv errors → one message per field, most useful first (required/unknown before shape). */
export function readableErrors(errors: readonly ErrorObject[] | null | undefined): FieldError[] {
  const all = (errors ?? [])
    .map((e) => ({ keyword: e.keyword, error: messageFor(e) }))
    .sort((a, b) => priority(a.keyword) - priority(b.keyword));
  const out: FieldError[] = [];
  const seen = new Set<string>();
  for (const { keyword, error } of all) {
    if (!error) continue;
    if (keyword === "anyOf" || keyword === "oneOf") continue;
    if (seen.has(error.path)) continue; // first problem per field is enough to fix it
    seen.add(error.path);
    out.push(error);
  }
  // For anyOf (checkpoint: integer | "latest") one branch's complaint misleads; name all branches.
  for (const { keyword, error } of all) {
    if (!error || (keyword !== "anyOf" && keyword !== "oneOf")) continue;
    const idx = out.findIndex((e) => e.path === error.path);
    if (idx >= 0) out[idx] = error;
    else out.push(error);
  }
  return out;
}

// When one field breaks several rules, say the most basic one: "must not be empty" before a pattern.
const PRIORITY = ["required", "additionalProperties", "type", "minLength", "maxLength", "enum", "const"];
function priority(keyword: string): number {
  const i = PRIORITY.indexOf(keyword);
  return i < 0 ? PRIORITY.length : i;
}

export function reasonOf(errors: readonly FieldError[]): string {
  return errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message)).join("; ");
}
