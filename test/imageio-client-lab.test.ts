/**
 * The imageio client against the lab imageio daemon over real qemu-nbd exports of a qcow2 image:
 * OPTIONS, extents (zero and dirty, from a real persistent bitmap), ranged reads, the sha256 block
 * checksum, write/zero/flush on a writable export, retries after a dropped connection, and a 403
 * that never shows the ticket.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DirtyExtentsUnsupportedError,
  ImageioConnectionError,
  ImageioForbiddenError,
  openImageio,
  withRetry,
} from "../adapters/imageio/mod.ts";
import { makeTestPki, type TestPki } from "../adapters/ovirt/testing/test-pki.ts";
import { qemuImg, startQemuNbd, type QemuNbdServer } from "../adapters/qemu/mod.ts";
import { startImageioServer, type ImageioServer } from "../lab/imageio/mod.ts";
import { errorText } from "./harness/error-text.ts";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

let dir: string;
let pki: TestPki;
let imageio: ImageioServer;
let source: string;
let target: string;
const exportsToStop: QemuNbdServer[] = [];
let readUrl: string;
let readTicket: string;
let plainUrl: string;
let writeUrl: string;

async function qemuIo(image: string, ...commands: string[]): Promise<void> {
  await execa("qemu-io", ["-f", "qcow2", ...commands.flatMap((c) => ["-c", c]), image]);
}

async function exportTicket(image: string, o: { name: string; readOnly: boolean; bitmap?: string }): Promise<string> {
  const server = await startQemuNbd({
    image,
    format: "qcow2",
    socket: join(dir, `${o.name}.sock`),
    readOnly: o.readOnly,
    bitmap: o.bitmap,
    exportName: o.name,
  });
  exportsToStop.push(server);
  const uuid = randomUUID();
  await imageio.addTicket({
    uuid,
    size: SIZE,
    ops: o.readOnly ? ["read"] : ["read", "write"],
    timeout: 300,
    url: `nbd:unix:${server.socket}:exportname=${server.exportName}`,
    dirty: !!o.bitmap,
    sparse: true,
  });
  return uuid;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-imageio-client-"));
  pki = await makeTestPki();
  imageio = await startImageioServer({ host: "127.0.0.1", port: 0, tls: { cert: pki.cert, key: pki.key } });

  source = join(dir, "source.qcow2");
  await qemuImg.create({ path: source, format: "qcow2", size: SIZE });
  await qemuIo(source, "write -P 0xab 0 1M", "write -P 0xcd 4M 64k");
  // The checkpoint: the bitmap records what changes from here on.
  await qemuImg.bitmap(source, { op: "add", name: "ck1", format: "qcow2" });
  await qemuIo(source, "write -P 0xef 8M 128k", "write -z 0 64k");

  readTicket = await exportTicket(source, { name: "backup", readOnly: true, bitmap: "ck1" });
  readUrl = `${imageio.url}/images/${readTicket}`;
  plainUrl = `${imageio.url}/images/${await exportTicket(source, { name: "plain", readOnly: true })}`;

  target = join(dir, "target.qcow2");
  await qemuImg.create({ path: target, format: "qcow2", size: SIZE });
  writeUrl = `${imageio.url}/images/${await exportTicket(target, { name: "upload", readOnly: false })}`;
}, 60_000);

afterAll(async () => {
  await imageio?.close();
  for (const s of exportsToStop) await s.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("imageio client against the lab", () => {
  it("imageio client lab - OPTIONS of a read-only ticket matches Appendix A", async () => {
    const c = await openImageio(readUrl, { caPem: pki.caPem, maxConnections: 4 });
    try {
      const o = await c.options();
      expect(o.allow).toEqual(["OPTIONS", "GET"]);
      expect(o.features).toEqual(["checksum", "extents"]);
      expect(o.max_readers).toBe(8);
      expect(c.readers).toBe(4);
      expect(c.writers).toBe(0);
    } finally {
      await c.close();
    }
  });

  it("imageio client lab - zero extents follow the qcow2 allocation and cover the image", async () => {
    const c = await openImageio(readUrl, { caPem: pki.caPem });
    try {
      const extents = await c.extents("zero");
      expect(c.size).toBe(SIZE);
      const dataAt = (off: number) => extents.find((e) => e.start <= off && off < e.start + e.length)!;
      expect(dataAt(0).zero).toBe(true); // written as zeroes after the checkpoint
      expect(dataAt(64 * 1024).zero).toBe(false);
      expect(dataAt(4 * MiB).zero).toBe(false);
      expect(dataAt(8 * MiB).zero).toBe(false);
      expect(dataAt(12 * MiB).zero).toBe(true);
      for (let i = 1; i < extents.length; i++) expect(extents[i]!.zero).not.toBe(extents[i - 1]!.zero);
    } finally {
      await c.close();
    }
  });

  it("imageio client lab - dirty extents come from the bitmap; a ticket without dirty refuses", async () => {
    const c = await openImageio(readUrl, { caPem: pki.caPem });
    const plain = await openImageio(plainUrl, { caPem: pki.caPem });
    try {
      const dirty = (await c.extents("dirty")).filter((e) => e.dirty);
      expect(dirty.map((e) => [e.start, e.length, e.zero])).toEqual([
        [0, 64 * 1024, true],
        [8 * MiB, 128 * 1024, false],
      ]);
      const err = await plain.extents("dirty").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DirtyExtentsUnsupportedError);
      expect(errorText(err)).not.toContain(plainUrl.split("/").at(-1)!);
    } finally {
      await c.close();
      await plain.close();
    }
  });

  it("imageio client lab - ranged reads return the guest data", async () => {
    const c = await openImageio(readUrl, { caPem: pki.caPem });
    try {
      const [a, b, z] = await Promise.all([c.read(64 * 1024, 4096), c.read(4 * MiB, 64 * 1024), c.read(0, 4096)]);
      expect(a.every((x) => x === 0xab)).toBe(true);
      expect(b.every((x) => x === 0xcd)).toBe(true);
      expect(z.every((x) => x === 0)).toBe(true);
      const big = await c.read(MiB - 4096, 2 * MiB);
      expect(big.subarray(0, 4096).every((x) => x === 0xab)).toBe(true);
      expect(big.subarray(4096).every((x) => x === 0)).toBe(true);
    } finally {
      await c.close();
    }
  });

  it("imageio client lab - the sha256 checksum equals the block hash of the raw guest image", async () => {
    const raw = join(dir, "source.raw");
    await execa("qemu-img", ["convert", "-U", "-f", "qcow2", "-O", "raw", source, raw]);
    const data = await readFile(raw);
    const outer = createHash("sha256");
    for (let off = 0; off < data.length; off += 4 * MiB) {
      outer.update(createHash("sha256").update(data.subarray(off, off + 4 * MiB)).digest());
    }
    const c = await openImageio(readUrl, { caPem: pki.caPem });
    try {
      const sum = await c.checksum({ algorithm: "sha256" });
      expect(sum).toEqual({ algorithm: "sha256", block_size: 4 * MiB, checksum: outer.digest("hex") });
    } finally {
      await c.close();
    }
  });

  it("imageio client lab - write, zero and flush land in the qcow2 image", async () => {
    const c = await openImageio(writeUrl, { caPem: pki.caPem, maxConnections: 2 });
    try {
      expect((await c.options()).features).toEqual(["checksum", "extents", "flush", "zero"]);
      expect(c.writers).toBe(2);
      const payload = Buffer.alloc(256 * 1024, 0x5a);
      await Promise.all([c.write(0, payload), c.write(2 * MiB, payload)]);
      await c.zero(64 * 1024, 64 * 1024);
      await c.flush();
      const back = await c.read(0, 256 * 1024);
      expect(back.subarray(0, 64 * 1024).every((x) => x === 0x5a)).toBe(true);
      expect(back.subarray(64 * 1024, 128 * 1024).every((x) => x === 0)).toBe(true);
      expect(back.subarray(128 * 1024).every((x) => x === 0x5a)).toBe(true);
    } finally {
      await c.close();
    }
    const { stdout } = await execa("qemu-io", ["-r", "-U", "-f", "qcow2", "-c", "read -P 0x5a 2M 256k", target]);
    expect(stdout).not.toMatch(/Pattern verification failed/);
  });

  it("imageio client lab - a dropped connection is transient and the range is retried", async () => {
    const c = await openImageio(readUrl, { caPem: pki.caPem });
    try {
      imageio.faults.dropConnectionAfterBytes(100_000, readTicket);
      const once = await c.read(0, MiB).catch((e: unknown) => e);
      expect(once).toBeInstanceOf(ImageioConnectionError);
      imageio.faults.dropConnectionAfterBytes(100_000, readTicket);
      let attempts = 0;
      const buf = await withRetry(() => (attempts++, c.read(0, MiB)), { baseDelayMs: 20 });
      expect(attempts).toBe(2);
      expect(buf.subarray(64 * 1024).every((x) => x === 0xab)).toBe(true);
    } finally {
      await c.close();
    }
  });

  it("imageio client lab - 403 for an unknown ticket is final and does not leak the ticket", async () => {
    const secret = randomUUID();
    let attempts = 0;
    const err = await withRetry(() => (attempts++, openImageio(`${imageio.url}/images/${secret}`, { caPem: pki.caPem })), {
      baseDelayMs: 10,
    }).catch((e: unknown) => e);
    expect(attempts).toBe(1);
    expect(err).toBeInstanceOf(ImageioForbiddenError);
    expect((err as Error).message).toContain("No such ticket");
    expect(errorText(err)).not.toContain(secret);
  });
});
