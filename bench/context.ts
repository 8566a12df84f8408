/**
 * Shared setup for the transfer benchmarks: a work directory, a TLS certificate, the lab imageio
 * server (in this process), a source disk of `virtualSize` with `dataBytes` of guest data and a
 * persistent bitmap, and a way to run one measured job in a child process.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { qemuImg, type QemuNbdServer } from "../adapters/qemu/mod.ts";
import { startImageioServer, type ImageioServer } from "../lab/imageio/mod.ts";
import type { ChildJob, ChildResult } from "./child.ts";
import { FERRY_NODE_FLAGS } from "../cli/node-flags.ts";
import { GiB, MiB, exportImage, guestWrite, layoutRuns, makeSource, makeTls, nbdUrl, type TlsFiles } from "./lab-fixture.ts";

export const BITMAP = "ck-bench";

export interface BenchConfig {
  scale: number;
  virtualSize: number;
  dataBytes: number;
  dirtySizes: number[];
  connections: number;
  workDir?: string;
}

/** Sizes from the issue (8 GiB virtual, 2 GiB data; 1 % (82 MiB) / 256 MiB / 1 GiB dirty) times `scale`. */
export function benchConfig(scale: number, connections = 4): BenchConfig {
  const round = (n: number, unit: number) => Math.max(unit, Math.round(n / unit) * unit);
  return {
    scale,
    virtualSize: round(8 * GiB * scale, 4 * MiB),
    dataBytes: round(2 * GiB * scale, MiB),
    // 1 % of the disk (the small incremental), then 256 MiB and 1 GiB.
    dirtySizes: [0.01 * 8 * GiB, 256 * MiB, 1 * GiB].map((n) => round(n * scale, 64 * 1024)),
    connections,
  };
}

export interface Ticket {
  url: string;
  uuid: string;
  stop(): Promise<void>;
}

export interface BenchContext {
  readonly config: BenchConfig;
  readonly dir: string;
  readonly tls: TlsFiles;
  readonly imageio: ImageioServer;
  /** The source disk (qcow2) with its data and the bitmap BITMAP. */
  readonly source: string;
  /** Random bytes qemu-io copies into guest writes. */
  readonly pattern: string;
  /** Results sections leave for later ones (e.g. the full layer for incrementals and upload). */
  readonly shared: Map<string, unknown>;
  log(msg: string): void;
  ticket(image: string, o: { readOnly: boolean; bitmap?: string }): Promise<Ticket>;
  runChild(job: ChildJob): Promise<ChildResult>;
  close(): Promise<void>;
}

const childScript = fileURLToPath(new URL("./child.ts", import.meta.url));

export async function createBenchContext(config: BenchConfig, log: (msg: string) => void): Promise<BenchContext> {
  const dir = await mkdtemp(join(config.workDir ?? tmpdir(), "ferry-bench-"));
  const exports = new Set<QemuNbdServer>();
  let imageio: ImageioServer | undefined;
  try {
    const tls = await makeTls(dir);
    imageio = await startImageioServer({ host: "127.0.0.1", port: 0, tls: { cert: tls.cert, key: tls.key } });
    const pattern = await makeSource(dir, 16 * MiB);
    const source = join(dir, "source.qcow2");
    await qemuImg.create({ path: source, format: "qcow2", size: config.virtualSize });
    const t0 = performance.now();
    log(`writing ${(config.dataBytes / MiB).toFixed(0)} MiB of guest data into a ${(config.virtualSize / GiB).toFixed(2)} GiB disk`);
    await guestWrite(source, layoutRuns(config.virtualSize, config.dataBytes, 1), pattern);
    await qemuImg.bitmap(source, { op: "add", name: BITMAP, format: "qcow2" });
    log(`source ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const server = imageio;
    let n = 0;
    const ctx: BenchContext = {
      config,
      dir,
      tls,
      imageio: server,
      source,
      pattern,
      shared: new Map(),
      log,
      async ticket(image, o) {
        const nbd = await exportImage(image, dir, { name: `e${n++}`, readOnly: o.readOnly, bitmap: o.bitmap });
        exports.add(nbd);
        const info = await qemuImg.info(image, { format: "qcow2", forceShare: true });
        const uuid = randomUUID();
        await server.addTicket({
          uuid,
          size: info.virtualSize,
          ops: o.readOnly ? ["read"] : ["read", "write"],
          timeout: 3600,
          url: nbdUrl(nbd),
          dirty: !!o.bitmap,
          sparse: true,
        });
        return {
          url: `${server.url}/images/${uuid}`,
          uuid,
          async stop() {
            await server.removeTicket(uuid).catch(() => {});
            await nbd.stop();
            exports.delete(nbd);
          },
        };
      },
      async runChild(job) {
        // FERRY_BENCH_PROFILE_DIR: each child writes a V8 CPU profile there (node --cpu-prof).
        const prof = process.env.FERRY_BENCH_PROFILE_DIR;
        const flags = prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`, `--cpu-prof-name=${job.kind}-${Date.now()}.cpuprofile`] : [];
        // Node's own type stripping, as `ferry` runs (no tsx: its loader and esbuild are not the transfer's cost).
        const cpu0 = machineCpuTicks();
        // Ferry's own V8 flags (cli/node-flags.ts), as `ferry transfer` and `ferry run` start with.
        const r = await execa(process.execPath, [...FERRY_NODE_FLAGS, ...flags, childScript], {
          input: JSON.stringify(job),
          // glibc gives each thread its own malloc arena; two bound the RSS the hashing threads add.
          env: { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? "2" },
          reject: false,
          stderr: "pipe",
        });
        if (r.exitCode !== 0) throw new Error(`bench child ${job.kind} failed: ${String(r.stderr).slice(-2000)}`);
        const result = JSON.parse(String(r.stdout).trim().split("\n").at(-1)!) as ChildResult;
        return { ...result, machineBusyCores: busyCores(cpu0, machineCpuTicks()) };
      },
      async close() {
        for (const e of exports) await e.stop().catch(() => {});
        await server.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
    return ctx;
  } catch (err) {
    for (const e of exports) await e.stop().catch(() => {});
    await imageio?.close();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The machine's CPU ticks from /proc/stat's first line: [busy, idle + iowait]. */
function machineCpuTicks(): [number, number] {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + f[4]!;
  return [f.reduce((a, b) => a + b, 0) - idle, idle];
}

/** Cores busy on the whole machine between two samples (2.0 on this VM = no idle CPU left). */
function busyCores(a: [number, number], b: [number, number]): number {
  const busy = b[0] - a[0];
  const all = busy + b[1] - a[1];
  return Number((all > 0 ? (busy / all) * cpus().length : 0).toFixed(2));
}

export const mibps = (bytes: number, seconds: number) => Number((seconds > 0 ? bytes / MiB / seconds : 0).toFixed(1));
export const round3 = (n: number) => Number(n.toFixed(3));
export const kibToMiB = (k: number) => Number((k / 1024).toFixed(1));
/** CPU seconds (user + sys) per GiB of data moved. */
export const cpuPerGiB = (cpuSeconds: number, bytes: number) => Number((bytes > 0 ? cpuSeconds / (bytes / GiB) : 0).toFixed(3));
/** The machine's 1-minute load average now (other engineers' work included). */
export const loadAverage = () => Number(loadavg()[0]!.toFixed(2));

export { guestWrite, layoutRuns, GiB, MiB };
