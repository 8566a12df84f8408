/**
 * Incremental download time against dirty bytes on the same disk: each point writes N dirty
 * bytes, exports the disk with its bitmap and downloads only what changed onto the previous
 * layer. Time should follow the dirty bytes, not the disk size.
 */
import { join } from "node:path";
import { openImageio } from "../adapters/imageio/mod.ts";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { BITMAP, GiB, MiB, cpuPerGiB, guestWrite, kibToMiB, layoutRuns, loadAverage, mibps, round3, type BenchContext } from "./context.ts";
import { probeFigures, type FullLayer } from "./download.ts";

export const name = "incremental";

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const full = ctx.shared.get("full") as FullLayer | undefined;
  if (!full) throw new Error("incremental bench needs the download section's full layer");
  const { connections, virtualSize, dirtySizes } = ctx.config;
  let backing = full.path;
  let previous = full.digests;
  const points: Record<string, unknown>[] = [];
  let lastChecksum: { ferry: string; imageio: string } | undefined;

  for (const [i, dirty] of dirtySizes.entries()) {
    // The bitmap starts empty at the previous point (the full download, then each incremental).
    await qemuImg.bitmap(ctx.source, { op: "clear", name: BITMAP, format: "qcow2" });
    await guestWrite(ctx.source, layoutRuns(virtualSize, dirty, 100 + i, 4 * MiB), ctx.pattern);
    const t = await ctx.ticket(ctx.source, { readOnly: true, bitmap: BITMAP });
    try {
      ctx.log(`incremental: ${(dirty / MiB).toFixed(0)} MiB dirty (curl ceiling of the dirty ranges, then ferry)`);
      const curl = await ctx.runChild({ kind: "curl-get", url: t.url, caPem: ctx.tls.caPem, workDir: ctx.dir, connections, toFile: true, incremental: true });
      const out = join(ctx.dir, `incr-${i}.qcow2`);
      const digestsOut = join(ctx.dir, `incr-${i}.digests`);
      const r = await ctx.runChild({
        kind: "download", url: t.url, caPem: ctx.tls.caPem, output: out, incremental: true,
        backing, previousDigests: previous, digestsOut, connections,
      });
      points.push({
        dirtyBytes: dirty,
        dataBytes: r.bytes,
        seconds: round3(r.seconds),
        mibPerSecond: mibps(r.bytes, r.seconds),
        secondsPerDirtyGiB: round3(r.seconds / (dirty / GiB)),
        peakRssMiB: kibToMiB(r.vmHwmKiB),
        cpuSecondsPerGiB: cpuPerGiB(r.jobCpuSeconds, r.bytes),
        curlSeconds: round3(curl.seconds),
        ratioToCurl: round3(curl.seconds / r.seconds),
        // Where the time goes (open, extents, create, nbd, zeroes, data, finish): the fixed part is all but data.
        phases: r.phases,
        // The goals: ≤ 5 % of the full download's time at 1 % dirty, and per dirty GiB no
        // worse than the full download per GiB of data.
        vsFull: round3(r.seconds / full.seconds),
        perDirtyGiBVsFullPerGiB: round3(r.seconds / (dirty / GiB) / (full.seconds / (full.bytes / GiB))),
        probe: probeFigures(r),
        machineBusyCores: { ferry: r.machineBusyCores, curl: curl.machineBusyCores },
        machineLoadAverage: loadAverage(),
      });
      if (i === dirtySizes.length - 1) {
        const c = await openImageio(t.url, { caPem: ctx.tls.caPem });
        const imageio = await c.checksum({ algorithm: "sha256" }).finally(() => c.close());
        lastChecksum = { ferry: r.checksum!, imageio: imageio.checksum };
      }
      backing = out;
      previous = digestsOut;
    } finally {
      await t.stop();
    }
  }

  // Least-squares fit seconds = fixed + perGiB × dirtyGiB over the points.
  const xs = points.map((p) => (p.dirtyBytes as number) / GiB);
  const ys = points.map((p) => p.seconds as number);
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  const sxx = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  const slope = sxx > 0 ? xs.reduce((a, x, k) => a + (x - mx) * (ys[k]! - my), 0) / sxx : 0;
  const intercept = my - slope * mx;
  const ssTot = ys.reduce((a, y) => a + (y - my) ** 2, 0);
  const ssRes = ys.reduce((a, y, k) => a + (y - (intercept + slope * xs[k]!)) ** 2, 0);
  return {
    virtualSize,
    points,
    fit: { fixedSeconds: round3(intercept), secondsPerDirtyGiB: round3(slope), r2: ssTot > 0 ? round3(1 - ssRes / ssTot) : null },
    checksumMatchesImageio: lastChecksum ? lastChecksum.ferry === lastChecksum.imageio : null,
    peakRssMiB: Math.max(...points.map((p) => p.peakRssMiB as number)),
  };
}
