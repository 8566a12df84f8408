/**
 * Finding functions: every folder under a functions directory with a main.ts (except runtime/)
 * is a function; its main.ts default-exports a FunctionFactory. `ferry run all` runs them all.
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { PermanentError } from "../../contracts/errors.ts";
import type { FunctionContext, FunctionDefinition, FunctionFactory } from "./types.ts";

export interface FoundFunction {
  readonly name: string;
  readonly main: string;
}

export async function discoverFunctions(dir: string): Promise<FoundFunction[]> {
  const found: FoundFunction[] = [];
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.isDirectory() || entry.name === "runtime" || entry.name.startsWith(".")) continue;
    const main = join(dir, entry.name, "main.ts");
    if (await stat(main).then((s) => s.isFile(), () => false)) found.push({ name: entry.name, main });
  }
  return found;
}

export class UnknownFunctionError extends PermanentError {
  constructor(message: string, names: readonly string[]) {
    super("UNKNOWN_FUNCTION", message, { names });
  }
}

/** Pick functions by name (or "all"); unknown names are an error listing what exists. */
export function selectFunctions(found: readonly FoundFunction[], names: readonly string[]): FoundFunction[] {
  if (names.length === 0) throw new UnknownFunctionError("name at least one function, or 'all'", []);
  if (names.includes("all")) return [...found];
  const unknown = names.filter((n) => !found.some((f) => f.name === n));
  if (unknown.length) {
    throw new UnknownFunctionError(`unknown function(s): ${unknown.join(", ")}; available: ${found.map((f) => f.name).join(", ") || "(none)"}`, unknown);
  }
  return names.map((n) => found.find((f) => f.name === n) as FoundFunction);
}

export async function loadFunction(fn: FoundFunction, ctx: FunctionContext): Promise<FunctionDefinition> {
  const mod = (await import(pathToFileURL(fn.main).href)) as { default?: FunctionFactory };
  if (typeof mod.default !== "function") throw new Error(`${fn.main} must default-export a FunctionFactory`);
  const def = await mod.default(ctx);
  if (def.name !== fn.name) throw new Error(`${fn.main} defines function '${def.name}', but its folder is '${fn.name}' (they must match)`);
  return def;
}
