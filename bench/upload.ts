/**
 * Upload throughput against its ceiling: Ferry's upload of the full layer (qemu-nbd → PUT, with
 * block digests) versus plain parallel PUTs of the same ranges from memory, each into a fresh
 * empty disk behind the lab imageio server.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { kibToMiB, mibps, round3, type BenchContext } from "./context.ts";
import type { FullLayer } from "./download.ts";

export const name = "upload";

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const full = ctx.shared.get("full") as FullLayer | undefined;
  if (!full) throw new Error("upload bench needs the download section's full layer");
  const { connections, virtualSize } = ctx.config;

  const fresh = async (file: string) => {
    await rm(file, { force: true });
    await qemuImg.create({ path: file, format: "qcow2", size: virtualSize });
    return ctx.ticket(file, { readOnly: false });
  };

  const ceilingTarget = join(ctx.dir, "upload-ceiling.qcow2");
  ctx.log("upload: ceiling (plain parallel PUTs)");
  let t = await fresh(ceilingTarget);
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
    peakRssMiB: kibToMiB(ferry.vmHwmKiB),
    ceilingPeakRssMiB: kibToMiB(ceiling.vmHwmKiB),
    checksumMatchesDownload: ferry.checksum === full.checksum,
  };
}
