/**
 * A chaos case and the runner of one: start its world, let it inject its fault into running
 * work, wait until every invariant holds (chaos/invariants.ts), optionally prove the system
 * still works with one more backup, and always tear the world down.
 */
import { clean, settle, type Expectation, type Findings } from "./invariants.ts";
import { startWorld, type World, type WorldOptions } from "./world.ts";

export interface CaseContext {
  readonly seed: number;
  /** Deterministic pseudo-random numbers from --seed (mulberry32). */
  random(): number;
}

export interface CaseRun {
  readonly expect: Expectation;
  /** performance.now() when the fault was injected: recovery is measured from here. */
  readonly faultAt: number;
  /** What happened, in a few words (e.g. the terminal subjects). */
  readonly outcome?: string;
  /** Case-specific invariant failures (e.g. "chain changed"); empty when they held. */
  readonly problems?: string[];
  readonly notes?: string[];
  /** Case-specific checks once everything settled (e.g. "the chain is unchanged"); returns problems. */
  readonly after?: () => Promise<string[]>;
  /** Skip `ferry verify` of every point (a case that corrupts a point on purpose checks its own). */
  readonly skipVerify?: boolean;
}

export interface ChaosCase {
  readonly name: string;
  readonly summary: string;
  /** Quick enough for test/chaos-subset.test.ts. */
  readonly quick?: boolean;
  readonly world?: Omit<WorldOptions, "name">;
  /** After recovery, one more backup of this VM must complete (the system still works). */
  readonly followUp?: string;
  /** How long recovery may take (default 240 s). */
  readonly settleMs?: number;
  run(w: World, ctx: CaseContext): Promise<CaseRun>;
}

export interface CaseResult {
  name: string;
  survived: boolean;
  outcome: string;
  terminalEvents: Record<string, string[]>;
  leftovers: Record<string, string[]>;
  secondsToRecover: number | null;
  seconds: number;
  notes: string[];
}

export function caseContext(seed: number): CaseContext {
  let a = seed >>> 0;
  return {
    seed,
    random() {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}

const round1 = (n: number) => Math.round(n * 10) / 10;

export async function runCase(c: ChaosCase, ctx: CaseContext): Promise<CaseResult> {
  const started = performance.now();
  let world: World | undefined;
  const notes: string[] = [];
  try {
    world = await startWorld({ name: c.name, ...c.world });
    const r = await c.run(world, ctx);
    notes.push(...(r.notes ?? []));
    const { findings, settledAt } = await settleWith(world, r, c.settleMs ?? 240_000);
    const problems = [...findings.problems, ...(r.problems ?? []), ...((await r.after?.()) ?? [])];
    let followUp = "";
    if (c.followUp && clean(findings)) {
      const id = await world.d.request(c.followUp, { id: `followup-${Math.random().toString(36).slice(2, 8)}` });
      const out = await world.d.outcome(id, 180_000).catch((err: unknown) => ({ subject: `none (${(err as Error).message})`, event: {} }));
      followUp = `; follow-up backup ${out.subject}`;
      if (out.subject !== "backup.completed") problems.push(`follow-up backup of ${c.followUp}: ${out.subject} ${String((out.event as { code?: unknown }).code ?? "")}`);
    }
    notes.push(...problems);
    // A clean stop is noted (not an invariant of the issue): `ferry run` should end within its grace.
    await Promise.all(world.deployments.map((d) => d.killFunctions("SIGTERM")));
    notes.push(...world.deployments.flatMap((d) => d.stuck));
    const survived = problems.length === 0 && Object.keys(findings.leftovers).length === 0;
    if (!survived) notes.push(...logTail(world));
    return {
      name: c.name,
      survived,
      outcome: `${r.outcome ?? summarize(findings)}${followUp}`,
      terminalEvents: findings.terminalEvents,
      leftovers: findings.leftovers,
      secondsToRecover: clean(findings) ? round1((settledAt - r.faultAt) / 1000) : null,
      seconds: round1((performance.now() - started) / 1000),
      notes,
    };
  } catch (err) {
    notes.push(`case error: ${err instanceof Error ? err.message : String(err)}`);
    if (world) notes.push(...logTail(world));
    return { name: c.name, survived: false, outcome: "error", terminalEvents: {}, leftovers: {}, secondsToRecover: null, seconds: round1((performance.now() - started) / 1000), notes };
  } finally {
    // `notes` is the returned result's own list: a cleanup that failed or hung is reported there.
    if (world) notes.push(...(await world.stop()));
  }
}

async function settleWith(w: World, r: CaseRun, timeoutMs: number): Promise<{ findings: Findings; settledAt: number }> {
  const s = await settle(w, r.expect, timeoutMs);
  if (!r.skipVerify) return s;
  // The case checked its own points: drop only verify's problems.
  return { ...s, findings: { ...s.findings, problems: s.findings.problems.filter((p) => !p.startsWith("verify ")) } };
}

/** The last warnings and errors the `ferry run` processes logged: why a case failed, from Ferry's side. */
function logTail(w: World, n = 6): string[] {
  const lines = w.deployments.flatMap((d) => d.functions.flatMap((f) => f.logs)).filter((l) => Number(l.level ?? 0) >= 40 || l.$raw !== undefined);
  return lines.slice(-n).map((l) => `log: ${JSON.stringify({ msg: l.msg ?? l.$raw, fn: l.function, code: l.code, err: (l.err as { message?: string } | undefined)?.message }).slice(0, 300)}`);
}

function summarize(f: Findings): string {
  const all = Object.values(f.terminalEvents).flat();
  return all.length ? all.join(", ") : "no terminal events";
}
