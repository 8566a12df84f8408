/**
 * Full download throughput against its ceiling: Ferry's download (GET → qemu-nbd → qcow2, with
 * block digests) versus plain parallel ranged GETs of the same ranges into a file, same
 * connection count, same server, same run.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { openImageio } from "../adapters/imageio/mod.ts";
import { BITMAP, kibToMiB, mibps, round3, type BenchContext } from "./context.ts";

export const name = "download";

export interface FullLayer {
  path: string;
  digests: string;
  checksum: string;
  bytes: number;
}

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const { connections } = ctx.config;
  const t = await ctx.ticket(ctx.source, { readOnly: true, bitmap: BITMAP });
  try {
    ctx.log("download: ceiling (plain ranged GETs into a file)");
    const ceilingFile = join(ctx.dir, "ceiling.raw");
    const ceiling = await ctx.runChild({ kind: "get-ceiling", url: t.url, caPem: ctx.tls.caPem, output: ceilingFile, connections });
    await rm(ceilingFile, { force: true });

    ctx.log("download: ferry full download");
    const layer: FullLayer = { path: join(ctx.dir, "full.qcow2"), digests: join(ctx.dir, "full.digests"), checksum: "", bytes: 0 };
    const ferry = await ctx.runChild({
      kind: "download", url: t.url, caPem: ctx.tls.caPem, output: layer.path, incremental: false,
      digestsOut: layer.digests, connections,
    });
    layer.checksum = ferry.checksum!;
    layer.bytes = ferry.bytes;
    ctx.shared.set("full", layer);

    ctx.log("download: imageio checksum of the source for verification");
    const c = await openImageio(t.url, { caPem: ctx.tls.caPem });
    const imageioChecksum = await c.checksum({ algorithm: "sha256" }).finally(() => c.close());

    return {
      dataBytes: ferry.bytes,
      seconds: round3(ferry.seconds),
      mibPerSecond: mibps(ferry.bytes, ferry.seconds),
      ceiling: { bytes: ceiling.bytes, seconds: round3(ceiling.seconds), mibPerSecond: mibps(ferry.bytes, ceiling.seconds) },
      // Same ranges both ways, so the ratio of throughputs is the ratio of times.
      ratio: round3(ceiling.seconds / ferry.seconds),
      peakRssMiB: kibToMiB(ferry.vmHwmKiB),
      ceilingPeakRssMiB: kibToMiB(ceiling.vmHwmKiB),
      checksumMatchesImageio: imageioChecksum.checksum === ferry.checksum,
    };
  } finally {
    await t.stop();
  }
}
