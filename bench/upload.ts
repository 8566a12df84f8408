/**
 * Upload throughput against its ceilings, each into a fresh empty disk behind the lab imageio
 * server: curl (N `curl -T` processes PUTting the same ranges, the honest ceiling) and plain
 * parallel PUTs from one Node process (the old one). `ratioToCurl` = curl time / Ferry time.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { cpuPerGiB, kibToMiB, loadAverage, mibps, round3, type BenchContext } from "./context.ts";
import { curlFigures, probeFigures, type FullLayer } from "./download.ts";

export const name = "upload";

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const full = ctx.shared.get("full") as FullLayer | undefined;
  if (!full) throw new Error("upload bench needs the download section's full layer");
  const { connections, virtualSize } = ctx.config;
  const loadBefore = loadAverage();

  const fresh = async (file: string) => {
    await rm(file, { force: true });
    await qemuImg.create({ path: file, format: "qcow2", size: virtualSize });
    return ctx.ticket(file, { readOnly: false });
  };

  const curlTarget = join(ctx.dir, "upload-curl.qcow2");
  ctx.log("upload: curl ceiling (N curl -T processes)");
  let t = await fresh(curlTarget);
  const curl = await ctx.runChild({ kind: "curl-put", url: t.url, caPem: ctx.tls.caPem, image: full.path, workDir: ctx.dir, connections }).finally(() => t.stop());
  await rm(curlTarget, { force: true });

  const ceilingTarget = join(ctx.dir, "upload-ceiling.qcow2");
  ctx.log("upload: node ceiling (plain parallel PUTs)");
  t = await fresh(ceilingTarget);
  const ceiling = await ctx.runChild({ kind: "put-ceiling", url: t.url, caPem: ctx.tls.caPem, image: full.path, connections }).finally(() => t.stop());
  await rm(ceilingTarget, { force: true });

  ctx.log("upload: ferry upload");
  const target = join(ctx.dir, "upload-target.qcow2");
  t = await fresh(target);
  const ferry = await ctx.runChild({ kind: "upload", url: t.url, caPem: ctx.tls.caPem, image: full.path, connections, diskIsZero: true }).finally(() => t.stop());
  await rm(target, { force: true });

  return {
    dataBytes: ferry.bytes,
    seconds: round3(ferry.seconds),
    mibPerSecond: mibps(ferry.bytes, ferry.seconds),
    ceiling: { bytes: ceiling.bytes, seconds: round3(ceiling.seconds), mibPerSecond: mibps(ferry.bytes, ceiling.seconds) },
    ratio: round3(ceiling.seconds / ferry.seconds),
    curl: curlFigures(curl),
    ratioToCurl: round3(curl.seconds / ferry.seconds),
    peakRssMiB: kibToMiB(ferry.vmHwmKiB),
    heap: ferry.heap,
    cpuSecondsPerGiB: cpuPerGiB(ferry.jobCpuSeconds, ferry.bytes),
    cpuVsCurl: round3(ferry.jobCpuSeconds / Math.max(0.001, curl.curlCpuSeconds ?? 0)),
    ceilingPeakRssMiB: kibToMiB(ceiling.vmHwmKiB),
    probe: probeFigures(ferry),
    machineBusyCores: ferry.machineBusyCores,
    checksumMatchesDownload: ferry.checksum === full.checksum,
    machineLoadAverage: { before: loadBefore, after: loadAverage() },
  };
}
