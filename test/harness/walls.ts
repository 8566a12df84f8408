/**
 * The architecture's walls as checks over source text (used by test/architecture.test.ts).
 *
 * Each check takes files as `{ path, text }` (path relative to the repo root, with "/") and
 * returns the violations it finds, so the test can run it over small in-memory fixtures (to show
 * it catches what it should) and over the real tree. The checks read text, not an AST: simple,
 * fast, and good enough for code written in this repo's style. Known blind spots: an import
 * specifier built at run time (`import(someVariable)`), and a regex applied to fault text
 * through a variable whose name does not say what it holds.
 *
 *   a. functions-wall    functions/<a>/ imports nothing under functions/<b>/ (a ≠ b), except
 *                        functions/runtime/.
 *   b. adapters-wall     adapters/ imports nothing under config/, dataplane/, functions/,
 *                        pipeline/, cli/ or lab/.
 *   c. pipeline-wall     pipeline/ imports no function folder; functions/runtime/ only with
 *                        `import type` / `export type`.
 *   d. engine-fault-text no regex over engine fault text under functions/ or pipeline/, and no
 *                        `.detail` at all there: engine outcomes are typed errors decided in
 *                        adapters/ovirt and matched with instanceof.
 *   e. ingress-wall      ingress/ (the hook endpoint) imports contracts/, adapters/, config/ and
 *                        domain/, nothing under functions/, pipeline/, dataplane/, cli/ or lab/:
 *                        the command wires the bus publisher and the logger in.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

export interface SourceFile {
  /** Relative to the repo root, "/"-separated, e.g. "functions/backup-requested/handler.ts". */
  path: string;
  text: string;
}

export interface Violation {
  rule: "functions-wall" | "adapters-wall" | "pipeline-wall" | "engine-fault-text" | "ingress-wall" | "chaos-wall" | "console-wall";
  file: string;
  line: number;
  /** What was found: the import specifier and where it leads, or the offending line. */
  found: string;
}

export interface ImportRef {
  line: number;
  specifier: string;
  /** Repo-relative target of a relative specifier; undefined for packages and node: modules. */
  target: string | undefined;
  /** `import type ... from` / `export type ... from`. */
  typeOnly: boolean;
}

const SOURCE_EXT = /\.(?:ts|mts|cts|js|mjs|cjs)$/;

/** Every source file under the given top-level folders of `root` (node_modules skipped). */
export function readTree(root: string, dirs: string[]): SourceFile[] {
  const out: SourceFile[] = [];
  const walk = (rel: string) => {
    let entries;
    try {
      entries = readdirSync(path.join(root, rel), { withFileTypes: true });
    } catch {
      return; // a folder that does not exist has nothing to check
    }
    for (const e of entries) {
      const child = `${rel}/${e.name}`;
      if (e.isDirectory()) {
        if (e.name !== "node_modules" && !e.name.startsWith(".")) walk(child);
      } else if (e.isFile() && SOURCE_EXT.test(e.name)) {
        out.push({ path: child, text: readFileSync(path.join(root, child), "utf8") });
      }
    }
  };
  for (const d of dirs) walk(d);
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * Blank out comments that start a line (`// ...`, and `/* ... *\/` blocks opened at the start of
 * a line, which covers doc comments), keeping line numbers. Comments after code are left alone:
 * telling them apart from `//` inside a string needs a tokenizer, and they rarely hold imports.
 */
export function stripLineComments(text: string): string {
  const blanked = text.replace(/^[ \t]*\/\*[\s\S]*?\*\//gm, (m) => m.replace(/[^\n]/g, " "));
  return blanked.replace(/^[ \t]*\/\/.*$/gm, (m) => " ".repeat(m.length));
}

function lineAt(text: string, index: number): number {
  let n = 1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) n++;
  return n;
}

function resolveSpecifier(fromFile: string, specifier: string): string | undefined {
  if (!specifier.startsWith("./") && !specifier.startsWith("../")) return undefined;
  return path.posix.normalize(path.posix.join(path.posix.dirname(fromFile), specifier));
}

/** Static imports and re-exports (also multi-line), side-effect imports, dynamic import() and require(). */
export function importsOf(file: SourceFile): ImportRef[] {
  const text = stripLineComments(file.text);
  const refs: ImportRef[] = [];
  const add = (index: number, specifier: string, typeOnly: boolean) =>
    refs.push({ line: lineAt(text, index), specifier, target: resolveSpecifier(file.path, specifier), typeOnly });
  // import x from "…" / import { a, b } from "…" / import type … / export { … } from "…" / export * from "…"
  // The clause may span lines but holds only names, braces, commas and "*": no quotes or parens.
  const fromClause = /^[ \t]*(import|export)(\s+type)?\b[\w\s{},*$]*?\bfrom\s*(["'])([^"'\n]+)\3/gm;
  for (const m of text.matchAll(fromClause)) add(m.index + m[0].indexOf(m[1]!), m[4]!, m[2] !== undefined);
  // import "…" (side effects only)
  for (const m of text.matchAll(/^[ \t]*import\s*(["'])([^"'\n]+)\1/gm)) add(m.index + m[0].indexOf("import"), m[2]!, false);
  // import("…"), also as a type: import("…").Name; require("…")
  for (const m of text.matchAll(/\b(?:import|require)\s*\(\s*(["'`])([^"'`\n$]+)\1\s*\)/g)) add(m.index, m[2]!, false);
  return refs.sort((a, b) => a.line - b.line);
}

function under(p: string | undefined, dir: string): boolean {
  return p !== undefined && (p === dir || p.startsWith(`${dir}/`));
}

/** functions/<name>/... → name; undefined for anything else (including files directly in functions/). */
function functionFolder(p: string | undefined): string | undefined {
  const m = p === undefined ? null : /^functions\/([^/]+)\/./.exec(p);
  return m?.[1];
}

function describeImport(r: ImportRef): string {
  return `imports "${r.specifier}" (${r.target})`;
}

/** a. No file under functions/<a>/ imports anything under functions/<b>/ for a ≠ b, except functions/runtime/. */
export function checkFunctionWalls(files: SourceFile[]): Violation[] {
  const out: Violation[] = [];
  for (const f of files) {
    const own = functionFolder(f.path);
    if (!own) continue;
    for (const r of importsOf(f)) {
      const other = functionFolder(r.target);
      if (other && other !== own && other !== "runtime") {
        out.push({ rule: "functions-wall", file: f.path, line: r.line, found: describeImport(r) });
      }
    }
  }
  return out;
}

export const ADAPTERS_MUST_NOT_IMPORT = ["config", "dataplane", "functions", "pipeline", "cli", "lab"] as const;

/** b. No file under adapters/ imports config/, dataplane/, functions/, pipeline/, cli/ or lab/. */
export function checkAdapterWalls(files: SourceFile[]): Violation[] {
  const out: Violation[] = [];
  for (const f of files) {
    if (!under(f.path, "adapters")) continue;
    for (const r of importsOf(f)) {
      if (ADAPTERS_MUST_NOT_IMPORT.some((d) => under(r.target, d))) {
        out.push({ rule: "adapters-wall", file: f.path, line: r.line, found: describeImport(r) });
      }
    }
  }
  return out;
}

/** c. pipeline/ imports no function folder; functions/runtime/ only type-only. */
export function checkPipelineWalls(files: SourceFile[]): Violation[] {
  const out: Violation[] = [];
  for (const f of files) {
    if (!under(f.path, "pipeline")) continue;
    for (const r of importsOf(f)) {
      if (!under(r.target, "functions")) continue;
      if (under(r.target, "functions/runtime") && r.typeOnly) continue;
      const why = under(r.target, "functions/runtime") ? " (functions/runtime is allowed for `import type` only)" : "";
      out.push({ rule: "pipeline-wall", file: f.path, line: r.line, found: describeImport(r) + why });
    }
  }
  return out;
}

/** A regex being applied on this line: /re/.test( /re/.exec( x.match(/re/ x.replace(/re/ … new RegExp( RE_NAME.test( */
const REGEX_USE: RegExp[] = [
  /\/(?![/*])(?:\\.|\[(?:\\.|[^\]\\\n])*\]|[^/\\\n[])+\/[dgimsuvy]*\s*\.\s*(?:test|exec)\s*\(/,
  /\.\s*(?:match|matchAll|replace|replaceAll|search|split)\s*\(\s*\//,
  /\bRegExp\s*\(/,
  /\b[A-Z][A-Z0-9_]*\s*\.\s*(?:test|exec)\s*\(/,
];
/** Engine fault text: an error's detail, reason or message, or a helper that extracts them (engineDetail(…)). */
const FAULT_TEXT = /\bdetail\b|\breason\b|\.message\b|\b\w*(?:[Dd]etail|[Rr]eason|[Mm]essage|[Ff]ault[Tt]ext)\w*\s*\(/;
/** Reading an engine fault's detail at all: x.detail, x["detail"], "detail" in x, { detail } = x, engineDetail(x). */
const DETAIL_ACCESS: RegExp[] = [
  /\.\s*detail\b/,
  /\[\s*["'`]detail["'`]\s*\]/,
  /["'`]detail["'`]\s+in\b/,
  /\{[^{}]*\bdetail\b[^{}]*\}\s*=(?!=|>)/,
  /\b\w*[Dd]etail\s*\(/,
];

function openParens(s: string): number {
  let n = 0;
  for (const c of s) {
    if (c === "(") n++;
    else if (c === ")") n--;
  }
  return n;
}

/** d. Under functions/ and pipeline/: no regex over engine fault text, and no `.detail`. */
export function checkEngineFaultText(files: SourceFile[]): Violation[] {
  const out: Violation[] = [];
  for (const f of files) {
    if (!under(f.path, "functions") && !under(f.path, "pipeline")) continue;
    const lines = stripLineComments(f.text).split("\n");
    lines.forEach((line, i) => {
      const what: string[] = [];
      if (DETAIL_ACCESS.some((re) => re.test(line))) what.push("reads an engine fault's detail");
      if (REGEX_USE.some((re) => re.test(line))) {
        // The call may continue on the next lines: read on until its parentheses close (at most 5 lines).
        let statement = line;
        for (let j = i + 1; j < lines.length && j <= i + 5 && openParens(statement) > 0; j++) statement += `\n${lines[j]}`;
        if (FAULT_TEXT.test(statement)) what.push("applies a regex to engine fault text");
      }
      if (what.length) out.push({ rule: "engine-fault-text", file: f.path, line: i + 1, found: `${what.join(", ")}: ${line.trim()}` });
    });
  }
  return out;
}

export function checkAllWalls(files: SourceFile[]): Violation[] {
  return [...checkFunctionWalls(files), ...checkAdapterWalls(files), ...checkPipelineWalls(files), ...checkEngineFaultText(files), ...checkIngressWalls(files)];
}

export const INGRESS_MUST_NOT_IMPORT = ["functions", "pipeline", "dataplane", "cli", "lab"] as const;

/** e. No file under ingress/ imports functions/, pipeline/, dataplane/, cli/ or lab/. */
export function checkIngressWalls(files: SourceFile[]): Violation[] {
  const out: Violation[] = [];
  for (const f of files) {
    if (!under(f.path, "ingress")) continue;
    for (const r of importsOf(f)) {
      if (INGRESS_MUST_NOT_IMPORT.some((d) => under(r.target, d))) {
        out.push({ rule: "ingress-wall", file: f.path, line: r.line, found: describeImport(r) });
      }
    }
  }
  return out;
}

/**
 * f. The chaos suite (chaos/) drives Ferry from outside — `ferry` processes, the bus, the lab:
 * it imports no function folder, and nothing Ferry runs in production imports chaos/.
 */
export const CHAOS_MUST_NOT_BE_IMPORTED_BY = ["functions", "pipeline", "adapters", "dataplane", "domain", "contracts", "config", "cli", "ingress", "lab"] as const;

export function checkChaosWalls(files: SourceFile[]): Violation[] {
  const out: Violation[] = [];
  for (const f of files) {
    for (const r of importsOf(f)) {
      const intoChaos = under(r.target, "chaos") && CHAOS_MUST_NOT_BE_IMPORTED_BY.some((d) => under(f.path, d));
      const intoFunction = under(f.path, "chaos") && under(r.target, "functions");
      if (intoChaos || intoFunction) out.push({ rule: "chaos-wall", file: f.path, line: r.line, found: describeImport(r) });
    }
  }
  return out;
}

/** One line per violation: "file:line  [rule] found". */
export function formatViolations(vs: Violation[]): string {
  return vs.map((v) => `${v.file}:${v.line}  [${v.rule}] ${v.found}`).join("\n");
}

/**
 * g. The web console (console/) is a reader and a command publisher: it imports contracts/,
 * config/, adapters/, domain/, infra/ and only the read-side modules of pipeline/ below (the
 * restore preflight, replica and trust records); never a function, the CLI, the lab, the data
 * plane, ingress/ or chaos/.
 */
export const CONSOLE_MUST_NOT_IMPORT = ["functions", "cli", "lab", "dataplane", "ingress", "chaos"] as const;
export const CONSOLE_PIPELINE_READ_SIDE = ["pipeline/restore-plan.ts", "pipeline/restore-engine.ts", "pipeline/replica.ts", "pipeline/trust.ts", "pipeline/cert-status.ts", "pipeline/chain-view.ts", "pipeline/run-journal.ts", "pipeline/vm-lease.ts"] as const;

export function checkConsoleWalls(files: SourceFile[]): Violation[] {
  const out: Violation[] = [];
  for (const f of files) {
    if (!under(f.path, "console")) continue;
    for (const r of importsOf(f)) {
      const forbidden = CONSOLE_MUST_NOT_IMPORT.some((d) => under(r.target, d));
      const writeSide = under(r.target, "pipeline") && !r.typeOnly && !CONSOLE_PIPELINE_READ_SIDE.some((m) => r.target === m);
      if (forbidden || writeSide) out.push({ rule: "console-wall", file: f.path, line: r.line, found: describeImport(r) + (writeSide ? " (not a read-side pipeline module)" : "") });
    }
  }
  return out;
}
