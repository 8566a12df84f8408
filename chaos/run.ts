/**
 * `npm run -s chaos [-- --only a,b] [--list] [--seed N]`: each case in its own world (real
 * nats-server(s), the lab, `ferry run` processes), a fault injected into running work, and the
 * invariants of chaos/invariants.ts checked until they hold. Prints ONE JSON document on stdout;
 * progress goes to stderr. Exit 0 when every case survived, 1 otherwise, 2 for bad flags.
 */
import { parseArgs } from "node:util";
import { caseContext, runCase, type CaseResult } from "./case.ts";
import { CASES } from "./registry.ts";

async function main(): Promise<number> {
  let values: { only?: string | undefined; list?: boolean | undefined; seed?: string | undefined };
  try {
    ({ values } = parseArgs({ options: { only: { type: "string" }, list: { type: "boolean" }, seed: { type: "string" } } }));
  } catch (err) {
    process.stderr.write(`chaos: ${(err as Error).message}\nUsage: npm run -s chaos -- [--only NAME,...] [--list] [--seed N]\n`);
    return 2;
  }
  if (values.list) {
    process.stdout.write(`${JSON.stringify({ cases: CASES.map((c) => ({ name: c.name, summary: c.summary, quick: c.quick ?? false })) }, null, 2)}\n`);
    return 0;
  }
  const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
  if (!Number.isInteger(seed)) {
    process.stderr.write("chaos: --seed must be an integer\n");
    return 2;
  }
  const only = values.only?.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = only?.filter((n) => !CASES.some((c) => c.name === n)) ?? [];
  if (unknown.length) {
    process.stderr.write(`chaos: unknown case(s) ${unknown.join(", ")} (see --list)\n`);
    return 2;
  }
  const chosen = only ? CASES.filter((c) => only.includes(c.name)) : CASES;
  const started = performance.now();
  const results: CaseResult[] = [];
  for (const [i, c] of chosen.entries()) {
    process.stderr.write(`[chaos] ${c.name}: ${c.summary}\n`);
    const r = await runCase(c, caseContext(seed + i));
    process.stderr.write(`[chaos] ${c.name}: ${r.survived ? "survived" : "FAILED"} (recovery ${r.secondsToRecover ?? "-"} s, ${r.seconds} s)${r.notes.length ? `\n  ${r.notes.join("\n  ")}` : ""}${r.survived ? "" : `\n  outcome: ${r.outcome}; leftovers: ${JSON.stringify(r.leftovers)}`}\n`);
    results.push(r);
  }
  const report = {
    chaos: "ferry",
    time: new Date().toISOString(),
    seed,
    cases: results,
    survived: results.filter((r) => r.survived).length,
    failed: results.filter((r) => !r.survived).map((r) => r.name),
    totalSeconds: Math.round((performance.now() - started) / 100) / 10,
  };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  reported = true;
  return report.failed.length ? 1 : 0;
}

// A case awaiting something that can no longer happen (no timer, no socket left) drains the
// event loop: that must be a failure, never a silent exit 0 without the report.
let reported = false;
process.on("beforeExit", () => {
  if (reported) return;
  process.stderr.write("[chaos] the event loop drained before the report: a case awaited something that can never happen\n");
  process.exit(1);
});

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`[chaos] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
