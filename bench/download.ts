/**
 * Full download throughput against two ceilings for the same ranges, same server, same run:
 *   - curl (the honest one): N curl processes, one keep-alive connection each, into files and
 *     into /dev/null; they share nothing with Node's single thread.
 *   - node: plain parallel ranged GETs from one Node process into a file (the old ceiling; it
 *     shares Ferry's one-thread limit, kept for comparison).
 * `ratioToCurl` = curl-into-files time / Ferry time (same bytes), `ratio` the same against node.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { openImageio } from "../adapters/imageio/mod.ts";
import { BITMAP, cpuPerGiB, kibToMiB, loadAverage, mibps, round3, type BenchContext } from "./context.ts";
import type { ChildResult } from "./child.ts";

export const name = "download";

export interface FullLayer {
  path: string;
  digests: string;
  checksum: string;
  bytes: number;
  seconds: number;
}

/**
 * What the child's probe saw: the memory split at the highest RSS (anonymous vs file pages, V8
 * heap, external, ArrayBuffers), CPU seconds per thread name (MainThread, WorkerThread = hashing,
 * V8Worker = V8's GC and compiler threads, libuv-worker) and per child process (qemu-nbd, qemu-img).
 */
export function probeFigures(r: ChildResult) {
  return r.probe ? { atPeakRss: r.probe.peak, threadCpuSeconds: r.probe.threadCpuSeconds, childCpuSeconds: r.probe.childCpuSeconds } : null;
}

/** The JSON of one curl ceiling run. */
export function curlFigures(r: ChildResult) {
  return {
    bytes: r.bytes,
    seconds: round3(r.seconds),
    mibPerSecond: mibps(r.bytes, r.seconds),
    cpuSecondsPerGiB: cpuPerGiB(r.curlCpuSeconds ?? 0, r.bytes),
    machineBusyCores: r.machineBusyCores,
    peakRssMiB: kibToMiB(r.curlPeakRssKiB ?? 0),
    sumPeakRssMiB: kibToMiB(r.curlSumPeakRssKiB ?? 0),
  };
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const { connections } = ctx.config;
  const t = await ctx.ticket(ctx.source, { readOnly: true, bitmap: BITMAP });
  const loadBefore = loadAverage();
  try {
    ctx.log("download: curl ceiling (N curl processes into files, then into /dev/null)");
    const curlFile = await ctx.runChild({ kind: "curl-get", url: t.url, caPem: ctx.tls.caPem, workDir: ctx.dir, connections, toFile: true });
    const curlNull = await ctx.runChild({ kind: "curl-get", url: t.url, caPem: ctx.tls.caPem, workDir: ctx.dir, connections, toFile: false });

    ctx.log("download: node ceiling (plain ranged GETs into a file)");
    const ceilingFile = join(ctx.dir, "ceiling.raw");
    const ceiling = await ctx.runChild({ kind: "get-ceiling", url: t.url, caPem: ctx.tls.caPem, output: ceilingFile, connections });
    await rm(ceilingFile, { force: true });

    ctx.log("download: ferry full download");
    const layer: FullLayer = { path: join(ctx.dir, "full.qcow2"), digests: join(ctx.dir, "full.digests"), checksum: "", bytes: 0, seconds: 0 };
    const ferry = await ctx.runChild({
      kind: "download", url: t.url, caPem: ctx.tls.caPem, output: layer.path, incremental: false,
      digestsOut: layer.digests, connections,
    });
    // The same download hashing on its own thread (no hashing threads): what the threads cost in RSS and buy in time.
    ctx.log("download: ferry full download, hashing inline (hashThreads 0)");
    const inlinePath = join(ctx.dir, "full-inline.qcow2");
    const inline = await ctx.runChild({ kind: "download", url: t.url, caPem: ctx.tls.caPem, output: inlinePath, incremental: false, connections, hashThreads: 0 });
    await rm(inlinePath, { force: true });
    layer.checksum = ferry.checksum!;
    layer.bytes = ferry.bytes;
    layer.seconds = ferry.seconds;
    ctx.shared.set("full", layer);
    const loadAfter = loadAverage();

    ctx.log("download: imageio checksum of the source for verification");
    const c = await openImageio(t.url, { caPem: ctx.tls.caPem });
    const imageioChecksum = await c.checksum({ algorithm: "sha256" }).finally(() => c.close());

    return {
      dataBytes: ferry.bytes,
      seconds: round3(ferry.seconds),
      phases: ferry.phases,
      mibPerSecond: mibps(ferry.bytes, ferry.seconds),
      ceiling: { bytes: ceiling.bytes, seconds: round3(ceiling.seconds), mibPerSecond: mibps(ferry.bytes, ceiling.seconds) },
      // Same ranges both ways, so the ratio of throughputs is the ratio of times.
      ratio: round3(ceiling.seconds / ferry.seconds),
      curl: { toFile: curlFigures(curlFile), toDevNull: curlFigures(curlNull) },
      ratioToCurl: round3(curlFile.seconds / ferry.seconds),
      ratioToCurlDevNull: round3(curlNull.seconds / ferry.seconds),
      peakRssMiB: kibToMiB(ferry.vmHwmKiB),
      heap: ferry.heap,
      // Ferry's process tree (the child, its threads, its qemu-nbd and qemu-img), during the transfer.
      cpuSecondsPerGiB: cpuPerGiB(ferry.jobCpuSeconds, ferry.bytes),
      cpuVsCurl: round3(ferry.jobCpuSeconds / Math.max(0.001, curlFile.curlCpuSeconds ?? 0)),
      ceilingPeakRssMiB: kibToMiB(ceiling.vmHwmKiB),
      probe: probeFigures(ferry),
      machineBusyCores: ferry.machineBusyCores,
      inlineHashing: {
        seconds: round3(inline.seconds),
        ratioToCurl: round3(curlFile.seconds / inline.seconds),
        peakRssMiB: kibToMiB(inline.vmHwmKiB),
        cpuSecondsPerGiB: cpuPerGiB(inline.jobCpuSeconds, inline.bytes),
        probe: probeFigures(inline),
        checksumMatches: inline.checksum === ferry.checksum,
      },
      checksumMatchesImageio: imageioChecksum.checksum === ferry.checksum,
      machineLoadAverage: { before: loadBefore, after: loadAfter },
    };
  } finally {
    await t.stop();
  }
}
