/**
 * One measured job in its own process, so its peak RSS is its own: a Ferry download or upload,
 * or the "ceiling" for the same ranges (plain parallel ranged GETs into a file, plain parallel
 * PUTs). Reads the job as JSON on stdin, prints one JSON result line on stdout.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, createWriteStream, openSync, readSync } from "node:fs";
import { open, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { pipeline } from "node:stream/promises";
import { Pool } from "undici";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { download, readDigestsFile, upload, writeDigestsFile } from "../dataplane/mod.ts";
import { PIECE_SIZE, downloadSegments, planTransfer, uploadSegments, type Range } from "../dataplane/plan.ts";

export type ChildJob =
  | {
      kind: "download";
      url: string;
      caPem: string;
      output: string;
      incremental: boolean;
      backing?: string;
      previousDigests?: string;
      digestsOut?: string;
      connections: number;
      pieceSize?: number;
      hashThreads?: number;
    }
  | { kind: "upload"; url: string; caPem: string; image: string; connections: number; diskIsZero: boolean; pieceSize?: number; hashThreads?: number }
  | { kind: "get-ceiling"; url: string; caPem: string; output: string; connections: number }
  | { kind: "put-ceiling"; url: string; caPem: string; image: string; connections: number }
  /** The honest ceiling: N curl processes (one keep-alive connection each) GET the same ranges, into files or /dev/null. */
  | { kind: "curl-get"; url: string; caPem: string; workDir: string; connections: number; toFile: boolean; incremental?: boolean }
  /** N curl processes PUT the same ranges (`-T`, bodies from sparse files of each length), then one flush. */
  | { kind: "curl-put"; url: string; caPem: string; image: string; workDir: string; connections: number };

export interface ChildResult {
  bytes: number;
  seconds: number;
  /** curl jobs: user + system CPU of the curl processes (the Node child only starts them). */
  curlCpuSeconds?: number;
  /** curl jobs: the largest curl's peak RSS, and the sum over the N processes. */
  curlPeakRssKiB?: number;
  curlSumPeakRssKiB?: number;
  checksum?: string;
  /** Ferry downloads: seconds per phase (dataplane/download.ts DownloadResult.phases). */
  phases?: Record<string, number>;
  /**
   * User + system CPU of the job alone (not the child's start): this process, all its threads,
   * plus the children it waited for (its qemu-nbd, qemu-img; curl for a curl job), from /proc/self/stat.
   */
  jobCpuSeconds: number;
  /** User + system CPU of the whole child (startup included), all threads. */
  cpuSeconds: number;
  /** V8 heap and buffer memory at the end (MiB), and MALLOC_ARENA_MAX as the child saw it. */
  heap?: { heapTotalMiB: number; heapUsedMiB: number; externalMiB: number; arrayBuffersMiB: number; mallocArenaMax: string | null };
  maxRssKiB: number;
  vmHwmKiB: number;
  /** Set by the bench (context.ts): cores busy on the whole machine while the child ran (all of them = CPU-bound machine). */
  machineBusyCores?: number;
  /** Sampled during the job (every FERRY_BENCH_PROBE_MS, default 200): the memory split at the highest RSS, CPU per thread and per child process. */
  probe?: Awaited<ReturnType<ReturnType<typeof startProbe>["stop"]>>;
}

function pool(url: string, caPem: string, connections: number): Pool {
  return new Pool(new URL(url).origin, { connections, pipelining: 1, connect: { ca: caPem } });
}

/** The same ranges Ferry's download fetches (same plan, same piece size). */
async function downloadRanges(p: Pool, path: string, incremental = false): Promise<Range[]> {
  const res = await p.request({ method: "GET", path: `${path}/extents?context=${incremental ? "dirty" : "zero"}` });
  if (res.statusCode !== 200) throw new Error(`extents: HTTP ${res.statusCode}`);
  const extents = (await res.body.json()) as { start: number; length: number; zero: boolean; dirty?: boolean }[];
  const plan = planTransfer(downloadSegments(extents, { incremental, hasBacking: incremental }), { blockSize: 4 << 20, pieceSize: PIECE_SIZE });
  return plan.items.flatMap((i) => i.fetches);
}

/** The same ranges Ferry's upload sends, from the image's allocation (qemu-img map). */
async function uploadRanges(image: string): Promise<Range[]> {
  const map = await qemuImg.map(image, { format: "qcow2" });
  const extents = map.map((e) => ({ offset: e.start, length: e.length, flags: e.zero ? 2 : 0 }));
  const plan = planTransfer(uploadSegments(extents, { diskIsZero: true }), { blockSize: 4 << 20, pieceSize: PIECE_SIZE });
  return plan.items.flatMap((i) => i.fetches);
}

async function workers(n: number, ranges: Range[], fn: (r: Range, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async (_, w) => {
      for (let i = next++; i < ranges.length; i = next++) await fn(ranges[i]!, w);
    }),
  );
}

async function getCeiling(job: Extract<ChildJob, { kind: "get-ceiling" }>): Promise<{ bytes: number; seconds: number }> {
  const p = pool(job.url, job.caPem, job.connections);
  const path = new URL(job.url).pathname;
  const ranges = await downloadRanges(p, path);
  const fh = await open(job.output, "w", 0o600);
  const started = performance.now();
  let bytes = 0;
  try {
    await workers(job.connections, ranges, async (r) => {
      const res = await p.request({ method: "GET", path, headers: { range: `bytes=${r.offset}-${r.offset + r.length - 1}` } });
      if (res.statusCode !== 206) throw new Error(`GET: HTTP ${res.statusCode}`);
      // A buffered write stream per range: the socket keeps flowing while the file catches up.
      const out = createWriteStream(job.output, { flags: "r+", start: r.offset, highWaterMark: 1 << 20 });
      let n = 0;
      res.body.on("data", (d: Buffer) => (n += d.length));
      await pipeline(res.body, out);
      bytes += n;
    });
    await fh.sync();
  } finally {
    await fh.close();
    await p.close();
  }
  return { bytes, seconds: (performance.now() - started) / 1000 };
}

async function putCeiling(job: Extract<ChildJob, { kind: "put-ceiling" }>): Promise<{ bytes: number; seconds: number }> {
  const ranges = await uploadRanges(job.image);
  const p = pool(job.url, job.caPem, job.connections);
  const path = new URL(job.url).pathname;
  const buffers = Array.from({ length: job.connections }, () => randomBytes(PIECE_SIZE));
  const started = performance.now();
  let bytes = 0;
  try {
    await workers(job.connections, ranges, async (r, w) => {
      const res = await p.request({
        method: "PUT",
        path: `${path}?flush=n`,
        headers: { "content-range": `bytes ${r.offset}-${r.offset + r.length - 1}/*`, "content-length": String(r.length) },
        body: buffers[w]!.subarray(0, r.length),
      });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`PUT: HTTP ${res.statusCode}`);
      bytes += r.length;
    });
    const res = await p.request({
      method: "PATCH",
      path,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ op: "flush" }),
    });
    await res.body.dump();
  } finally {
    await p.close();
  }
  return { bytes, seconds: (performance.now() - started) / 1000 };
}

/**
 * Runs `n` curl processes, process i with config entries `entries[i]`, under /usr/bin/time for CPU
 * and peak RSS. Each curl writes straight into its output file descriptor: piped through this
 * process (execa's `stdout: {file}`), the Node child read and buffered every byte (7 CPU-s and
 * 590 MiB RSS for 102 MiB at scale 0.05) and curl waited on that pipe, a ceiling 3-6x too low.
 */
async function runCurls(dir: string, entries: string[][], stdoutFor: (i: number) => string): Promise<{ seconds: number; cpu: number; peak: number; sum: number }> {
  const cfgs = await Promise.all(entries.map(async (e, i) => {
    const cfg = join(dir, `curl-${i}.cfg`);
    await writeFile(cfg, e.join("next\n"), { mode: 0o600 });
    return cfg;
  }));
  const outs = await Promise.all(cfgs.map((_, i) => open(stdoutFor(i), "w", 0o600)));
  try {
    const started = performance.now();
    const runs = await Promise.all(cfgs.map(async (cfg, i) => {
      const timeFile = `${cfg}.time`;
      const { code, stderr } = await spawnWait("/usr/bin/time", ["-f", "%U %S %M", "-o", timeFile, "curl", "-sS", "--fail", "-K", cfg], outs[i]!.fd);
      if (code !== 0) throw new Error(`curl ${i} failed (${code}): ${stderr.slice(-500)}`);
      const [user, sys, rss] = (await readFile(timeFile, "utf8")).trim().split("\n").at(-1)!.split(" ").map(Number);
      return { cpu: user! + sys!, rss: rss! };
    }));
    const seconds = (performance.now() - started) / 1000;
    return { seconds, cpu: runs.reduce((a, r) => a + r.cpu, 0), peak: Math.max(...runs.map((r) => r.rss)), sum: runs.reduce((a, r) => a + r.rss, 0) };
  } finally {
    await Promise.all(outs.map((o) => o.close()));
  }
}

/** Spawns `cmd` with its stdout on `fd` (no pipe through this process); resolves with its exit code and stderr. */
function spawnWait(cmd: string, args: string[], fd: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", fd, "pipe"] });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

/** Ranges dealt round-robin to `n` curl processes, one config entry each (options reset at `next`). */
function deal<T>(items: T[], n: number): T[][] {
  const out: T[][] = Array.from({ length: n }, () => []);
  items.forEach((x, i) => out[i % n]!.push(x));
  return out;
}

const q = (v: string) => JSON.stringify(v);

async function curlGet(job: Extract<ChildJob, { kind: "curl-get" }>) {
  const p = pool(job.url, job.caPem, 1);
  const ranges = await downloadRanges(p, new URL(job.url).pathname, job.incremental).finally(() => p.close());
  const ca = join(job.workDir, "curl-ca.pem");
  await writeFile(ca, job.caPem, { mode: 0o600 });
  const entries = deal(ranges, job.connections).map((rs) =>
    rs.map((r) => `url = ${q(job.url)}\nrange = "${r.offset}-${r.offset + r.length - 1}"\ncacert = ${q(ca)}\n`),
  );
  const outs = entries.map((_, i) => (job.toFile ? join(job.workDir, `curl-get-${i}.raw`) : "/dev/null"));
  try {
    const r = await runCurls(job.workDir, entries, (i) => outs[i]!);
    return { bytes: ranges.reduce((a, x) => a + x.length, 0), seconds: r.seconds, curlCpuSeconds: r.cpu, curlPeakRssKiB: r.peak, curlSumPeakRssKiB: r.sum };
  } finally {
    if (job.toFile) await Promise.all(outs.map((o) => rm(o, { force: true })));
  }
}

async function curlPut(job: Extract<ChildJob, { kind: "curl-put" }>) {
  const ranges = await uploadRanges(job.image);
  const ca = join(job.workDir, "curl-ca.pem");
  await writeFile(ca, job.caPem, { mode: 0o600 });
  // One sparse body file per distinct length: curl -T needs a file of exactly the range's size.
  // Reading a sparse file costs the kernel next to nothing; TLS, the wire and the server see the same bytes count.
  const bodies = new Map<number, string>();
  for (const r of ranges) {
    if (bodies.has(r.length)) continue;
    const f = join(job.workDir, `curl-body-${r.length}`);
    await truncate(f, r.length).catch(async () => {
      await writeFile(f, "");
      await truncate(f, r.length);
    });
    bodies.set(r.length, f);
  }
  const putUrl = `${job.url}?flush=n`;
  const entries = deal(ranges, job.connections).map((rs) =>
    rs.map((r) =>
      `url = ${q(putUrl)}\nupload-file = ${q(bodies.get(r.length)!)}\nheader = "Content-Range: bytes ${r.offset}-${r.offset + r.length - 1}/*"\nheader = "Expect:"\ncacert = ${q(ca)}\n`,
    ),
  );
  try {
    const r = await runCurls(job.workDir, entries, () => "/dev/null");
    const flush = await execa("curl", ["-sS", "--fail", "--cacert", ca, "-X", "PATCH", "-H", "Content-Type: application/json", "--data", '{"op":"flush"}', job.url], { reject: false });
    if (flush.exitCode !== 0) throw new Error(`curl flush failed: ${flush.stderr}`);
    return { bytes: ranges.reduce((a, x) => a + x.length, 0), seconds: r.seconds, curlCpuSeconds: r.cpu, curlPeakRssKiB: r.peak, curlSumPeakRssKiB: r.sum };
  } finally {
    await Promise.all([...bodies.values()].map((f) => rm(f, { force: true })));
  }
}

/** utime + stime + cutime + cstime of this process, in seconds (clock ticks of 1/100 s). */
async function treeCpuSeconds(): Promise<number> {
  const stat = await readFile("/proc/self/stat", "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14-17 of proc(5), counted from 1; f[0] is field 3 (state).
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
}

/**
 * A /proc file's text, read into one reused buffer. fs.promises.readFile of a /proc file (size 0)
 * allocates a fresh buffer of ~200 KiB each time: sampling 30 files every 100 ms made 5 MiB of
 * garbage per sample and itself moved the heap figures it was measuring.
 */
const procBuf = Buffer.allocUnsafe(64 * 1024);
function readProc(path: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    return procBuf.toString("latin1", 0, readSync(fd, procBuf, 0, procBuf.length, 0));
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** user + sys seconds from a /proc stat line (fields 14-15). */
function statCpu(stat: string): number {
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * Samples this process every `ms` while the job runs: RSS split into anonymous and file pages,
 * V8 heap / external / arrayBuffers at the highest RSS seen, CPU per thread (by name; threads that
 * end keep their last figure) and per child process (qemu-nbd, qemu-img, curl) by command name.
 */
function startProbe(ms: number) {
  const threads = new Map<string, { name: string; cpu: number }>();
  const kids = new Map<string, { name: string; cpu: number }>();
  let peak = { rssMiB: 0, rssAnonMiB: 0, rssFileMiB: 0, heapUsedMiB: 0, externalMiB: 0, arrayBuffersMiB: 0, atSeconds: 0 };
  const t0 = performance.now();
  const mib = (n: number) => Number((n / 2 ** 20).toFixed(1));
  let n = 0;
  const sample = async () => {
    const status = readProc("/proc/self/status");
    const kib = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
    const rss = kib("VmRSS");
    if (process.env.FERRY_BENCH_PROBE_TRACE) {
      const m = process.memoryUsage();
      process.stderr.write(`probe ${((performance.now() - t0) / 1000).toFixed(2)} rss ${mib(rss)} anon ${mib(kib("RssAnon"))} heapTotal ${mib(m.heapTotal)} heapUsed ${mib(m.heapUsed)} external ${mib(m.external)} ab ${mib(m.arrayBuffers)}\n`);
    }
    if (rss > peak.rssMiB * 2 ** 20) {
      const m = process.memoryUsage();
      peak = { rssMiB: mib(rss), rssAnonMiB: mib(kib("RssAnon")), rssFileMiB: mib(kib("RssFile") + kib("RssShmem")), heapUsedMiB: mib(m.heapUsed), externalMiB: mib(m.external), arrayBuffersMiB: mib(m.arrayBuffers), atSeconds: Number(((performance.now() - t0) / 1000).toFixed(2)) };
    }
    // CPU per thread and child every 5th sample (the files are many; memory is the fast-moving figure).
    if (n++ % 5 !== 0) return;
    for (const tid of await readdir("/proc/self/task").catch(() => [] as string[])) {
      const stat = readProc(`/proc/self/task/${tid}/stat`);
      if (stat) threads.set(tid, { name: readProc(`/proc/self/task/${tid}/comm`).trim(), cpu: statCpu(stat) });
      for (const pid of readProc(`/proc/self/task/${tid}/children`).trim().split(/\s+/).filter(Boolean)) {
        const st = readProc(`/proc/${pid}/stat`);
        if (st) kids.set(pid, { name: readProc(`/proc/${pid}/comm`).trim(), cpu: statCpu(st) });
      }
    }
  };
  let running: Promise<void> = sample();
  const timer = setInterval(() => (running = running.then(sample, sample)), ms);
  const byName = (m: Map<string, { name: string; cpu: number }>) => {
    const out: Record<string, number> = {};
    for (const { name, cpu } of m.values()) out[name] = Number(((out[name] ?? 0) + cpu).toFixed(2));
    return out;
  };
  return {
    async stop() {
      clearInterval(timer);
      await running.catch(() => {});
      n = 0;
      await sample();
      return { peak, threadCpuSeconds: byName(threads), childCpuSeconds: byName(kids) };
    },
  };
}

async function vmHwmKiB(): Promise<number> {
  const status = await readFile("/proc/self/status", "utf8");
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

async function main(): Promise<void> {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const job = JSON.parse(input) as ChildJob;
  const before = await treeCpuSeconds();
  const probe = startProbe(Number(process.env.FERRY_BENCH_PROBE_MS ?? "200"));
  let out: { bytes: number; seconds: number; checksum?: string; curlCpuSeconds?: number; curlPeakRssKiB?: number; curlSumPeakRssKiB?: number; phases?: Record<string, number> };
  switch (job.kind) {
    case "download": {
      const r = await download({
        transferUrl: job.url,
        caPem: job.caPem,
        output: job.output,
        incremental: job.incremental,
        backing: job.backing ? { path: job.backing } : undefined,
        previousDigests: job.previousDigests ? await readDigestsFile(job.previousDigests) : undefined,
        connections: job.connections,
        pieceSize: job.pieceSize,
        hashThreads: job.hashThreads,
      });
      if (job.digestsOut) await writeDigestsFile(job.digestsOut, { blockSize: r.blockSize, virtualSize: r.virtualSize, digests: r.digests });
      out = { bytes: r.bytes, seconds: r.seconds, checksum: r.checksum, phases: r.phases };
      break;
    }
    case "upload": {
      const r = await upload({
        image: job.image, transferUrl: job.url, caPem: job.caPem, connections: job.connections, diskIsZero: job.diskIsZero,
        pieceSize: job.pieceSize, hashThreads: job.hashThreads,
      });
      out = { bytes: r.bytes, seconds: r.seconds, checksum: r.checksum };
      break;
    }
    case "get-ceiling":
      out = await getCeiling(job);
      break;
    case "put-ceiling":
      out = await putCeiling(job);
      break;
    case "curl-get":
      out = await curlGet(job);
      break;
    case "curl-put":
      out = await curlPut(job);
      break;
  }
  const probed = await probe.stop();
  const mem = process.memoryUsage();
  const mib = (n: number) => Number((n / 2 ** 20).toFixed(1));
  const after = await treeCpuSeconds();
  const cpu = process.cpuUsage();
  const result: ChildResult = {
    ...out,
    cpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)),
    jobCpuSeconds: Number((after - before).toFixed(2)),
    maxRssKiB: process.resourceUsage().maxRSS,
    vmHwmKiB: await vmHwmKiB(),
    probe: probed,
    heap: {
      heapTotalMiB: mib(mem.heapTotal),
      heapUsedMiB: mib(mem.heapUsed),
      externalMiB: mib(mem.external),
      arrayBuffersMiB: mib(mem.arrayBuffers),
      mallocArenaMax: process.env.MALLOC_ARENA_MAX ?? null,
    },
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
