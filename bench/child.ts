/**
 * One measured job in its own process, so its peak RSS is its own: a Ferry download or upload,
 * or the "ceiling" for the same ranges (plain parallel ranged GETs into a file, plain parallel
 * PUTs). Reads the job as JSON on stdin, prints one JSON result line on stdout.
 */
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { open, readFile } from "node:fs/promises";
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
    }
  | { kind: "upload"; url: string; caPem: string; image: string; connections: number; diskIsZero: boolean }
  | { kind: "get-ceiling"; url: string; caPem: string; output: string; connections: number }
  | { kind: "put-ceiling"; url: string; caPem: string; image: string; connections: number };

export interface ChildResult {
  bytes: number;
  seconds: number;
  checksum?: string;
  /** User + system CPU of the whole child (startup included). */
  cpuSeconds: number;
  maxRssKiB: number;
  vmHwmKiB: number;
}

function pool(url: string, caPem: string, connections: number): Pool {
  return new Pool(new URL(url).origin, { connections, pipelining: 1, connect: { ca: caPem } });
}

/** The same ranges Ferry's download fetches (same plan, same piece size). */
async function downloadRanges(p: Pool, path: string): Promise<Range[]> {
  const res = await p.request({ method: "GET", path: `${path}/extents?context=zero` });
  if (res.statusCode !== 200) throw new Error(`extents: HTTP ${res.statusCode}`);
  const extents = (await res.body.json()) as { start: number; length: number; zero: boolean }[];
  const plan = planTransfer(downloadSegments(extents, { incremental: false, hasBacking: false }), { blockSize: 4 << 20, pieceSize: PIECE_SIZE });
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

async function vmHwmKiB(): Promise<number> {
  const status = await readFile("/proc/self/status", "utf8");
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

async function main(): Promise<void> {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const job = JSON.parse(input) as ChildJob;
  let out: { bytes: number; seconds: number; checksum?: string };
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
      });
      if (job.digestsOut) await writeDigestsFile(job.digestsOut, { blockSize: r.blockSize, virtualSize: r.virtualSize, digests: r.digests });
      out = { bytes: r.bytes, seconds: r.seconds, checksum: r.checksum };
      break;
    }
    case "upload": {
      const r = await upload({ image: job.image, transferUrl: job.url, caPem: job.caPem, connections: job.connections, diskIsZero: job.diskIsZero });
      out = { bytes: r.bytes, seconds: r.seconds, checksum: r.checksum };
      break;
    }
    case "get-ceiling":
      out = await getCeiling(job);
      break;
    case "put-ceiling":
      out = await putCeiling(job);
      break;
  }
  const cpu = process.cpuUsage();
  const result: ChildResult = {
    ...out,
    cpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)),
    maxRssKiB: process.resourceUsage().maxRSS,
    vmHwmKiB: await vmHwmKiB(),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
