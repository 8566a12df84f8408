/**
 * `npm run bench`: prints ONE JSON document on stdout (progress goes to stderr).
 *
 * Environment (read here only):
 *   FERRY_BENCH_SCALE        sizes × scale (default 1: 8 GiB virtual, 2 GiB data, 64/256/1024 MiB dirty)
 *   FERRY_BENCH_CONNECTIONS  parallel connections (default 4, Ferry's default)
 *   FERRY_BENCH_SECTIONS     comma list of sections to run (default: all)
 *   FERRY_BENCH_DIR          where the work directory goes (default: the OS temp dir)
 *   FERRY_BENCH_SECTION_TIMEOUT_S  give up on a section after this long (default 1200; nightly 3600); the others still report
 *
 * Each section is a module bench/<name>.ts returning a JSON object. The transfer sections share
 * one context (lab imageio server, the 8 GiB source disk), created on first use; a later one may
 * use what an earlier one left in ctx.shared. `nightly` (bench/nightly.ts, the backup pipeline
 * end to end) brings its own lab.
 */
import { cpus, loadavg, totalmem } from "node:os";
import { execa } from "execa";
import { benchConfig, createBenchContext, type BenchConfig, type BenchContext } from "./context.ts";
import * as download from "./download.ts";
import * as incremental from "./incremental.ts";
import * as upload from "./upload.ts";

interface Section {
  name: string;
  /** Its own time limit when FERRY_BENCH_SECTION_TIMEOUT_S is not set. */
  timeoutS?: number;
  run(ctx: () => Promise<BenchContext>, config: BenchConfig): Promise<object>;
}

const withContext = (m: { name: string; run(ctx: BenchContext): Promise<Record<string, unknown>> }): Section => ({
  name: m.name,
  run: async (ctx) => m.run(await ctx()),
});

const SECTIONS: Section[] = [
  withContext(download),
  withContext(upload),
  withContext(incremental),
  // Imported when run, so a missing dependency of the pipeline fails this section only.
  // Three windows of 100 VMs: 40 min at load 8-11 on the 2-core box, past the default limit.
  { name: "nightly", timeoutS: 3600, run: async () => (await import("./nightly.ts")).runNightly() },
  // Restore and DR replication through the pipeline (bench/restore.ts); brings its own lab pair.
  { name: "restore", run: async (_ctx, config) => (await import("./restore.ts")).run({ config, log }) },
];

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

async function main(): Promise<void> {
  const scale = Number(process.env.FERRY_BENCH_SCALE ?? "1");
  const connections = Number(process.env.FERRY_BENCH_CONNECTIONS ?? "4");
  if (!(scale > 0) || !Number.isInteger(connections) || connections < 1) {
    throw new Error("FERRY_BENCH_SCALE must be > 0 and FERRY_BENCH_CONNECTIONS a positive integer");
  }
  const wanted = process.env.FERRY_BENCH_SECTIONS?.split(",").map((s) => s.trim()).filter(Boolean);
  const sections = wanted ? SECTIONS.filter((s) => wanted.includes(s.name)) : SECTIONS;
  const config = { ...benchConfig(scale, connections), workDir: process.env.FERRY_BENCH_DIR };
  const qemu = (await execa("qemu-img", ["--version"], { reject: false })).stdout.split("\n")[0] ?? "";
  const report: Record<string, unknown> = {
    bench: "ferry-transfer",
    time: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version, qemu },
    config: { scale, virtualSize: config.virtualSize, dataBytes: config.dataBytes, dirtySizes: config.dirtySizes, connections },
    // Other engineers' work shares this machine: read every figure beside these.
    machineLoadAverage: { atStart: loadavg().map((x) => Number(x.toFixed(2))) },
  };
  const sectionTimeoutMs = Number(process.env.FERRY_BENCH_SECTION_TIMEOUT_S ?? "1200") * 1000;
  const started = performance.now();
  let ctx: Promise<BenchContext> | undefined;
  const getCtx = () => (ctx ??= createBenchContext(config, log));
  try {
    for (const s of sections) {
      try {
        log(`section ${s.name}`);
        const limitMs = process.env.FERRY_BENCH_SECTION_TIMEOUT_S === undefined && s.timeoutS ? s.timeoutS * 1000 : sectionTimeoutMs;
        report[s.name] = await withTimeout(s.run(getCtx, config), limitMs, s.name);
      } catch (err) {
        log(`${s.name} failed: ${err instanceof Error ? err.message : String(err)}`);
        report[s.name] = { error: err instanceof Error ? err.message : String(err) };
      }
    }
  } finally {
    if (ctx) await (await ctx.catch(() => undefined))?.close();
  }
  (report.machineLoadAverage as Record<string, unknown>).atEnd = loadavg().map((x) => Number(x.toFixed(2)));
  // The curl ceilings in one place (also inside each section).
  const curlOf = (k: string) => (report[k] as { curl?: unknown } | undefined)?.curl;
  report.ceilings = { curl: { download: curlOf("download") ?? null, upload: curlOf("upload") ?? null } };
  report.targets = targets(report);
  report.totalSeconds = Number(((performance.now() - started) / 1000).toFixed(1));
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  // A section that timed out may still hold handles; the report is out, so end here.
  if (timedOut) process.exit(1);
}

let timedOut = false;

async function withTimeout<T>(work: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new Error(`${name} did not finish within ${ms / 1000} s`));
    }, ms);
  });
  try {
    return await Promise.race([work, limit]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The targets (issue 12): download and upload ≥ 0.8 of the curl ceiling (digests on), peak
 * RSS ≤ 128 MiB, an incremental of 1 % dirty ≤ 5 % of the full's time and per dirty GiB no worse
 * than the full per GiB; the old node-ceiling ratios are kept for comparison.
 */
function targets(r: Record<string, unknown>): Record<string, unknown> {
  type Leg = { ratio?: number; ratioToCurl?: number; peakRssMiB?: number; cpuSecondsPerGiB?: number; seconds?: number };
  const d = r.download as Leg | undefined;
  const u = r.upload as Leg | undefined;
  const i = r.incremental as { peakRssMiB?: number; points?: { dirtyBytes: number; seconds: number; vsFull?: number; perDirtyGiBVsFullPerGiB?: number }[] } | undefined;
  const rss = [d?.peakRssMiB, u?.peakRssMiB, i?.peakRssMiB].filter((x): x is number => typeof x === "number");
  const out: Record<string, unknown> = {};
  if (d?.ratioToCurl !== undefined) out.downloadRatioToCurl = { value: d.ratioToCurl, target: 0.8, pass: d.ratioToCurl >= 0.8 };
  if (u?.ratioToCurl !== undefined) out.uploadRatioToCurl = { value: u.ratioToCurl, target: 0.8, pass: u.ratioToCurl >= 0.8 };
  if (d?.ratio !== undefined) out.downloadRatio = { value: d.ratio, target: 0.8, pass: d.ratio >= 0.8, ceiling: "node" };
  if (u?.ratio !== undefined) out.uploadRatio = { value: u.ratio, target: 0.8, pass: u.ratio >= 0.8, ceiling: "node" };
  if (rss.length) out.peakRssMiB = { value: Math.max(...rss), target: 128, pass: Math.max(...rss) <= 128 };
  const pts = i?.points;
  if (pts?.length) {
    const small = pts[0]!;
    out.incrementalOnePercent = { dirtyBytes: small.dirtyBytes, vsFull: small.vsFull ?? null, target: 0.05, pass: (small.vsFull ?? 1) <= 0.05 };
    const worst = Math.max(...pts.map((p) => p.perDirtyGiBVsFullPerGiB ?? Infinity));
    out.incrementalPerDirtyGiB = { worstVsFullPerGiB: worst, target: 1, pass: worst <= 1 };
  }
  const fit = (i as { fit?: { r2?: number | null; secondsPerDirtyGiB?: number } } | undefined)?.fit;
  if (pts && pts.length >= 2 && fit) {
    out.incrementalProportional = { r2: fit.r2 ?? null, secondsPerDirtyGiB: fit.secondsPerDirtyGiB, pass: (fit.r2 ?? 0) >= 0.9 && (fit.secondsPerDirtyGiB ?? 0) > 0 };
  }
  // A replication refresh uploads about what changed: bytes uploaded / bytes changed ≤ 1.2.
  const refresh = (r.restore as { replication?: { refresh?: { bytesPerChangedByte?: number } } } | undefined)?.replication?.refresh;
  if (refresh?.bytesPerChangedByte !== undefined) {
    out.replicationBytesPerChangedByte = { value: refresh.bytesPerChangedByte, target: 1.2, pass: refresh.bytesPerChangedByte <= 1.2 };
  }
  return out;
}

main().catch((err: unknown) => {
  process.stderr.write(`[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
