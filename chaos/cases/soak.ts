/**
 * The soak (issue 11): simulated nights — guest writes, then a backup of every VM — with faults
 * struck at random moments, chosen by the seeded PRNG; after each night every invariant must
 * hold. Bounded: 6 VMs × 3 nights (the issue's 40 VMs take far longer than a few minutes on
 * this 2-core box), two faults a night. Reports the `ferry run` processes' RSS at start and after
 * each night. For a memory-growth check, FERRY_SOAK_NIGHTS / FERRY_SOAK_VMS / FERRY_SOAK_FAULTS
 * (e.g. 15 nights, no faults: no restart resets the measure) make it longer.
 */
import type { CaseContext, ChaosCase } from "../case.ts";
import { clean, settle } from "../invariants.ts";
import { outcomeText, rssKiB, sleep } from "../steps.ts";
import { MiB, type World } from "../world.ts";

const fromEnv = (name: string, fallback: number): number => {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v >= 0 ? v : fallback;
};
const VMS = Math.max(1, fromEnv("FERRY_SOAK_VMS", 6));
const NIGHTS = Math.max(1, fromEnv("FERRY_SOAK_NIGHTS", 3));
const FAULTS_A_NIGHT = fromEnv("FERRY_SOAK_FAULTS", 2);

interface Fault {
  readonly name: string;
  /** May return a note (e.g. the new process's RSS). */
  strike(w: World): Promise<unknown>;
}

const FAULTS: readonly Fault[] = [
  {
    name: "engine answers 503 for 10 s",
    async strike(w) {
      w.prd().control.faults.httpErrors(503, 1_000_000);
      await sleep(10_000);
      w.prd().control.faults.clear();
    },
  },
  { name: "imageio drops a connection after 1 MiB", strike: async (w) => w.prd().control.faults.dropConnectionAfter(1 * MiB) },
  { name: "the next download transfer fails", strike: async (w) => w.prd().control.faults.failNextTransfer("transferring", "download") },
  { name: "every open transfer's ticket expires", strike: (w) => w.prd().control.faults.expireTicket() },
  { name: "imageio stalls 10 s", strike: async (w) => w.prd().control.faults.stallImageio(10_000) },
  {
    name: "ferry run SIGKILLed and restarted",
    async strike(w) {
      await w.d.killFunctions("SIGKILL");
      const p = await w.d.startFunctions();
      // The leak measure starts again with the new process.
      return `new pid ${p.pid}, RSS at start ${(((await rssKiB(p.pid)) ?? 0) / 1024).toFixed(1)} MiB`;
    },
  },
  {
    name: "nats-server SIGKILLed, restarted after 3 s",
    async strike(w) {
      await w.d.nats[0]!.kill9();
      await sleep(3000);
      await w.d.nats[0]!.start();
    },
  },
];

const pick = <T>(ctx: CaseContext, xs: readonly T[]): T => xs[Math.floor(ctx.random() * xs.length)]!;

/** RSS of every live `ferry run` process, e.g. "pid 123: 98.1 MiB". */
async function rss(w: World): Promise<string[]> {
  const out: string[] = [];
  for (const f of w.d.functions) {
    const kib = await rssKiB(f.pid);
    if (kib !== undefined) out.push(`pid ${f.pid}: ${(kib / 1024).toFixed(1)} MiB`);
  }
  return out;
}

export const soak: ChaosCase = {
  name: "soak",
  summary: `${NIGHTS} simulated nights of ${VMS} VMs (keepLast 2), ${FAULTS_A_NIGHT} faults a night chosen and timed by the seeded PRNG; every invariant holds after each night; ferry run RSS at start and end`,
  world: { vms: Array.from({ length: VMS }, (_, i) => ({ name: `sk${String(i + 1).padStart(2, "0")}`, size: 32 * MiB, data: 4 * MiB, retention: { keepLast: 2 } })) },
  settleMs: 360_000,
  async run(w, ctx) {
    const notes = [`ferry run RSS at start: ${(await rss(w)).join(", ")}`];
    const problems: string[] = [];
    const all: string[] = [];
    let faultAt = performance.now();
    for (let night = 1; night <= NIGHTS; night++) {
      for (const [i, vm] of Object.values(w.vms).entries()) {
        await w.prd().control.writeGuestData(vm.diskId, { offset: Math.floor(ctx.random() * 24) * MiB, length: 1 * MiB, seed: night * 100 + i });
      }
      const ids: string[] = [];
      for (const name of Object.keys(w.vms)) ids.push(await w.d.request(name));
      all.push(...ids);
      const struck: string[] = [];
      for (let k = 0; k < FAULTS_A_NIGHT; k++) {
        await sleep(Math.floor(ctx.random() * 15_000));
        const f = pick(ctx, FAULTS);
        // Recovery is measured from the last fault struck.
        faultAt = performance.now();
        const note = await f.strike(w);
        struck.push(typeof note === "string" ? `${f.name} (${note})` : f.name);
      }
      const outs = await Promise.all(ids.map((id) => w.d.outcome(id, 600_000)));
      w.prd().control.faults.clear();
      const { findings } = await settle(w, { requests: ids }, 360_000);
      const violations = [...findings.problems, ...Object.entries(findings.leftovers).map(([k, v]) => `${k}: ${v.join("; ")}`)];
      problems.push(...violations.map((v) => `night ${night}: ${v}`));
      notes.push(`night ${night}: ${struck.join(", ") || "no faults"} → ${outs.map(outcomeText).join(", ")}; ${clean(findings) ? "invariants hold" : `${violations.length} violation(s)`}; RSS ${(await rss(w)).join(", ")}`);
    }
    notes.push(`ferry run RSS at end: ${(await rss(w)).join(", ")} (${w.d.functions.length} process(es) started in all)`);
    return { expect: { requests: all }, faultAt, outcome: `${all.length} backups over ${NIGHTS} nights, ${problems.length} invariant violation(s)`, problems, notes };
  },
};
