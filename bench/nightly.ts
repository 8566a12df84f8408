/**
 * The nightly window benchmark: N VMs × 2 disks (default 100) backed up through the real pipeline
 * (runtime, NATS, the lab engine with its simulated delays + imageio, dataplane, store), once per
 * concurrency.backupsPerEngine of 1, 2 and 4, each on a fresh pipeline. backup-requested runs in
 * its own process (test/fixtures/backup-worker.ts: the real function over the real wiring, with
 * `backupsPerEngine` backups at once under the engine slots); disk-transferred and chain-updated run
 * in this process beside the lab. Per window: total wall time, throughput, the control overhead
 * per VM beyond the lab's simulated delays (goal ≤ 0.3 s), peak RSS of the worker process.
 *
 * Control overhead of one VM = (its backup.completed − the moment it took its engine slot, from the
 * KV ferry-slots record) − the seconds its disks spent moving bytes − the lab's simulated delays of
 * one backup (2 × backupPhaseMs + backupFinalizeMs + per disk transferInitMs + transferFinalizeMs).
 * What is left: engine calls and phase polls (pollMs 100 here; production polls every 1 s), the
 * lab's real work (snapshot, imageio checksum), KV, events, disk-transferred and chain-updated.
 *
 * A bench/run.ts section (`runNightly()`; sizes scale with FERRY_BENCH_SCALE, the VM count does not).
 * Standalone: `npx tsx bench/nightly.ts [vms] [limits, e.g. 1,2,4]` (FERRY_NIGHTLY_STALL_S: report
 * the pipeline state after that long without a new outcome, default 60).
 */
import { readFile, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { BenchContext } from "./context.ts";
import { startPipeline, type Pipeline } from "../test/backup-support.ts";
import { startWorkerProcess } from "../test/harness/worker-process.ts";
import { FERRY_NODE_FLAGS } from "../cli/node-flags.ts";
import { DEFAULT_TIMINGS } from "../lab/engine/engine.ts";
import { buckets, streams } from "../infra/streams/mod.ts";
import type { SlotRecord } from "../pipeline/engine-slots.ts";

export const name = "nightly";

const WORKER = fileURLToPath(new URL("../test/fixtures/backup-worker.ts", import.meta.url));
const OVERHEAD_GOAL_S = 0.3;

export async function run(ctx: Pick<BenchContext, "config" | "log">): Promise<Record<string, unknown>> {
  return runNightly({ scale: ctx.config.scale, log: ctx.log });
}

export interface NightlyOptions {
  readonly vms?: number;
  readonly disksPerVm?: number;
  /** Sizes × scale (default 1: 64 MiB disks with 4 MiB of guest data each). */
  readonly scale?: number;
  /** concurrency.backupsPerEngine values, one window each (default 1, 2, 4). */
  readonly limits?: readonly number[];
  /** No new outcome for this long → the pipeline state goes to `onStall` (default stderr). 0: off. */
  readonly stallMs?: number;
  readonly onStall?: (report: Record<string, unknown>) => void;
  readonly log?: (msg: string) => void;
}

/** Every window, the comparison between them and the goals. */
export async function runNightly(o: NightlyOptions = {}): Promise<Record<string, unknown>> {
  const scale = o.scale ?? 1;
  const vms = o.vms ?? 100;
  const disksPerVm = o.disksPerVm ?? 2;
  const diskMiB = Math.max(8, Math.round(64 * scale));
  const dataMiB = Math.max(1, Math.round(4 * scale));
  const limits = o.limits ?? [1, 2, 4];
  const log = o.log ?? ((m: string) => process.stderr.write(`[nightly] ${m}\n`));
  const windows: WindowResult[] = [];
  for (const limit of limits) {
    log(`${vms} VMs x ${disksPerVm} disks (${diskMiB} MiB, ${dataMiB} MiB data each), backupsPerEngine ${limit}`);
    const w = await runWindow({ vms, disksPerVm, diskMiB, dataMiB, backupsPerEngine: limit, stallMs: o.stallMs, onStall: o.onStall });
    log(`backupsPerEngine ${limit}: ${w.totalSeconds} s, overhead p50 ${w.controlOverheadSeconds.p50} s, load ${w.loadAverage.join(" ")}: ${JSON.stringify(w)}`);
    windows.push(w);
  }
  const base = windows.find((w) => w.backupsPerEngine === 1);
  return {
    name: "nightly",
    vms,
    disksPerVm,
    diskMiB,
    dataMiBPerDisk: dataMiB,
    simulatedDelaySecondsPerVm: simulatedDelaySeconds(disksPerVm),
    windows,
    speedupOverOne: base ? Object.fromEntries(windows.map((w) => [String(w.backupsPerEngine), Math.round((base.totalSeconds / w.totalSeconds) * 100) / 100])) : undefined,
    targets: {
      // The window shrinks with more backups at once.
      fasterThanOne: base ? Object.fromEntries(windows.filter((w) => w !== base).map((w) => [String(w.backupsPerEngine), w.totalSeconds < base.totalSeconds])) : undefined,
      controlOverheadGoalSeconds: OVERHEAD_GOAL_S,
      controlOverheadMedianMet: Object.fromEntries(windows.map((w) => [String(w.backupsPerEngine), w.controlOverheadSeconds.p50 <= OVERHEAD_GOAL_S])),
      limitHeld: Object.fromEntries(windows.map((w) => [String(w.backupsPerEngine), w.peakOpenEngineBackups <= w.backupsPerEngine && w.peakSlotHolders <= w.backupsPerEngine])),
      allCompleted: windows.every((w) => w.failed === 0 && w.ok === vms),
    },
  };
}

export interface WindowOptions {
  readonly vms: number;
  readonly disksPerVm: number;
  readonly diskMiB: number;
  readonly dataMiB: number;
  readonly backupsPerEngine: number;
  readonly stallMs?: number | undefined;
  readonly onStall?: ((report: Record<string, unknown>) => void) | undefined;
}

export interface WindowResult {
  backupsPerEngine: number;
  ok: number;
  failed: number;
  failures: string[];
  /** First request to last outcome. */
  totalSeconds: number;
  /** Per VM: slot taken → backup.completed, minus moving bytes, minus the lab's simulated delays. */
  controlOverheadSeconds: { mean: number; p50: number; p90: number; max: number };
  /**
   * Per VM: the time the lab engine itself spent in its phases (backup POST → ready, finalize →
   * gone; per transfer: created → transferring, finalizing → gone), as observed every 25 ms. Beyond
   * the configured delays this is the lab's real work (snapshot, point-in-time copies via qemu).
   */
  labEngineSeconds: { mean: number; p50: number; p90: number; max: number };
  /** Per VM: slot taken → backup.completed, minus moving bytes, minus labEngineSeconds: Ferry's own control time. */
  controlOverheadBeyondLabSeconds: { mean: number; p50: number; p90: number; max: number };
  /** Per VM: slot taken → backup.completed. */
  vmSeconds: { mean: number; p50: number; p90: number; max: number };
  /** Per VM: request published → slot taken (the queue of the window). */
  slotWaitSeconds: { mean: number; p50: number; p90: number; max: number };
  /** Per VM, by step: slot taken → last disk.transferred (backup-requested), → chain.updated (disk-transferred), → backup.completed (chain-updated, retention). */
  stepSeconds: Record<"backupRequested" | "diskTransferred" | "chainUpdated", { mean: number; p50: number; p90: number; max: number }>;
  dataMiB: number;
  /** Data bytes / total wall time (what the night sees). */
  throughputMiBps: number;
  vmsPerMinute: number;
  /** Most engine backups open at once on the lab engine, and most holders of its slots (KV). */
  peakOpenEngineBackups: number;
  peakSlotHolders: number;
  /** The backup-requested process (VmHWM), and this process (lab + disk-transferred + chain-updated; cumulative over windows). */
  workerPeakRssMiB: number;
  workerRssMiB: { idle: number; end: number };
  benchProcessPeakRssMiB: number;
  /** CPU seconds of the worker process over the window. */
  workerCpuSeconds: number;
  loadAverage: number[];
}

/** The lab's simulated delays in one backup of `disks` disks (DEFAULT_TIMINGS). */
function simulatedDelaySeconds(disks: number): number {
  const t = DEFAULT_TIMINGS;
  return (2 * t.backupPhaseMs + t.backupFinalizeMs + disks * (t.transferInitMs + t.transferFinalizeMs)) / 1000;
}

/**
 * When the lab's backups and transfers were first seen in each phase, and when they were gone
 * (finished), from control.status() polls: the engine's own share of a VM's backup.
 */
class PhaseClock {
  readonly #seen = new Map<string, { key: string; phases: Map<string, number>; gone?: number }>();
  #open = new Set<string>();

  observe(st: { openBackups: { id: string; vmId: string; phase: string }[]; openTransfers: { id: string; diskId: string; phase: string }[] }, now: number): void {
    const open = new Set<string>();
    const see = (id: string, key: string, phase: string) => {
      open.add(id);
      let e = this.#seen.get(id);
      if (!e) this.#seen.set(id, (e = { key, phases: new Map() }));
      if (!e.phases.has(phase)) e.phases.set(phase, now);
    };
    for (const b of st.openBackups) see(b.id, `vm:${b.vmId}`, b.phase);
    for (const t of st.openTransfers) see(t.id, `disk:${t.diskId}`, t.phase);
    for (const id of this.#open) if (!open.has(id)) this.#seen.get(id)!.gone = now;
    this.#open = open;
  }

  /** Seconds the engine spent in its own phases for this VM's backup; undefined when not fully seen. */
  labSeconds(vmId: string, diskIds: readonly string[]): number | undefined {
    let ms = 0;
    const keys = new Set([`vm:${vmId}`, ...diskIds.map((d) => `disk:${d}`)]);
    for (const e of this.#seen.values()) {
      if (!keys.has(e.key)) continue;
      const first = Math.min(...e.phases.values());
      const ready = e.key.startsWith("vm:") ? e.phases.get("ready") : e.phases.get("transferring");
      const closing = [...e.phases.entries()].filter(([p]) => p.startsWith("finaliz")).map(([, t]) => t);
      if (ready === undefined || e.gone === undefined || closing.length === 0) return undefined;
      ms += ready - first + (e.gone - Math.min(...closing));
    }
    return ms / 1000;
  }
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const r = (n: number) => Math.round(n * 1000) / 1000;
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(s.length * q))] ?? 0;
  return { mean: r(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)), p50: r(at(0.5)), p90: r(at(0.9)), max: r(s.at(-1) ?? 0) };
};

/** /proc/<pid>/stat: utime + stime in seconds; /proc/<pid>/status: VmHWM and VmRSS in MiB. */
async function procUsage(pid: number): Promise<{ cpuSeconds: number; peakRssMiB: number; rssMiB: number }> {
  const stat = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
  const ticks = Number(stat[11]) + Number(stat[12]);
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const mib = (field: string) => Math.round(Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024);
  return { cpuSeconds: ticks / 100, peakRssMiB: mib("VmHWM"), rssMiB: mib("VmRSS") };
}

export async function runWindow(o: WindowOptions): Promise<WindowResult> {
  const p = await startPipeline({ backupWorker: false, logLevel: "warn", ackWaitMs: 60_000, settings: { slotLimits: { backupsPerEngine: o.backupsPerEngine } } });
  const children: ChildProcess[] = [];
  try {
    const control = p.lab.engines.prd!.control;
    const names: string[] = [];
    const diskIdsOf = new Map<string, string[]>();
    for (let i = 0; i < o.vms; i++) {
      const name = `bench${String(i).padStart(3, "0")}`;
      const vm = await control.createVm({ name, disks: Array.from({ length: o.disksPerVm }, (_, d) => ({ alias: `${name}_d${d}`, size: o.diskMiB * 1048576 })) });
      diskIdsOf.set(vm.id, vm.disks.map((d: { id: string }) => d.id));
      for (const d of vm.disks) await control.writeGuestData(d.id, { offset: 0, length: o.dataMiB * 1048576, pattern: 0x5a + (i % 64) });
      names.push(name);
    }
    // The worker: the real backup-requested function, `backupsPerEngine` backups at once.
    const cfg = JSON.parse(await readFile(p.workerConfigFile, "utf8")) as { policy: Record<string, unknown> };
    const file = join(p.dir, "nightly-worker.json");
    await writeFile(file, JSON.stringify({ ...cfg, policy: { ...cfg.policy, concurrency: o.backupsPerEngine } }), { mode: 0o600 });
    // With Ferry's V8 flags (cli/node-flags.ts), as `ferry run` starts.
    const worker = await startWorkerProcess(WORKER, file, children, FERRY_NODE_FLAGS);
    const before = await procUsage(worker.pid!);
    const cpuBefore = before.cpuSeconds;

    // When each run took its engine slot (KV ferry-slots), and the most holders at once.
    const slotTakenAt = new Map<string, number>();
    let peakSlotHolders = 0;
    const watch = await (await new Kvm(p.nc).open(buckets.slots)).watch({ key: "engine.prd" });
    void (async () => {
      for await (const e of watch) {
        if (e.operation !== "PUT") continue;
        const r = e.json<SlotRecord>();
        peakSlotHolders = Math.max(peakSlotHolders, r.holders.length);
        for (const h of r.holders) if (!slotTakenAt.has(h.runId)) slotTakenAt.set(h.runId, Date.parse(h.since));
      }
    })();
    let peakOpen = 0;
    const phases = new PhaseClock();
    const poll = setInterval(() => {
      const st = control.status();
      peakOpen = Math.max(peakOpen, st.openBackups.length);
      phases.observe(st, Date.now());
    }, 25);
    // When each step's event of each run went out (the last disk.transferred: backup-requested is done).
    const completedAt = new Map<string, number>();
    const transferredAt = new Map<string, number>();
    const chainAt = new Map<string, number>();
    const at: Record<string, Map<string, number>> = { "backup.completed": completedAt, "disk.transferred": transferredAt, "chain.updated": chainAt };
    const sub = p.nc.subscribe("*.*", { callback: (_e, m) => void at[m.subject]?.set(String(m.json<{ correlationId: string }>().correlationId), Date.now()) });

    const started = Date.now();
    const requestedAt = new Map<string, number>();
    const ids: string[] = [];
    for (const n of names) {
      const id = await p.request(n, { mode: "full" });
      requestedAt.set(id, Date.now());
      ids.push(id);
    }
    const stop = watchStalls(p, ids, names, o.stallMs ?? 60_000, o.onStall ?? ((r) => process.stderr.write(`[nightly] stalled: ${JSON.stringify(r, null, 2)}\n`)));
    const outcomes = await Promise.all(ids.map((id) => p.outcome(id, 30 * 60_000))).finally(stop);
    const totalSeconds = (Math.max(...outcomes.map((x, i) => completedAt.get(ids[i]!) ?? Date.now())) - started) / 1000;
    const usage = await procUsage(worker.pid!);
    clearInterval(poll);
    watch.stop();
    sub.unsubscribe();

    const floor = simulatedDelaySeconds(o.disksPerVm);
    const overhead: number[] = [];
    const overheadBeyondLab: number[] = [];
    const labSeconds: number[] = [];
    const wall: number[] = [];
    const waits: number[] = [];
    const steps = { backup: [] as number[], record: [] as number[], retention: [] as number[] };
    let bytes = 0;
    outcomes.forEach((x, i) => {
      const id = ids[i]!;
      if (x.subject !== "backup.completed") return;
      const t = x.disks.map((d) => (d.transfer as { bytes: number; seconds: number } | undefined) ?? { bytes: 0, seconds: 0 });
      bytes += t.reduce((a, b) => a + b.bytes, 0);
      const took = slotTakenAt.get(id);
      const done = completedAt.get(id);
      if (took === undefined || done === undefined) return;
      const seconds = (done - took) / 1000;
      wall.push(seconds);
      waits.push((took - requestedAt.get(id)!) / 1000);
      const tr = transferredAt.get(id);
      const ch = chainAt.get(id);
      if (tr !== undefined && ch !== undefined) {
        steps.backup.push((tr - took) / 1000);
        steps.record.push((ch - tr) / 1000);
        steps.retention.push((done - ch) / 1000);
      }
      overhead.push(Math.max(0, seconds - t.reduce((a, b) => a + b.seconds, 0) - floor));
      const lab = phases.labSeconds(String(x.event.vmId), diskIdsOf.get(String(x.event.vmId)) ?? []);
      if (lab !== undefined) {
        labSeconds.push(lab);
        overheadBeyondLab.push(seconds - t.reduce((a, b) => a + b.seconds, 0) - lab);
      }
    });
    const ok = outcomes.filter((x) => x.subject === "backup.completed");
    const mib = bytes / 1048576;
    return {
      backupsPerEngine: o.backupsPerEngine,
      ok: ok.length,
      failed: outcomes.length - ok.length,
      failures: outcomes.filter((x) => x.subject !== "backup.completed").map((x) => `${String(x.event.vm)}: ${String(x.event.code)}`).slice(0, 10),
      totalSeconds: Math.round(totalSeconds * 1000) / 1000,
      controlOverheadSeconds: stats(overhead),
      labEngineSeconds: stats(labSeconds),
      controlOverheadBeyondLabSeconds: stats(overheadBeyondLab),
      vmSeconds: stats(wall),
      slotWaitSeconds: stats(waits),
      stepSeconds: { backupRequested: stats(steps.backup), diskTransferred: stats(steps.record), chainUpdated: stats(steps.retention) },
      dataMiB: Math.round(mib * 10) / 10,
      throughputMiBps: Math.round((mib / totalSeconds) * 10) / 10,
      vmsPerMinute: Math.round((ok.length / totalSeconds) * 60 * 10) / 10,
      peakOpenEngineBackups: peakOpen,
      peakSlotHolders,
      workerPeakRssMiB: usage.peakRssMiB,
      // Before the first request (started, connected, idle) and after the last outcome.
      workerRssMiB: { idle: before.rssMiB, end: usage.rssMiB },
      benchProcessPeakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      workerCpuSeconds: Math.round((usage.cpuSeconds - cpuBefore) * 10) / 10,
      loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
    };
  } finally {
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      await exited;
    }
    await p.stop();
  }
}

const isOutcome = (s: { subject: string }) => s.subject === "backup.completed" || s.subject === "backup.failed";

/** Calls `report` with the pipeline's state whenever no outcome arrived for `stallMs`; returns the stop. */
function watchStalls(p: Pipeline, ids: string[], names: string[], stallMs: number, report: (r: Record<string, unknown>) => void): () => void {
  if (!(stallMs > 0)) return () => undefined;
  let count = -1;
  let since = performance.now();
  let busy = false;
  const timer = setInterval(() => {
    const n = p.seen.filter(isOutcome).length;
    if (n !== count) {
      count = n;
      since = performance.now();
      return;
    }
    if (busy || performance.now() - since < stallMs) return;
    busy = true;
    since = performance.now(); // next report after another stallMs
    pipelineState(p, ids, names)
      .then(report, (err: unknown) => report({ error: String(err) }))
      .finally(() => (busy = false));
  }, 1000);
  timer.unref();
  return () => clearInterval(timer);
}

/** What a stalled run looks like: runs without an outcome, consumers, KV runs/leases, lab phases. */
export async function pipelineState(p: Pipeline, ids: string[], names: string[]): Promise<Record<string, unknown>> {
  const missing = ids.flatMap((id, i) => (p.seen.some((s) => isOutcome(s) && s.event.correlationId === id) ? [] : [{ id, vm: names[i] }]));
  const jsm = await jetstreamManager(p.nc);
  const consumers: Record<string, unknown>[] = [];
  for (const stream of [streams.commands.name, streams.events.name]) {
    for (const c of await jsm.consumers.list(stream).next()) {
      consumers.push({
        stream, name: c.name, num_pending: c.num_pending, num_ack_pending: c.num_ack_pending, num_redelivered: c.num_redelivered,
        num_waiting: c.num_waiting, delivered: c.delivered.stream_seq, ack_floor: c.ack_floor.stream_seq,
      });
    }
  }
  const kvm = new Kvm(p.nc);
  const kvDump = async (bucket: string) => {
    const kv = await kvm.open(bucket);
    const out: Record<string, unknown> = {};
    for await (const k of await kv.keys()) {
      const e = await kv.get(k);
      if (e && e.operation === "PUT") out[k] = e.json();
    }
    return out;
  };
  const runs = Object.values(await kvDump(buckets.runs)).map((r) => {
    const x = r as Record<string, unknown> & { vm?: { name?: string }; transfers?: { state: string }[]; disks?: { state: string }[] };
    return { run: x.runId, vm: x.vm?.name, phase: x.phase, attempt: x.attempt, backupClosed: x.backupClosed, transfers: x.transfers?.map((t) => t.state), disks: x.disks?.map((d) => d.state), error: x.error, updatedAt: x.updatedAt };
  });
  const missingRuns = new Set(missing.map((m) => m.id));
  const control = p.lab.engines.prd!.control;
  const status = control.status();
  const stats = await p.nc.request("$SRV.STATS.ferry", "", { timeout: 2000 }).then((m) => m.json<Record<string, unknown>>(), (err: unknown) => ({ error: String(err) }));
  return {
    outcomes: p.seen.filter(isOutcome).length,
    of: ids.length,
    missing,
    eventsOfMissing: p.seen.filter((s) => missingRuns.has(String(s.event.correlationId)) && s.subject !== "transfer.progress").map((s) => ({ subject: s.subject, id: s.event.id })),
    consumers,
    runsNotFinal: runs.filter((r) => missingRuns.has(String(r.run)) || (r.phase !== "transferred" && r.phase !== "failed")),
    leases: await kvDump(buckets.leases),
    lab: { openBackups: status.openBackups, openTransfers: status.openTransfers, backgroundErrors: control.backgroundErrors() },
    service: stats,
    activeResources: process.getActiveResourcesInfo().reduce<Record<string, number>>((a, r) => ((a[r] = (a[r] ?? 0) + 1), a), {}),
    lastLogLines: p.logLines.slice(-30),
  };
}

// `npx tsx bench/nightly.ts [vms] [limits]` runs it alone and prints the JSON.
if (import.meta.url === `file://${process.argv[1]}`) {
  const vms = process.argv[2] ? Number(process.argv[2]) : undefined;
  const limits = process.argv[3] ? process.argv[3].split(",").map(Number) : undefined;
  // FERRY_NIGHTLY_STALL_S: report the pipeline state after this long without an outcome (default 60).
  const stall = process.env.FERRY_NIGHTLY_STALL_S ? Number(process.env.FERRY_NIGHTLY_STALL_S) * 1000 : undefined;
  const scale = process.env.FERRY_BENCH_SCALE ? Number(process.env.FERRY_BENCH_SCALE) : undefined;
  console.log(JSON.stringify(await runNightly({ ...(vms ? { vms } : {}), ...(limits ? { limits } : {}), ...(stall !== undefined ? { stallMs: stall } : {}), ...(scale ? { scale } : {}) }), null, 2));
}
