/**
 * Restore and DR replication through the real pipeline (runtime, NATS, lab PRD + DR engines and
 * their imageio daemons, dataplane, store), on one VM with one disk of the bench's size
 * (8 GiB virtual, 2 GiB data at scale 1) that replicates to DR:
 *
 *  1. full backup → the replication it causes builds the DR copy (a full restore, mode replicate);
 *  2. restore.requested of that point onto DR under another name (mode restore): seconds, bytes,
 *     MiB/s of the whole restore (create the disk, upload, imageio's checksum of the new disk, VM)
 *     and of the upload alone, with a timeline from the restore log, the DR engine's audit log and
 *     the transfer.progress events;
 *  3. 1 % of the virtual size written as guest data spread over the disk → incremental backup →
 *     the replication refresh: seconds, bytes uploaded / bytes changed (goal ≤ 1.2), and imageio's
 *     checksum of the DR copy equal to the new point's (asserted: the section fails otherwise);
 *  4. for what bounds the restore: imageio's checksum of the DR copy alone, Ferry's upload of the
 *     same layer run in a child process (outside the bench process that hosts the lab imageio
 *     daemon), and the upload ceiling of bench/upload.ts (plain parallel PUTs from memory, child.ts
 *     `put-ceiling`) into a DR upload ticket.
 *
 * Every phase carries the bench process's event-loop utilization and CPU (cores) and the machine's
 * busy cores, from samples every 200 ms. The lab engines and the imageio daemons run inside this
 * process, so its event loop serves both ends of every in-pipeline transfer.
 *
 * A bench/run.ts section (`FERRY_BENCH_SECTIONS=restore`). Work dirs: the OS temp dir (startPipeline).
 */
import { readdir, readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { EventLoopUtilization } from "node:perf_hooks";
import { execa } from "execa";
import { openStore } from "../adapters/store/mod.ts";
import { newDiskId, type RestoreEngine } from "../pipeline/restore-engine.ts";
import { startPipeline, type Pipeline } from "../test/backup-support.ts";
import type { ChildJob, ChildResult } from "./child.ts";
import { GiB, MiB, kibToMiB, layoutRuns, mibps, round3, type BenchConfig } from "./context.ts";

export const name = "restore";

const VM = "rbench01";
const childScript = fileURLToPath(new URL("./child.ts", import.meta.url));

export async function run(ctx: { config: BenchConfig; log(msg: string): void }): Promise<Record<string, unknown>> {
  const { virtualSize, dataBytes, connections } = ctx.config;
  const changedBytes = Math.max(64 * 1024, Math.round((virtualSize * 0.01) / (64 * 1024)) * 64 * 1024);
  const log = (m: string) => ctx.log(`restore: ${m}`);
  const sampler = startSampler();
  // Date.now() against the monotonic clock (node --cpu-prof timestamps), to cut a profile by phase.
  log(`clock anchor: epochMs=${Date.now()} monotonicUs=${process.hrtime.bigint() / 1000n}`);
  const sectionStarted = performance.now();
  log(`lab PRD + DR, pipeline in process; VM ${VM}: 1 disk ${(virtualSize / GiB).toFixed(2)} GiB, ${(dataBytes / MiB).toFixed(0)} MiB data, replicateToDr`);
  const p = await startPipeline({
    labEngines: ["prd", "dr"],
    replicates: (vm) => vm === VM,
    logLevel: "warn",
    ackWaitMs: 60_000,
    // No point-in-time copy of each backup on the lab engine (multi-GiB benchmarks, lab/README.md).
    labTimings: { keepPointInTime: false },
  });
  const created: string[] = []; // DR disks the bench made itself
  const dr = p.wiring.restoreEngines.get("dr")!;
  const loadStart = loadavg();
  try {
    // The store's own init makes <store>/restore-logs, where the restore handler writes its step log
    // (it does not create the directory; without it the log is silently not written).
    await p.wiring.store.volume.init();
    const prd = p.lab.engines.prd!.control;
    const vm = await prd.createVm({ name: VM, disks: [{ alias: `${VM}_d1`, size: virtualSize }], status: "up" });
    const diskId = vm.disks[0]!.id;

    let t0 = performance.now();
    // The download/upload sections' layout with runs up to 64 MiB instead of 16: a third of the
    // qemu-io processes (one per run through the lab control), which dominated the setup time.
    const runs = layoutRuns(virtualSize, dataBytes, 1, 64 * MiB);
    log(`writing ${(dataBytes / MiB).toFixed(0)} MiB of guest data in ${runs.length} runs (lab writeGuestData)`);
    for (const [i, r] of runs.entries()) await prd.writeGuestData(diskId, { offset: r.offset, length: r.length, pattern: 0x20 + (i % 0x40) });
    const writeSeconds = (performance.now() - t0) / 1000;

    // 1. Full backup and the DR copy its replication builds.
    log("full backup");
    const full = await backupAndReplica(p, "full");
    const point1 = await pointOf(p, 1);
    const firstCopy = checkReplica(full.replica, point1, "the first replication (DR copy)");
    const copyVm = String(full.replica.event.vmId);
    log(`full backup ${full.backupSeconds.toFixed(1)} s; DR copy built in ${Number(full.replica.event.seconds).toFixed(1)} s`);

    // 2. A restore of the same point onto DR, through restore.requested.
    log("restore.requested of the full point onto DR");
    const requestedAt = Date.now();
    t0 = performance.now();
    const restored = await p.restore({ vm: VM, checkpoint: 1, name: `${VM}_bench` }, 15 * 60_000);
    const restoreWall = (performance.now() - t0) / 1000;
    if (restored.subject !== "restore.completed") throw new Error(`restore failed: ${JSON.stringify(restored.event)}`);
    const restoredDisks = restored.event.disks as { alias: string; id: string; checksum: string }[];
    if (restoredDisks[0]?.checksum !== point1.checksum) throw new Error(`restored disk checksum ${restoredDisks[0]?.checksum} differs from the point's ${point1.checksum}`);
    const restoreTimeline = await timeline(p, sampler, String(restored.event.runId), requestedAt, Date.now(), "requested");
    const restoreBytes = Number(restored.event.bytes);
    log(`restore ${restoreWall.toFixed(1)} s, ${(restoreBytes / MiB).toFixed(0)} MiB uploaded`);

    // 3. 1 % changed, incremental backup, replication refresh.
    const dirty = layoutRuns(virtualSize, changedBytes, 7, 4 * MiB);
    log(`writing ${(changedBytes / MiB).toFixed(1)} MiB (1 % of the disk) in ${dirty.length} runs spread over it`);
    for (const [i, r] of dirty.entries()) await prd.writeGuestData(diskId, { offset: r.offset, length: r.length, pattern: 0x80 + (i % 0x40) });
    log("incremental backup");
    const incr = await backupAndReplica(p, "incremental");
    const point2 = await pointOf(p, "latest");
    if (point2.checksum === point1.checksum) throw new Error("the incremental point has the full point's checksum: the guest writes did not land");
    const refresh = checkReplica(incr.replica, point2, "the replication refresh");
    if (String(incr.replica.event.vmId) !== copyVm) throw new Error(`the refresh recreated the DR copy (${copyVm} → ${String(incr.replica.event.vmId)}) instead of refreshing it in place`);
    const refreshBytes = Number(incr.replica.event.bytes);
    log(`refresh ${Number(incr.replica.event.seconds).toFixed(1)} s, ${(refreshBytes / MiB).toFixed(1)} MiB uploaded for ${(changedBytes / MiB).toFixed(1)} MiB changed`);

    // 4. What bounds it: the verification read alone, Ferry's upload out of process, the PUT ceiling.
    log("imageio checksum of the DR copy (the verification read, alone)");
    const copyDisk = (incr.replica.event.disks as { id: string }[])[0]!.id;
    const checksumAlone = await measured(sampler, async () => {
      const t = await dr.openTransfer(copyDisk, "download");
      try {
        return await p.wiring.transfers.sourceChecksum({ transferUrl: t.transferUrl, caPem: dr.caPem, blockSize: point2.blockSize });
      } finally {
        await dr.finalizeTransfer(t.id, copyDisk, "download");
      }
    });
    if (checksumAlone.value !== point2.checksum) throw new Error(`imageio's checksum of the DR copy ${checksumAlone.value} differs from the new point's ${point2.checksum}`);

    log("ferry upload of the full layer from a child process into a new DR disk");
    const outOfProcess = await uploadIntoNewDisk(p, dr, created, virtualSize, sampler, (url) =>
      runChild({ kind: "upload", url, caPem: dr.caPem!, image: point1.top, connections, diskIsZero: true }),
    );
    if (outOfProcess.value.checksum !== point1.checksum) throw new Error(`the child upload's checksum ${outOfProcess.value.checksum} differs from the point's ${point1.checksum}`);
    log("upload ceiling: plain parallel PUTs from memory (bench/child.ts put-ceiling) into a new DR disk");
    const ceiling = await uploadIntoNewDisk(p, dr, created, virtualSize, sampler, (url) =>
      runChild({ kind: "put-ceiling", url, caPem: dr.caPem!, image: point1.top, connections }),
    );

    const refreshTimeline = await timeline(p, sampler, String(incr.replica.event.runId), incr.backupDoneAt, incr.replicaDoneAt, "backup.completed");
    const { firstDownload: before, upload: refreshUpload, verify: after } = refreshTimeline.named;
    // The refresh reads the DR disk's checksum before (changed behind Ferry's back?) and after (verify).
    const refreshSplit = {
      checksumBeforeSeconds: before && round3(before.seconds),
      uploadSeconds: refreshUpload && round3(refreshUpload.seconds),
      checksumAfterSeconds: after && round3(after.seconds),
    };
    const upload = restoreTimeline.named.upload;
    const verify = restoreTimeline.named.verify;
    const peak = sampler.peakRss();
    const rusage = process.resourceUsage();
    return {
      vm: { virtualSize, dataBytes, guestWriteSeconds: round3(writeSeconds) },
      connections,
      fullBackup: { seconds: round3(full.backupSeconds), bytes: full.backupBytes, mibPerSecond: mibps(full.backupBytes, full.backupSeconds) },
      restore: {
        seconds: round3(restoreWall),
        handlerSeconds: round3(Number(restored.event.seconds)),
        bytes: restoreBytes,
        mibPerSecond: mibps(restoreBytes, restoreWall),
        upload: upload && { ...upload, seconds: round3(upload.seconds), mibPerSecond: mibps(restoreBytes, upload.seconds), benchCpuSecondsPerGiB: perGiB(upload.benchCpuSeconds, restoreBytes), from: "DR audit: upload transfer initiated → last transfer.progress (all bytes sent)" },
        verify: verify && { ...verify, seconds: round3(verify.seconds), benchCpuSecondsPerGiBOfData: perGiB(verify.benchCpuSeconds, dataBytes), from: "DR audit: download transfer initiated → finalized (imageio's checksum of the new disk)" },
        checksumMatchesPoint: true,
        phases: restoreTimeline.phases,
      },
      replication: {
        firstCopy: {
          seconds: round3(full.replicaWall),
          handlerSeconds: round3(Number(full.replica.event.seconds)),
          bytes: firstCopy.bytes,
          mibPerSecond: mibps(firstCopy.bytes, full.replicaWall),
          checksumMatchesPoint: true,
          phases: (await timeline(p, sampler, String(full.replica.event.runId), full.backupDoneAt, full.replicaDoneAt, "backup.completed")).phases,
        },
        refresh: {
          changedBytes,
          changedRuns: dirty.length,
          incrementalBackup: { seconds: round3(incr.backupSeconds), bytes: incr.backupBytes },
          seconds: round3(incr.replicaWall),
          handlerSeconds: round3(Number(incr.replica.event.seconds)),
          bytes: refreshBytes,
          bytesPerChangedByte: round3(refreshBytes / changedBytes),
          target: 1.2,
          pass: refreshBytes / changedBytes <= 1.2,
          checksumMatchesPoint: refresh.ok,
          inPlace: true,
          ...refreshSplit,
          phases: refreshTimeline.phases,
        },
      },
      bound: {
        checksumAlone: {
          seconds: round3(checksumAlone.seconds), mibPerSecondOfData: mibps(dataBytes, checksumAlone.seconds), virtualMiBPerSecond: mibps(virtualSize, checksumAlone.seconds),
          ...checksumAlone.load, benchCpuSecondsPerGiBOfData: perGiB(checksumAlone.load.benchCpuSeconds, dataBytes),
        },
        ferryUploadChildProcess: {
          seconds: round3(outOfProcess.value.seconds),
          bytes: outOfProcess.value.bytes,
          mibPerSecond: mibps(outOfProcess.value.bytes, outOfProcess.value.seconds),
          childCpuSeconds: outOfProcess.value.cpuSeconds,
          childPeakRssMiB: kibToMiB(outOfProcess.value.vmHwmKiB),
          childCpuSecondsPerGiB: perGiB(outOfProcess.value.cpuSeconds, outOfProcess.value.bytes),
          ...outOfProcess.load,
          benchCpuSecondsPerGiB: perGiB(outOfProcess.load.benchCpuSeconds, outOfProcess.value.bytes),
        },
        putCeiling: {
          what: "bench/upload.ts's ceiling reused (child.ts put-ceiling: undici PUTs from memory, same ranges, same connections), not curl",
          seconds: round3(ceiling.value.seconds),
          bytes: ceiling.value.bytes,
          mibPerSecond: mibps(ceiling.value.bytes, ceiling.value.seconds),
          childCpuSeconds: ceiling.value.cpuSeconds,
          ...ceiling.load,
        },
        inPipelineUploadVsCeiling: upload ? round3(ceiling.value.seconds / upload.seconds) : null,
      },
      benchProcess: {
        peakRssMiB: Math.round(peak / MiB),
        maxRssMiB: kibToMiB(rusage.maxRSS),
        note: "peakRssMiB: sampled during this section; maxRssMiB: process.resourceUsage().maxRSS (whole process life). The process hosts the pipeline functions, NATS client, both lab engines and their imageio daemons.",
      },
      machineLoadAverage: { start: loadStart.map((x) => round3(x)), end: loadavg().map((x) => round3(x)), cpus: cpus().length },
      sectionSeconds: round3((performance.now() - sectionStarted) / 1000),
    };
  } finally {
    sampler.stop();
    for (const id of created) await dr.removeDisk(id).catch(() => undefined);
    await p.stop();
  }
}

interface BackupAndReplica {
  backupSeconds: number;
  backupBytes: number;
  backupDoneAt: number;
  replica: { subject: string; event: Record<string, unknown> };
  replicaWall: number;
  replicaDoneAt: number;
}

async function backupAndReplica(p: Pipeline, mode: "full" | "incremental"): Promise<BackupAndReplica> {
  const t0 = performance.now();
  const b = await p.backup(VM, { mode, timeoutMs: 15 * 60_000 });
  if (b.subject !== "backup.completed") throw new Error(`${mode} backup failed: ${JSON.stringify(b.event)}`);
  const backupDoneAt = Date.now();
  const t1 = performance.now();
  const replica = await p.restoreOutcome(String(b.event.correlationId), 15 * 60_000);
  const bytes = b.disks.reduce((n, d) => n + Number((d.transfer as { bytes?: number } | undefined)?.bytes ?? 0), 0);
  return { backupSeconds: (t1 - t0) / 1000, backupBytes: bytes, backupDoneAt, replica, replicaWall: (performance.now() - t1) / 1000, replicaDoneAt: Date.now() };
}

async function pointOf(p: Pipeline, ref: number | "latest") {
  const r = await openStore({ root: p.storePath }).resolvePoint(VM, ref);
  const d = r.disks[0]!;
  return { checksum: d.disk.checksum.value, blockSize: d.disk.checksum.blockSize, top: d.top };
}

function checkReplica(r: { subject: string; event: Record<string, unknown> }, point: { checksum: string }, what: string) {
  if (r.subject !== "restore.completed") throw new Error(`${what} failed: ${JSON.stringify(r.event)}`);
  if (r.event.mode !== "replicate") throw new Error(`${what}: mode ${String(r.event.mode)}, expected replicate`);
  const sums = (r.event.disks as { checksum: string }[]).map((d) => d.checksum);
  if (sums.length !== 1 || sums[0] !== point.checksum) throw new Error(`${what}: DR checksum ${sums.join(",")} differs from the point's ${point.checksum}`);
  return { ok: true, bytes: Number(r.event.bytes) };
}

/** A new empty disk on DR, an upload transfer into it, `fn` with its URL, finalize, remove the disk. */
async function uploadIntoNewDisk<T>(p: Pipeline, dr: RestoreEngine, created: string[], size: number, s: Sampler, fn: (url: string) => Promise<T>) {
  const sd = await dr.findStorageDomain(p.settings.restore?.storageDomain ?? "data");
  const id = newDiskId();
  created.push(id);
  await dr.createDisk({ id, alias: `bench_${id.slice(0, 8)}`, provisionedSize: size, initialSize: size, storageDomainId: sd!.id });
  const t = await dr.openTransfer(id, "upload");
  try {
    const r = await measured(s, () => fn(t.transferUrl));
    await dr.finalizeTransfer(t.id, id, "upload");
    return r;
  } catch (err) {
    await dr.cancelTransfer(t.id).catch(() => undefined);
    throw err;
  } finally {
    await dr.removeDisk(id).catch(() => undefined);
    created.splice(created.indexOf(id), 1);
  }
}

async function runChild(job: ChildJob): Promise<ChildResult> {
  const r = await execa(process.execPath, ["--import", "tsx", childScript], { input: JSON.stringify(job), reject: false, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bench child ${job.kind} failed: ${String(r.stderr).slice(-2000)}`);
  return JSON.parse(String(r.stdout).trim().split("\n").at(-1)!) as ChildResult;
}

// ---------------------------------------------------------------------------------------------
// Load samples: event-loop utilization and CPU of this process, busy cores of the machine.

interface Sample {
  t: number; // Date.now()
  elu: EventLoopUtilization;
  cpuUs: number;
  /** CPU seconds of this process's descendants by name (qemu-nbd, nats-server, qemu-io, node: child.ts). */
  childCpu: Record<string, number>;
  busy: number;
  iowait: number;
  total: number;
}

interface Load {
  eventLoopUtilization: number;
  /** CPU of the bench process (all its threads) / wall time. */
  benchCpuCores: number;
  benchCpuSeconds: number;
  /** CPU of its child processes (qemu-nbd serving the store chain and the DR disk, qemu-io, child.ts) / wall time. */
  childrenCpuCores: number;
  /** The same by process name (≥ 0.01 cores). */
  childrenCpuCoresByName: Record<string, number>;
  /** Every process on the machine (other work included) / wall time. */
  machineBusyCores: number;
  machineIowaitCores: number;
}

interface Sampler {
  load(from: number, to: number): Load | undefined;
  peakRss(): number;
  stop(): void;
}

function procStat(): { busy: number; iowait: number; total: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = f[3]! + f[4]!;
  return { busy: total - idle, iowait: f[4]!, total };
}

const TICK = 100; // USER_HZ

/** CPU seconds (utime + stime + cutime + cstime) and name of a process; undefined once it is gone. */
function taskCpu(pid: number): { name: string; cpu: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
    // Fields 14-17 of proc(5); f[0] is field 3.
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    // Node names its main thread MainThread: that is a child.ts process.
    return { name: comm === "MainThread" ? "node" : comm, cpu: (f[11]! + f[12]! + f[13]! + f[14]!) / TICK };
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds of this process's descendants by process name, cumulative: a process that exited
 * keeps the last value seen (at most one sample interval short).
 */
function childCpuTracker(): () => Record<string, number> {
  let seen = new Map<number, { name: string; cpu: number }>();
  const gone: Record<string, number> = {};
  return () => {
    const live = new Map<number, { name: string; cpu: number }>();
    const walk = (pid: number, depth: number) => {
      let kids: string[] = [];
      try {
        kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
      } catch {
        return;
      }
      for (const k of kids) {
        const t = taskCpu(Number(k));
        if (t) live.set(Number(k), t);
        if (depth < 4) walk(Number(k), depth + 1);
      }
    };
    walk(process.pid, 0);
    for (const [pid, v] of seen) if (!live.has(pid)) gone[v.name] = (gone[v.name] ?? 0) + v.cpu;
    seen = live;
    const out: Record<string, number> = { ...gone };
    for (const v of live.values()) out[v.name] = (out[v.name] ?? 0) + v.cpu;
    return out;
  };
}

function startSampler(intervalMs = 200): Sampler {
  const samples: Sample[] = [];
  const childCpu = childCpuTracker();
  let peak = process.memoryUsage.rss();
  const take = () => {
    const c = process.cpuUsage();
    samples.push({ t: Date.now(), elu: performance.eventLoopUtilization(), cpuUs: c.user + c.system, childCpu: childCpu(), ...procStat() });
    peak = Math.max(peak, process.memoryUsage.rss());
  };
  take();
  const timer = setInterval(take, intervalMs);
  timer.unref();
  const ncpu = cpus().length;
  return {
    load(from, to) {
      take();
      const a = samples.findLast((x) => x.t <= from) ?? samples[0]!;
      const b = samples.find((x) => x.t >= to) ?? samples.at(-1)!;
      const wall = (b.t - a.t) / 1000;
      if (!(wall > 0)) return undefined;
      const ticks = b.total - a.total;
      return {
        eventLoopUtilization: round3(performance.eventLoopUtilization(b.elu, a.elu).utilization),
        benchCpuCores: round3((b.cpuUs - a.cpuUs) / 1e6 / wall),
        benchCpuSeconds: round3((b.cpuUs - a.cpuUs) / 1e6),
        childrenCpuCores: round3(Object.keys(b.childCpu).reduce((n, k) => n + Math.max(0, b.childCpu[k]! - (a.childCpu[k] ?? 0)), 0) / wall),
        childrenCpuCoresByName: Object.fromEntries(
          Object.keys(b.childCpu)
            .map((k) => [k, round3(Math.max(0, b.childCpu[k]! - (a.childCpu[k] ?? 0)) / wall)] as const)
            .filter(([, v]) => v >= 0.01),
        ),
        machineBusyCores: ticks > 0 ? round3(((b.busy - a.busy) / ticks) * ncpu) : 0,
        machineIowaitCores: ticks > 0 ? round3(((b.iowait - a.iowait) / ticks) * ncpu) : 0,
      };
    },
    peakRss: () => peak,
    stop: () => clearInterval(timer),
  };
}

const perGiB = (seconds: number | undefined, bytes: number) => (seconds === undefined || !(bytes > 0) ? null : round3(seconds / (bytes / GiB)));

async function measured<T>(s: Sampler, fn: () => Promise<T>): Promise<{ value: T; seconds: number; load: Partial<Load> }> {
  const from = Date.now();
  const t0 = performance.now();
  const value = await fn();
  const seconds = (performance.now() - t0) / 1000;
  return { value, seconds, load: s.load(from, Date.now()) ?? {} };
}

// ---------------------------------------------------------------------------------------------
// A restore's timeline: its log (<store>/restore-logs), the DR engine's audit log, transfer.progress.

interface Mark {
  t: number;
  what: string;
}

async function timeline(p: Pipeline, s: Sampler, runId: string, from: number, to: number, startLabel: string) {
  const marks: Mark[] = [{ t: from, what: startLabel }];
  const dir = p.wiring.store.volume.paths.restoreLogs();
  const suffix = `-${runId.replace(/[^A-Za-z0-9._-]/g, "_")}.log`;
  const file = (await readdir(dir).catch(() => [] as string[])).find((f) => f.endsWith(suffix));
  if (file) {
    for (const line of (await readFile(join(dir, file), "utf8")).split("\n").filter(Boolean)) {
      const x = JSON.parse(line) as { time: string; step: string };
      marks.push({ t: Date.parse(x.time), what: `log: ${x.step}` });
    }
  }
  const codes: Record<string, string> = { "2020": "add disk", "2021": "disk added", "1031": "opened", "1032": "finalized" };
  for (const e of p.lab.engines.dr!.control.events()) {
    const t = Number(e.time);
    const what = codes[String(e.code)];
    if (!what || t < from || t > to) continue;
    const dir = /Upload/.test(String(e.description)) ? "upload " : /Download/.test(String(e.description)) ? "download " : "";
    marks.push({ t, what: `dr: ${dir}${what}` });
  }
  const progress = p.seen.filter((x) => x.subject === "transfer.progress" && x.event.runId === runId);
  const done = progress.filter((x) => Number(x.event.bytes) >= Number(x.event.total) && Number(x.event.total) > 0).at(-1);
  if (progress[0]) marks.push({ t: Date.parse(String(progress[0].event.time)), what: "first upload progress" });
  if (done) marks.push({ t: Date.parse(String(done.event.time)), what: "upload: all bytes sent" });
  marks.push({ t: to, what: "outcome seen" });
  marks.sort((a, b) => a.t - b.t);
  const phases = marks.slice(1).map((m, i) => ({
    from: marks[i]!.what,
    to: m.what,
    seconds: round3((m.t - marks[i]!.t) / 1000),
    ...(m.t - marks[i]!.t >= 500 ? s.load(marks[i]!.t, m.t) : {}),
  }));
  const at = (what: string, last = false) => (last ? marks.findLast((m) => m.what === what) : marks.find((m) => m.what === what))?.t;
  const span = (a?: number, b?: number) => (a !== undefined && b !== undefined && b >= a ? { seconds: (b - a) / 1000, ...s.load(a, b) } : undefined);
  return {
    phases,
    named: {
      upload: span(at("dr: upload opened", true), at("upload: all bytes sent")),
      verify: span(at("dr: download opened", true), at("dr: download finalized", true)),
      firstDownload: span(at("dr: download opened"), at("dr: download finalized")),
    },
  };
}
