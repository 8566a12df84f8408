/**
 * Every row of ovirt-api.md Appendix A (responses captured from a real ovirt-imageio 2.5.3
 * daemon, nbd backend, qemu-nbd 7.2) against the lab daemon over real qemu-nbd exports:
 *   t1: read-only, dirty, 1 GiB qcow2 exported by `qemu-nbd -B ck1`
 *   t3: ops ["write"], 64 MiB
 * Bodies are compared byte for byte where the capture has them.
 */
import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startImageioServer, type ImageioServer } from "../lab/imageio/mod.ts";
import { Blake2b } from "../lab/imageio/blake2b.ts";
import { makeTestPki, RawHttps, type RawResponse, type TestPki } from "./imageio-fixtures.ts";
import { qemuImgBitmapAdd, qemuImgCreate, qemuIoWrite, startQemuNbd, tempDir, type RunningServer } from "./nbd-fixtures.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BLOCK = 4 * MiB;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

let tmp: Awaited<ReturnType<typeof tempDir>>;
let pki: TestPki;
let t1nbd: RunningServer;
let t3nbd: RunningServer;
let server: ImageioServer;
let conn: RawHttps;

beforeAll(async () => {
  tmp = await tempDir("imageio-conf");
  pki = await makeTestPki(tmp.dir);
  // t1: data in the first MiB before checkpoint ck1, then 64 KiB written after it.
  const t1 = `${tmp.dir}/t1.qcow2`;
  await qemuImgCreate(t1, GiB);
  await qemuIoWrite(t1, 0, MiB, 0x11);
  await qemuImgBitmapAdd(t1, "ck1");
  await qemuIoWrite(t1, MiB, 64 * 1024, 0x22);
  t1nbd = await startQemuNbd({ image: t1, socket: `${tmp.dir}/t1.sock`, bitmap: "ck1", readOnly: true });
  const t3 = `${tmp.dir}/t3.qcow2`;
  await qemuImgCreate(t3, 64 * MiB);
  t3nbd = await startQemuNbd({ image: t3, socket: `${tmp.dir}/t3.sock` });

  server = await startImageioServer({ tls: { cert: pki.cert, key: pki.key } });
  server.addTicket({ uuid: "t1", size: GiB, ops: ["read"], timeout: 300, url: `nbd:unix:${t1nbd.socket}`, dirty: true });
  server.addTicket({ uuid: "t3", size: 64 * MiB, ops: ["write"], timeout: 300, url: `nbd:unix:${t3nbd.socket}` });
  conn = await RawHttps.open(server.url, pki.caPem);
});

afterAll(async () => {
  conn?.close();
  await server?.close();
  await Promise.all([t1nbd?.stop(), t3nbd?.stop()]);
  await tmp?.cleanup();
});

/** What every imageio response starts with: Python's status line, then server and date. */
function expectEnvelope(r: RawResponse, status: number, reason: string): void {
  expect(r.statusLine).toBe(`HTTP/1.1 ${status} ${reason}`);
  expect(r.headerLines[0]).toBe("server: imageio/2.5.3");
  expect(r.headerLines[1]).toMatch(/^date: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  expect(r.headers.has("keep-alive")).toBe(false);
  expect(Number(r.headers.get("content-length"))).toBe(r.body.length);
}

function headerLines(r: RawResponse): string[] {
  return r.headerLines.slice(2);
}

function expectTextError(r: RawResponse, status: number, reason: string, message: string): void {
  expectEnvelope(r, status, reason);
  expect(r.headers.get("content-type")).toBe("text/plain; charset=UTF-8");
  expect(r.body.toString("utf8")).toBe(message + "\n");
}

/** A.1 over known guest content: H(H(block_1) || ... || H(block_n)). */
function blockChecksum(image: (offset: number, length: number) => Buffer, size: number, hash: () => { update(b: Buffer): unknown; digest(): Buffer }): string {
  const outer = hash();
  let zeroDigest: Buffer | undefined; // identical blocks have identical digests; hash the zero block once
  for (let off = 0; off < size; off += BLOCK) {
    const block = image(off, Math.min(BLOCK, size - off));
    const isZero = block.length === BLOCK && block.equals(ZERO_BLOCK);
    if (isZero && zeroDigest) {
      outer.update(zeroDigest);
      continue;
    }
    const h = hash();
    h.update(block);
    const d = h.digest();
    if (isZero) zeroDigest = d;
    outer.update(d);
  }
  return outer.digest().toString("hex");
}

/** t1's guest content: 0x11 in [0, 1 MiB), 0x22 in [1 MiB, 1 MiB + 64 KiB), zeroes after. */
function t1Content(offset: number, length: number): Buffer {
  if (offset >= MiB + 64 * 1024 && length === BLOCK) return ZERO_BLOCK;
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const p = offset + i;
    if (p < MiB) b[i] = 0x11;
    else if (p < MiB + 64 * 1024) b[i] = 0x22;
    else break;
  }
  return b;
}

describe("imageio Appendix A conformance", () => {
  it("imageio A - OPTIONS /images/t1 (read-only ticket)", async () => {
    const r = await conn.request("OPTIONS", "/images/t1");
    expectEnvelope(r, 200, "OK");
    expect(headerLines(r)).toEqual(["content-length: 74", "allow: OPTIONS,GET", "content-type: application/json"]);
    expect(r.body.toString()).toBe('{"features": ["checksum", "extents"], "max_readers": 8, "max_writers": 8}\n');
  });

  it("imageio A - OPTIONS /images/t3 (write ticket)", async () => {
    const r = await conn.request("OPTIONS", "/images/t3");
    expectEnvelope(r, 200, "OK");
    expect(r.headers.get("allow")).toBe("OPTIONS,GET,PUT,PATCH");
    expect(r.body.toString()).toBe('{"features": ["checksum", "extents", "flush", "zero"], "max_readers": 8, "max_writers": 8}\n');
  });

  it("imageio A - OPTIONS /images/* (server-wide)", async () => {
    const r = await conn.request("OPTIONS", "/images/*");
    expectEnvelope(r, 200, "OK");
    expect(r.headers.get("allow")).toBe("OPTIONS,GET,PUT,PATCH");
    expect(r.body.toString()).toBe('{"features": ["checksum", "extents", "flush", "zero"]}\n');
  });

  it("imageio A - GET /images/t1/extents?context=dirty at the bitmap's 64 KiB granularity, with zero", async () => {
    const r = await conn.request("GET", "/images/t1/extents?context=dirty");
    expectEnvelope(r, 200, "OK");
    expect(r.headers.get("content-type")).toBe("application/json");
    const text = r.body.toString();
    expect(
      text.startsWith(
        '[{"start": 0, "length": 1048576, "dirty": false, "zero": false}, {"start": 1048576, "length": 65536, "dirty": true, "zero": false}, ',
      ),
    ).toBe(true);
    expect(text).toBe(
      '[{"start": 0, "length": 1048576, "dirty": false, "zero": false}, {"start": 1048576, "length": 65536, "dirty": true, "zero": false}, {"start": 1114112, "length": 1072627712, "dirty": false, "zero": true}]\n',
    );
  });

  it("imageio A - PUT /images/t3?flush=n with Content-Range and a 64 KiB body: 200, empty", async () => {
    const body = Buffer.alloc(64 * 1024, 0x33);
    const r = await conn.request("PUT", "/images/t3?flush=n", { "Content-Range": "bytes 1048576-1114111/*" }, body);
    expectEnvelope(r, 200, "OK");
    expect(headerLines(r)).toEqual(["content-length: 0"]);
    expect(r.body.length).toBe(0);
    const back = await conn.request("GET", "/images/t3", { Range: "bytes=1048576-1114111" });
    expect(back.body.equals(body)).toBe(true);
  });

  it("imageio A - GET /images/t3/extents (default context=zero)", async () => {
    const r = await conn.request("GET", "/images/t3/extents");
    expectEnvelope(r, 200, "OK");
    expect(headerLines(r)).toEqual(["content-length: 199", "content-type: application/json"]);
    expect(r.body.toString()).toBe(
      '[{"start": 0, "length": 1048576, "zero": true, "hole": false}, {"start": 1048576, "length": 65536, "zero": false, "hole": false}, {"start": 1114112, "length": 65994752, "zero": true, "hole": false}]\n',
    );
  });

  it("imageio A - GET /images/t3/extents?context=dirty on a ticket without dirty: 404", async () => {
    const r = await conn.request("GET", "/images/t3/extents?context=dirty");
    expectTextError(r, 404, "Not Found", "Ticket does not support dirty extents");
  });

  it("imageio A - GET /images/t1 with Range: bytes=0-3: 206 with the ticket size in Content-Range", async () => {
    const r = await conn.request("GET", "/images/t1", { Range: "bytes=0-3" });
    expectEnvelope(r, 206, "Partial Content");
    expect(headerLines(r)).toEqual([
      "content-length: 4",
      "content-type: application/octet-stream",
      "content-disposition: attachment",
      "content-range: bytes 0-3/1073741824",
    ]);
    expect(r.body.equals(Buffer.alloc(4, 0x11))).toBe(true);
  });

  it("imageio A - GET /images/t3 with a range past the end: 416 with bytes */size", async () => {
    const r = await conn.request("GET", "/images/t3", { Range: "bytes=67108860-67108870" });
    expectTextError(r, 416, "Requested Range Not Satisfiable", "Requested range out of allowed range");
    expect(r.headers.get("content-range")).toBe("bytes */67108864");
  });

  it("imageio A - GET /images/nonexist: 403, connection: close, and the connection is closed", async () => {
    const c = await RawHttps.open(server.url, pki.caPem);
    try {
      const r = await c.request("GET", "/images/nonexist");
      expectTextError(r, 403, "Forbidden", "You are not allowed to access this resource: No such ticket nonexist");
      expect(r.headers.get("connection")).toBe("close");
      expect(r.closed).toBe(true);
    } finally {
      c.close();
    }
  });

  it("imageio A - PUT /images/t1 (read-only ticket): 403 forbids write", async () => {
    const c = await RawHttps.open(server.url, pki.caPem);
    try {
      const r = await c.request("PUT", "/images/t1", {}, Buffer.alloc(16));
      expectTextError(r, 403, "Forbidden", "You are not allowed to access this resource: Transfer=(ticket/t1) forbids write");
      expect(r.headers.get("connection")).toBe("close");
    } finally {
      c.close();
    }
  });

  it("imageio A - PUT /images/t3 with a chunked body (no Content-Length): 400", async () => {
    const c = await RawHttps.open(server.url, pki.caPem);
    try {
      const r = await c.request("PUT", "/images/t3", { "Transfer-Encoding": "chunked" }, "4\r\nabcd\r\n0\r\n\r\n");
      expectTextError(r, 400, "Bad Request", "Content-Length header is required");
    } finally {
      c.close();
    }
  });

  it("imageio A - PATCH /images/t3 zero: 200, and the range reads as zeroes", async () => {
    await conn.request("PUT", "/images/t3?flush=n", { "Content-Range": "bytes 0-65535/*" }, Buffer.alloc(65536, 0x44));
    const r = await conn.request("PATCH", "/images/t3", { "Content-Type": "application/json" }, '{"op":"zero","offset":0,"size":65536,"flush":false}');
    expectEnvelope(r, 200, "OK");
    expect(headerLines(r)).toEqual(["content-length: 0"]);
    const back = await conn.request("GET", "/images/t3", { Range: "bytes=0-65535" });
    expect(back.body.equals(Buffer.alloc(65536))).toBe(true);
  });

  it("imageio A - PATCH /images/t3 flush: 200", async () => {
    const r = await conn.request("PATCH", "/images/t3", { "Content-Type": "application/json" }, '{"op":"flush"}');
    expectEnvelope(r, 200, "OK");
    expect(r.body.length).toBe(0);
  });

  it("imageio A - PATCH /images/t3 trim: 400 with the exact message", async () => {
    const r = await conn.request("PATCH", "/images/t3", { "Content-Type": "application/json" }, '{"op":"trim"}');
    expectTextError(r, 400, "Bad Request", "Unsupported value 'trim' for 'op', expecting one of ['flush', 'zero']");
  });

  it("imageio A - GET /images/t1/checksum: blake2b (digest 32), 4 MiB blocks", async () => {
    const r = await conn.request("GET", "/images/t1/checksum");
    expectEnvelope(r, 200, "OK");
    const expected = blockChecksum(t1Content, GiB, () => new Blake2b(32));
    expect(r.body.toString()).toBe(`{"algorithm": "blake2b", "block_size": 4194304, "checksum": "${expected}"}\n`);
  });

  it("imageio A - GET /images/t1/checksum?algorithm=sha256 equals the A.1 block checksum", async () => {
    const r = await conn.request("GET", "/images/t1/checksum?algorithm=sha256");
    expectEnvelope(r, 200, "OK");
    const expected = blockChecksum(t1Content, GiB, () => crypto.createHash("sha256"));
    expect(r.body.toString()).toBe(`{"algorithm": "sha256", "block_size": 4194304, "checksum": "${expected}"}\n`);
  });

  it("imageio A - GET /images/t1/checksum/algorithms", async () => {
    const r = await conn.request("GET", "/images/t1/checksum/algorithms");
    expectEnvelope(r, 200, "OK");
    const body = JSON.parse(r.body.toString()) as { algorithms: string[] };
    expect(body.algorithms.slice(0, 3)).toEqual(["blake2b", "blake2s", "md5"]);
    expect(body.algorithms).toContain("sha256");
    expect([...body.algorithms].sort()).toEqual(body.algorithms);
    expect(r.body.toString()).toMatch(/^\{"algorithms": \["blake2b", "blake2s", "md5", .*"sha256", .*\]\}\n$/);
  });

  it("imageio A - GET /info/", async () => {
    const r = await conn.request("GET", "/info/");
    expectEnvelope(r, 200, "OK");
    expect(headerLines(r)).toEqual(["content-length: 21", "content-type: application/json"]);
    expect(r.body.toString()).toBe('{"version": "2.5.3"}\n');
  });

  it("imageio A - the keep-alive connection served every row above without closing", () => {
    expect(conn.isClosed).toBe(false);
  });
});
