/**
 * `ferry transfer download|upload` as a real process, stopped by SIGINT or SIGTERM mid-transfer
 * (the lab imageio server behind a throttling proxy, so the transfer is still running when the
 * signal arrives): it says "interrupted", exits 130 / 143, and leaves no partial layer, no temp
 * directory (TMPDIR is a fresh directory per run, so the check is exact) and no qemu-nbd.
 * An interrupted upload leaves the transfer open (`ferry transfer upload` only has its URL; the
 * transfer's owner cancels or finalizes it): the same upload can be run again.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { qemuImg, type QemuNbdServer } from "../adapters/qemu/mod.ts";
import { startImageioServer, type ImageioServer } from "../lab/imageio/mod.ts";
import { exportImage, guestWrite, makeSource, makeTls, MiB, nbdUrl, qemuNbdPidsMentioning, type TlsFiles } from "../bench/lab-fixture.ts";
import { upload } from "../dataplane/mod.ts";
import { waitFor } from "./harness/wait-for.ts";

const repo = fileURLToPath(new URL("../", import.meta.url));
const ferry = join(repo, "cli/ferry.mjs");
const SIZE = 64 * MiB;
/** Per proxied connection and direction: 64 MiB over 2 connections take ~16 s. */
const RATE = 2 * MiB;

let dir: string;
let tls: TlsFiles;
let imageio: ImageioServer;
let src: string;
let proxy: ThrottleProxy;
const exports: QemuNbdServer[] = [];

async function ticketFor(image: string, o: { name: string; readOnly: boolean }): Promise<{ url: string; direct: string; uuid: string }> {
  const server = await exportImage(image, dir, o);
  exports.push(server);
  const uuid = randomUUID();
  await imageio.addTicket({ uuid, size: SIZE, ops: o.readOnly ? ["read"] : ["read", "write"], timeout: 300, url: nbdUrl(server), dirty: false, sparse: true });
  return { url: `https://127.0.0.1:${proxy.port}/images/${uuid}`, direct: `${imageio.url}/images/${uuid}`, uuid };
}

interface Run {
  readonly pid: number;
  readonly tmp: string;
  stderr(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `ferry transfer ...` with TMPDIR set to a fresh directory (tsx keeps its cache there too). */
async function ferryTransfer(name: string, args: string[]): Promise<Run> {
  const tmp = await mkdtemp(join(dir, `tmp-${name}-`));
  const child = spawn(process.execPath, [ferry, "transfer", ...args], { cwd: repo, env: { ...process.env, TMPDIR: tmp }, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return { pid: child.pid!, tmp, stderr: () => err, exited };
}

/** What the run left in its TMPDIR, apart from tsx's compile cache. */
async function leftInTmp(run: Run): Promise<string[]> {
  return (await readdir(run.tmp)).filter((n) => !n.startsWith("tsx-"));
}

async function expectInterrupted(run: Run, signal: "SIGINT" | "SIGTERM"): Promise<void> {
  process.kill(run.pid, signal);
  const exit = await run.exited;
  expect(exit, run.stderr()).toEqual({ code: signal === "SIGINT" ? 130 : 143, signal: null });
  const lines = run.stderr().trimEnd().split("\n");
  expect(lines.at(-1)).toBe("ferry transfer: interrupted");
  expect(lines.filter((l) => /interrupted|cancel|error|fail/i.test(l))).toEqual(["ferry transfer: interrupted"]);
  expect(await leftInTmp(run)).toEqual([]);
  expect(await qemuNbdPidsMentioning(`${run.tmp}/`)).toEqual([]);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-xfer-int-"));
  tls = await makeTls(dir);
  imageio = await startImageioServer({ host: "127.0.0.1", port: 0, tls: { cert: tls.cert, key: tls.key } });
  const source = await makeSource(dir, 8 * MiB);
  src = join(dir, "src.qcow2");
  await qemuImg.create({ path: src, format: "qcow2", size: SIZE });
  await guestWrite(src, Array.from({ length: SIZE / (8 * MiB) }, (_, i) => ({ op: "write" as const, offset: i * 8 * MiB, length: 8 * MiB })), source);
  proxy = await throttleProxy(Number(new URL(imageio.url).port), RATE);
});

afterAll(async () => {
  for (const e of exports) await e.stop().catch(() => {});
  await proxy?.close();
  await imageio?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("ferry transfer, interrupted", () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`download - ${signal} mid-transfer: "interrupted", exit ${signal === "SIGINT" ? 130 : 143}, no partial layer, no temp dir, no qemu-nbd`, async () => {
      const t = await ticketFor(src, { name: `dl-${signal}`, readOnly: true });
      const out = join(dir, `out-${signal}`);
      await mkdir(out);
      const run = await ferryTransfer(`dl-${signal}`, ["download", t.url, join(out, "disk.qcow2"), "--ca", tls.caFile, "--connections", "2"]);
      // The partial layer exists and is growing: the transfer is well under way.
      await waitFor(
        async () => {
          for (const name of await readdir(out)) if (name.startsWith(".disk.qcow2.part-") && (await stat(join(out, name))).size > 4 * MiB) return true;
          return false;
        },
        { what: () => `a growing .part file in ${out} (stderr: ${run.stderr()})`, timeoutMs: 60_000, intervalMs: 50 },
      );
      expect(await qemuNbdPidsMentioning(`${out}/`)).toHaveLength(1);
      await expectInterrupted(run, signal);
      expect(await readdir(out)).toEqual([]);
      expect(await qemuNbdPidsMentioning(`${out}/`)).toEqual([]);
    });
  }

  it("upload - SIGTERM mid-transfer: no temp dir, no qemu-nbd; the transfer stays open and a new upload completes it", async () => {
    const target = join(dir, "target.qcow2");
    await qemuImg.create({ path: target, format: "qcow2", size: SIZE });
    const t = await ticketFor(target, { name: "up", readOnly: false });
    const before = proxy.sentUp();
    const run = await ferryTransfer("up", ["upload", src, t.url, "--ca", tls.caFile, "--connections", "2", "--disk-is-zero"]);
    await waitFor(() => proxy.sentUp() - before > 4 * MiB, { what: () => `4 MiB of PUT data through the proxy (stderr: ${run.stderr()})`, timeoutMs: 60_000, intervalMs: 50 });
    await expectInterrupted(run, "SIGTERM");
    // The ticket is untouched: the same transfer takes a complete upload afterwards.
    expect(imageio.getTicket(t.uuid)).toMatchObject({ canceled: false });
    await upload({ image: src, transferUrl: t.direct, caPem: tls.caPem, diskIsZero: true });
    expect((await qemuImg.compare(target, src, { formatA: "qcow2", formatB: "qcow2", forceShare: true })).identical).toBe(true);
  });
});

interface ThrottleProxy {
  readonly port: number;
  /** Bytes relayed from clients to the server. */
  sentUp(): number;
  close(): Promise<void>;
}

/** A TCP proxy relaying each connection at `rate` bytes/s per direction (TLS passes through). */
async function throttleProxy(targetPort: number, rate: number): Promise<ThrottleProxy> {
  const sockets = new Set<Socket>();
  let up = 0;
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    const relay = (from: Socket, to: Socket, count: (n: number) => void) =>
      from.on("data", (d: Buffer) => {
        count(d.length);
        to.write(d);
        from.pause();
        setTimeout(() => from.resume(), (d.length / rate) * 1000);
      });
    relay(client, upstream, (n) => (up += n));
    relay(upstream, client, () => {});
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as { port: number }).port,
    sentUp: () => up,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
