/**
 * The transfer engine against the lab imageio server over real qemu-nbd exports: a full and an
 * incremental download (dirty bitmap), an upload of the resulting chain, cancellation, a
 * dropped connection and a 403.
 */
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { PassThrough } from "node:stream";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openImageio } from "../adapters/imageio/mod.ts";
import { qemuImg, type QemuNbdServer } from "../adapters/qemu/mod.ts";
import { startImageioServer, type ImageioServer } from "../lab/imageio/mod.ts";
import { exportImage, guestWrite, makeSource, makeTls, MiB, nbdUrl, qemuNbdPidsMentioning, type TlsFiles } from "../bench/lab-fixture.ts";
import transfer from "../cli/commands/transfer.ts";
import { TransferCancelledError, digestLocalImage, download, upload, writeDigestsFile, type BlockDigests } from "../dataplane/mod.ts";

const SIZE = 64 * MiB + 192 * 1024; // the last checksum block is short
const BITMAP = "ck1";

let dir: string;
let tls: TlsFiles;
let imageio: ImageioServer;
let source: string;
let src: string;
const exports: QemuNbdServer[] = [];
let full: { path: string; digests: BlockDigests; checksum: string } | undefined;
let incr: { path: string; checksum: string } | undefined;

async function ticketFor(image: string, o: { name: string; readOnly: boolean; bitmap?: string }): Promise<{ url: string; uuid: string; server: QemuNbdServer }> {
  const server = await exportImage(image, dir, o);
  exports.push(server);
  const uuid = randomUUID();
  await imageio.addTicket({
    uuid,
    size: SIZE,
    ops: o.readOnly ? ["read"] : ["read", "write"],
    timeout: 300,
    url: nbdUrl(server),
    dirty: !!o.bitmap,
    sparse: true,
  });
  return { url: `${imageio.url}/images/${uuid}`, uuid, server };
}

async function stopExport(server: QemuNbdServer): Promise<void> {
  await server.stop();
  exports.splice(exports.indexOf(server), 1);
}

async function imageioChecksum(url: string): Promise<string> {
  const c = await openImageio(url, { caPem: tls.caPem });
  try {
    return (await c.checksum({ algorithm: "sha256" })).checksum;
  } finally {
    await c.close();
  }
}

async function identical(a: string, b: string): Promise<string> {
  const r = await qemuImg.compare(a, b, { formatA: "qcow2", formatB: "qcow2", forceShare: true });
  return r.identical ? "identical" : r.detail;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-dp-xfer-"));
  tls = await makeTls(dir);
  imageio = await startImageioServer({ host: "127.0.0.1", port: 0, tls: { cert: tls.cert, key: tls.key } });
  source = await makeSource(dir, 8 * MiB);
  src = join(dir, "src.qcow2");
  await qemuImg.create({ path: src, format: "qcow2", size: SIZE });
  await guestWrite(src, [
    { op: "write", offset: 0, length: 6 * MiB },
    { op: "write", offset: 6 * MiB + 128 * 1024, length: 64 * 1024 }, // a short zero gap: one coalesced GET
    { op: "write", offset: 12 * MiB, length: 8 * MiB },
    { op: "write", offset: 30 * MiB + 4096, length: MiB },
    { op: "write", offset: 40 * MiB, length: 8 * MiB },
    { op: "write", offset: 64 * MiB, length: 192 * 1024 },
  ], source);
  // The checkpoint: from here on the persistent bitmap records every write.
  await qemuImg.bitmap(src, { op: "add", name: BITMAP, format: "qcow2" });
});

afterAll(async () => {
  for (const e of exports) await e.stop().catch(() => {});
  await imageio?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("dataplane transfer", () => {
  it("download - a full download equals the source and its checksum equals imageio's", async () => {
    const t = await ticketFor(src, { name: "full", readOnly: true, bitmap: BITMAP });
    const out = join(dir, "full.qcow2");
    const seen: number[] = [];
    const r = await download({ transferUrl: t.url, caPem: tls.caPem, output: out, incremental: false, connections: 4, onProgress: (p) => seen.push(p.bytes) });
    expect(await identical(out, src)).toBe("identical");
    expect(r.virtualSize).toBe(SIZE);
    // Allocation is per 64 KiB cluster: the unaligned 1 MiB write at 30 MiB + 4 KiB spans 17 clusters.
    expect(r.bytes).toBe(6 * MiB + 64 * 1024 + 8 * MiB + (MiB + 64 * 1024) + 8 * MiB + 192 * 1024);
    expect(r.checksum).toBe(await imageioChecksum(t.url));
    expect(seen.at(-1)).toBe(r.bytes);
    const info = await qemuImg.info(out, { format: "qcow2" });
    expect(info.backingFilename).toBeUndefined();
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect((await readdir(dir)).filter((f) => f.includes(".part-"))).toEqual([]);
    full = { path: out, digests: { blockSize: r.blockSize, virtualSize: r.virtualSize, digests: r.digests }, checksum: r.checksum };
    await stopExport(t.server);
  });

  it("download - an incremental onto the full layer equals the source at the new point, checksum included", async () => {
    expect(full).toBeDefined();
    await guestWrite(src, [
      { op: "write", offset: 2 * MiB, length: 64 * 1024 }, // partial block, backing data around it
      { op: "zero", offset: 12 * MiB, length: 4 * MiB }, // dirty and zero: must hide the old data
      { op: "write", offset: 24 * MiB, length: 3 * MiB }, // new data where there was none
      { op: "write", offset: 44 * MiB + 512 * 1024, length: 512 * 1024 },
      { op: "write", offset: 64 * MiB + 64 * 1024, length: 64 * 1024 }, // in the short last block
    ], source);
    const t = await ticketFor(src, { name: "incr", readOnly: true, bitmap: BITMAP });
    const out = join(dir, "incr.qcow2");
    const r = await download({
      transferUrl: t.url, caPem: tls.caPem, output: out, incremental: true,
      backing: { path: full!.path }, previousDigests: full!.digests,
    });
    expect(await identical(out, src)).toBe("identical");
    const expected = await imageioChecksum(t.url);
    expect(r.checksum).toBe(expected);
    expect(r.checksum).not.toBe(full!.checksum);
    // Only dirty data moved (the bitmap's 64 KiB granularity at most rounds it up).
    expect(r.bytes).toBe(64 * 1024 + 3 * MiB + 512 * 1024 + 64 * 1024);
    expect(r.zeroBytes).toBe(4 * MiB);
    const info = await qemuImg.info(out, { format: "qcow2" });
    expect(info.backingFilename).toBe("full.qcow2");
    // The digests stand on their own: hashing the stored chain gives the same checksum.
    expect((await digestLocalImage({ image: out, format: "qcow2" })).checksum).toBe(expected);
    // Without the previous digests, clean blocks are read back from the chain: same answer.
    const again = await download({
      transferUrl: t.url, caPem: tls.caPem, output: join(dir, "incr-nodigests.qcow2"), incremental: true, backing: { path: full!.path },
    });
    expect(again.checksum).toBe(expected);
    incr = { path: out, checksum: r.checksum };
    await stopExport(t.server);
  });

  it("upload - the qcow2 chain into a new empty disk gives an identical image", async () => {
    expect(incr).toBeDefined();
    const target = join(dir, "target.qcow2");
    await qemuImg.create({ path: target, format: "qcow2", size: SIZE });
    const t = await ticketFor(target, { name: "up", readOnly: false });
    const r = await upload({ image: incr!.path, transferUrl: t.url, caPem: tls.caPem, diskIsZero: true, connections: 4 });
    expect(r.checksum).toBe(incr!.checksum);
    expect(r.zeroBytes).toBe(0);
    expect(await imageioChecksum(t.url)).toBe(incr!.checksum);
    await stopExport(t.server);
    expect(await identical(target, src)).toBe("identical");
  });

  it("upload - onto a disk holding old data, zero ranges are zeroed and the image is identical", async () => {
    expect(incr).toBeDefined();
    const target = join(dir, "dirty-target.qcow2");
    await qemuImg.create({ path: target, format: "qcow2", size: SIZE });
    await guestWrite(target, [{ op: "write", offset: 0, length: 8 * MiB }, { op: "write", offset: 50 * MiB, length: 8 * MiB }], source);
    const t = await ticketFor(target, { name: "up2", readOnly: false });
    const r = await upload({ image: incr!.path, transferUrl: t.url, caPem: tls.caPem });
    expect(r.zeroBytes).toBeGreaterThan(0);
    expect(r.checksum).toBe(incr!.checksum);
    await stopExport(t.server);
    expect(await identical(target, src)).toBe("identical");
  });

  it("ferry transfer - an incremental finds the previous layer's digests beside it (no --previous-digests)", async () => {
    expect(full).toBeDefined();
    // The bitmap still holds every change since the full layer: the same incremental again, by the CLI.
    await writeDigestsFile(join(dir, "full.digests"), full!.digests);
    const t = await ticketFor(src, { name: "cli-incr", readOnly: true, bitmap: BITMAP });
    try {
      const c = cliIo();
      const code = await transfer.run(["download", t.url, "cli-incr.qcow2", "--ca", tls.caFile, "--incremental", "--backing", "full.qcow2", "--json"], c.io);
      expect(c.stderr).toMatch(/previous digests from .*full\.digests/);
      expect(code).toBe(0);
      const summary = JSON.parse(c.stdout) as { checksum: { value: string } };
      expect(summary.checksum.value).toBe(await imageioChecksum(t.url));
      expect(await identical(join(dir, "cli-incr.qcow2"), src)).toBe("identical");
    } finally {
      await stopExport(t.server);
    }
  });

  it("ferry transfer - download and upload print a JSON summary, never the ticket", async () => {
    expect(incr).toBeDefined();
    const t = await ticketFor(src, { name: "cli", readOnly: true });
    try {
      const dl = cliIo();
      const code = await transfer.run(["download", t.url, "cli.qcow2", "--ca", tls.caFile, "--connections", "2", "--json"], dl.io);
      expect(dl.stderr).not.toContain(t.uuid);
      expect(code).toBe(0);
      const summary = JSON.parse(dl.stdout) as { operation: string; bytes: number; seconds: number; mibPerSecond: number; checksum: { algorithm: string; blockSize: number; value: string } };
      expect(summary.operation).toBe("download");
      expect(summary.bytes).toBeGreaterThan(0);
      expect(summary.mibPerSecond).toBeGreaterThan(0);
      expect(summary.checksum).toEqual({ algorithm: "sha256", blockSize: 4194304, value: await imageioChecksum(t.url) });
      expect(dl.stderr).toMatch(/download: 100%/); // not a TTY: plain progress lines
      expect(await identical(join(dir, "cli.qcow2"), src)).toBe("identical");

      const again = cliIo();
      expect(await transfer.run(["download", t.url, "cli.qcow2", "--ca", tls.caFile], again.io)).toBe(4);
      expect(again.stderr).toMatch(/already exists/);
      expect(again.stderr).not.toContain(t.uuid);

      const bad = cliIo();
      expect(await transfer.run(["download", t.url, "x.qcow2", "--incremental"], bad.io)).toBe(2);
      expect(bad.stderr).toMatch(/--incremental needs --backing/);
    } finally {
      await stopExport(t.server);
    }

    const target = join(dir, "cli-target.qcow2");
    await qemuImg.create({ path: target, format: "qcow2", size: SIZE });
    const u = await ticketFor(target, { name: "cliup", readOnly: false });
    try {
      const up = cliIo();
      const code = await transfer.run(["upload", "incr.qcow2", u.url, "--ca", tls.caFile, "--disk-is-zero", "--json"], up.io);
      expect(up.stderr).not.toContain(u.uuid);
      expect(code).toBe(0);
      expect((JSON.parse(up.stdout) as { checksum: { value: string } }).checksum.value).toBe(incr!.checksum);
    } finally {
      await stopExport(u.server);
    }
    expect(await identical(target, src)).toBe("identical");
  });

  it("download - cancellation leaves no temp file and no qemu-nbd", async () => {
    const t = await ticketFor(src, { name: "cancel", readOnly: true });
    const outDir = join(dir, "cancel");
    await mkdir(outDir);
    const ac = new AbortController();
    const p = download({
      transferUrl: t.url, caPem: tls.caPem, output: join(outDir, "x.qcow2"), incremental: false, connections: 2,
      pieceSize: 4 * MiB, signal: ac.signal,
      onProgress: () => ac.abort(new Error("user pressed ctrl-c")),
    });
    await expect(p).rejects.toBeInstanceOf(TransferCancelledError);
    expect(await readdir(outDir)).toEqual([]);
    expect(await qemuNbdPidsMentioning(`${outDir}/`)).toEqual([]);
    await stopExport(t.server);
  });

  it("upload - cancellation stops the local qemu-nbd", async () => {
    expect(incr).toBeDefined();
    const target = join(dir, "cancel-target.qcow2");
    await qemuImg.create({ path: target, format: "qcow2", size: SIZE });
    const t = await ticketFor(target, { name: "upcancel", readOnly: false });
    const ac = new AbortController();
    const p = upload({
      image: incr!.path, transferUrl: t.url, caPem: tls.caPem, diskIsZero: true, pieceSize: 4 * MiB, connections: 1,
      signal: ac.signal, onProgress: () => ac.abort(new Error("stop")),
    });
    await expect(p).rejects.toBeInstanceOf(TransferCancelledError);
    expect(await qemuNbdPidsMentioning(incr!.path)).toEqual([]);
    await stopExport(t.server);
  });

  it("download - a connection dropped mid-range is retried and the result is identical", async () => {
    const t = await ticketFor(src, { name: "drop", readOnly: true });
    const proxy = await dropOnceProxy(new URL(imageio.url).port, 3 * MiB);
    try {
      const url = `https://127.0.0.1:${proxy.port}/images/${t.uuid}`;
      const out = join(dir, "dropped.qcow2");
      const r = await download({ transferUrl: url, caPem: tls.caPem, output: out, incremental: false, connections: 2 });
      expect(proxy.dropped()).toBe(1);
      expect(await identical(out, src)).toBe("identical");
      expect(r.checksum).toBe(await imageioChecksum(t.url));
    } finally {
      await proxy.close();
      await stopExport(t.server);
    }
  });

  it("download - injected 503s and a server-side drop mid-body are retried, the result identical", async () => {
    const t = await ticketFor(src, { name: "faults", readOnly: true });
    try {
      imageio.faults.failNext(503, 2, "GET", /^\/images\/[^/]+$/);
      imageio.faults.dropConnectionAfterBytes(5 * MiB, t.uuid);
      const out = join(dir, "faults.qcow2");
      const r = await download({ transferUrl: t.url, caPem: tls.caPem, output: out, incremental: false, connections: 3 });
      expect(await identical(out, src)).toBe("identical");
      expect(r.checksum).toBe(await imageioChecksum(t.url));
    } finally {
      imageio.faults.clear();
      await stopExport(t.server);
    }
  });

  it("upload - injected 500s on PATCH zero are retried and the image is identical", async () => {
    expect(incr).toBeDefined();
    const target = join(dir, "retry-target.qcow2");
    await qemuImg.create({ path: target, format: "qcow2", size: SIZE });
    await guestWrite(target, [{ op: "write", offset: 12 * MiB, length: 8 * MiB }], source);
    const t = await ticketFor(target, { name: "upretry", readOnly: false });
    try {
      // Not on a PUT: the lab answers before reading the body and half-closes, which parks the
      // socket until its 60 s idle timeout (reported to the lab owner).
      imageio.faults.failNext(500, 2, "PATCH");
      const r = await upload({ image: incr!.path, transferUrl: t.url, caPem: tls.caPem, connections: 1 });
      expect(r.zeroBytes).toBeGreaterThan(0);
      expect(r.checksum).toBe(incr!.checksum);
    } finally {
      imageio.faults.clear();
      await stopExport(t.server);
    }
    expect(await identical(target, src)).toBe("identical");
  });

  it("download - a 403 mid-transfer aborts without retrying and cleans up", async () => {
    const t = await ticketFor(src, { name: "forbid", readOnly: true });
    const outDir = join(dir, "forbid");
    await mkdir(outDir);
    try {
      let armed = false;
      const err = await download({
        transferUrl: t.url, caPem: tls.caPem, output: join(outDir, "x.qcow2"), incremental: false, connections: 1, pieceSize: 4 * MiB,
        // One 403 on the next GET: a retry would succeed, so failing proves there was none.
        onProgress: () => {
          if (!armed) imageio.faults.failNext(403, 1, "GET");
          armed = true;
        },
      }).catch((e: unknown) => e);
      expect(armed).toBe(true);
      expect((err as { code?: string }).code).toMatch(/FORBIDDEN|403/);
      expect(await readdir(outDir)).toEqual([]);
      expect(await qemuNbdPidsMentioning(`${outDir}/`)).toEqual([]);
    } finally {
      imageio.faults.clear();
      await stopExport(t.server);
    }
  });

  it("download - a 403 (ticket gone) fails at once and leaves nothing behind", async () => {
    const t = await ticketFor(src, { name: "gone", readOnly: true });
    await imageio.removeTicket(t.uuid);
    const outDir = join(dir, "gone");
    await mkdir(outDir);
    const started = performance.now();
    const err = await download({ transferUrl: t.url, caPem: tls.caPem, output: join(outDir, "x.qcow2"), incremental: false }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toMatch(/FORBIDDEN|403/);
    expect(String((err as Error).message)).not.toContain(t.uuid);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(await readdir(outDir)).toEqual([]);
    await stopExport(t.server);
  });
});

function cliIo() {
  const out = new PassThrough();
  const err = new PassThrough();
  const r = { stdout: "", stderr: "", io: { stdout: out, stderr: err, env: {}, cwd: dir, signal: new AbortController().signal } };
  out.on("data", (d: Buffer) => (r.stdout += d.toString()));
  err.on("data", (d: Buffer) => (r.stderr += d.toString()));
  return r;
}

/**
 * A TCP relay in front of the imageio server that cuts the first connection once it has relayed
 * `after` bytes of response (TLS passes through untouched, so the client sees a reset mid-body).
 */
async function dropOnceProxy(targetPort: string, after: number) {
  let drops = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(Number(targetPort), "127.0.0.1");
    sockets.add(client).add(upstream);
    let relayed = 0;
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d: Buffer) => {
      relayed += d.length;
      if (drops === 0 && relayed > after) {
        drops++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(d);
    });
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
    dropped: () => drops,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
