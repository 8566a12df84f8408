/**
 * A short subset of `npm run chaos` in the test run: the quick cases (duplicates, garbage, forged
 * events), each in its own world of real parts through the same runner modules, must survive.
 * The whole suite (nats-server kills, SIGKILLed workers, engine outages, ...) is `npm run -s chaos`.
 */
import { describe, expect, it } from "vitest";
import { caseContext, runCase } from "../chaos/case.ts";
import { CASES } from "../chaos/registry.ts";

const quick = CASES.filter((c) => c.quick);

// Each case has its own world (servers, lab, processes): they run side by side.
describe.concurrent("chaos subset (npm run chaos, quick cases)", () => {
  it("the quick cases are there", () => {
    expect(quick.map((c) => c.name).sort()).toEqual(["duplicates", "forged-events", "garbage"]);
  });

  for (const c of quick) {
    it(`chaos - ${c.name}: ${c.summary}`, async () => {
      const r = await runCase(c, caseContext(20261202));
      expect(r.survived, JSON.stringify(r, null, 2)).toBe(true);
      expect(Object.values(r.terminalEvents).every((t) => t.length === 1), JSON.stringify(r.terminalEvents)).toBe(true);
      expect(r.secondsToRecover).not.toBeNull();
    }, 240_000);
  }
});
