/**
 * The nightly run benchmark: N VMs × 2 disks backed up through the real pipeline (runtime, NATS,
 * lab engine + imageio, dataplane, store) with 2 backups at a time. Reports total time, the
 * control overhead per VM (everything but moving bytes: engine calls, phase waits, checksums,
 * KV, events) and the data throughput.
 *
 * A bench/run.ts section: `import * as nightly from "./nightly.ts"` and add `nightly` to SECTIONS
 * (it uses only ctx.config.scale and ctx.log; sizes scale with FERRY_BENCH_SCALE, the VM count does not).
 * Standalone: `npx tsx bench/nightly.ts [vms]` (FERRY_NIGHTLY_STALL_S: report the pipeline state after that
 * long without a new outcome, default 60).
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { BenchContext } from "./context.ts";
import { startPipeline, type Pipeline } from "../test/backup-support.ts";
import { buckets, streams } from "../infra/streams/mod.ts";

export const name = "nightly";

export async function run(ctx: Pick<BenchContext, "config" | "log">): Promise<Record<string, unknown>> {
  const scale = ctx.config.scale;
  const diskMiB = Math.max(8, Math.round(64 * scale));
  const dataMiB = Math.max(1, Math.round(8 * scale));
  ctx.log(`nightly: 20 VMs x 2 disks (${diskMiB} MiB, ${dataMiB} MiB data each), 2 backups at a time`);
  return { ...(await runNightly({ diskMiB, dataMiB })) };
}

export interface NightlyOptions {
  readonly vms?: number;
  readonly disksPerVm?: number;
  readonly diskMiB?: number;
  /** MiB of guest data written per disk before the backup. */
  readonly dataMiB?: number;
  readonly parallel?: number;
  /** No new outcome for this long → the pipeline state goes to `onStall` (default stderr). 0: off. */
  readonly stallMs?: number;
  readonly onStall?: (report: Record<string, unknown>) => void;
}

export interface NightlyResult {
  name: "nightly";
  vms: number;
  disksPerVm: number;
  diskMiB: number;
  dataMiBPerDisk: number;
  parallel: number;
  ok: number;
  failed: number;
  totalSeconds: number;
  /** Per VM: run wall time minus the time its disks spent moving bytes. */
  controlOverheadSeconds: { mean: number; p50: number; max: number };
  /** Per VM: backup wall time. */
  vmSeconds: { mean: number; p50: number; max: number };
  dataMiB: number;
  /** Data bytes / total wall time (what the night sees). */
  throughputMiBps: number;
  /** Data bytes / time spent in transfers (one stream at a time). */
  perTransferMiBps: number;
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const r = (n: number) => Math.round(n * 1000) / 1000;
  return { mean: r(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)), p50: r(s[Math.floor(s.length / 2)] ?? 0), max: r(s.at(-1) ?? 0) };
};

export async function runNightly(o: NightlyOptions = {}): Promise<NightlyResult> {
  const vms = o.vms ?? 20;
  const disksPerVm = o.disksPerVm ?? 2;
  const diskMiB = o.diskMiB ?? 64;
  const dataMiB = o.dataMiB ?? 8;
  const parallel = o.parallel ?? 2;
  const p = await startPipeline({ backupConcurrency: parallel, logLevel: "warn", ackWaitMs: 60_000 });
  try {
    const control = p.lab.engines.prd!.control;
    const names: string[] = [];
    for (let i = 0; i < vms; i++) {
      const name = `bench${String(i).padStart(2, "0")}`;
      const vm = await control.createVm({ name, disks: Array.from({ length: disksPerVm }, (_, d) => ({ alias: `${name}_d${d}`, size: diskMiB * 1048576 })) });
      for (const d of vm.disks) await control.writeGuestData(d.id, { offset: 0, length: dataMiB * 1048576, pattern: 0x5a + i });
      names.push(name);
    }
    const started = performance.now();
    const ids = [];
    for (const n of names) ids.push(await p.request(n, { mode: "full" }));
    const stop = watchStalls(p, ids, names, o.stallMs ?? 60_000, o.onStall ?? ((r) => process.stderr.write(`[nightly] stalled: ${JSON.stringify(r, null, 2)}\n`)));
    const outcomes = await Promise.all(ids.map((id) => p.outcome(id, 30 * 60_000))).finally(stop);
    const totalSeconds = (performance.now() - started) / 1000;
    const ok = outcomes.filter((x) => x.subject === "backup.completed");
    const overhead: number[] = [];
    const wall: number[] = [];
    let bytes = 0;
    let transferSeconds = 0;
    for (const x of ok) {
      const t = x.disks.map((d) => (d.transfer as { bytes: number; seconds: number } | undefined) ?? { bytes: 0, seconds: 0 });
      const moving = t.reduce((a, b) => a + b.seconds, 0);
      bytes += t.reduce((a, b) => a + b.bytes, 0);
      transferSeconds += moving;
      const seconds = Number(x.event.seconds);
      wall.push(seconds);
      overhead.push(Math.max(0, seconds - moving));
    }
    const mib = bytes / 1048576;
    return {
      name: "nightly",
      vms,
      disksPerVm,
      diskMiB,
      dataMiBPerDisk: dataMiB,
      parallel,
      ok: ok.length,
      failed: outcomes.length - ok.length,
      totalSeconds: Math.round(totalSeconds * 1000) / 1000,
      controlOverheadSeconds: stats(overhead),
      vmSeconds: stats(wall),
      dataMiB: Math.round(mib * 10) / 10,
      throughputMiBps: Math.round((mib / totalSeconds) * 10) / 10,
      perTransferMiBps: Math.round((mib / Math.max(transferSeconds, 1e-6)) * 10) / 10,
    };
  } finally {
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

// `npx tsx bench/nightly.ts [vms]` runs it alone and prints the JSON.
if (import.meta.url === `file://${process.argv[1]}`) {
  const vms = process.argv[2] ? Number(process.argv[2]) : undefined;
  // FERRY_NIGHTLY_STALL_S: report the pipeline state after this long without an outcome (default 60).
  const stall = process.env.FERRY_NIGHTLY_STALL_S ? Number(process.env.FERRY_NIGHTLY_STALL_S) * 1000 : undefined;
  console.log(JSON.stringify(await runNightly({ ...(vms ? { vms } : {}), ...(stall !== undefined ? { stallMs: stall } : {}) }), null, 2));
}
