import { randomBytes } from "node:crypto";
import { inspect } from "node:util";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { makeTestPki, type TestPki } from "../ovirt/testing/test-pki.ts";
import { openImageio, type ImageioClient } from "./client.ts";
import {
  DirtyExtentsUnsupportedError,
  ImageioBadRequestError,
  ImageioConnectionError,
  ImageioForbiddenError,
  ImageioProtocolError,
  ImageioRangeError,
  ImageioServerError,
  ImageioTlsError,
  ImageioUnsupportedError,
} from "./errors.ts";
import { withRetry } from "./retry.ts";
import { startFakeImageio, type FakeImageio, type FakeImageioOptions } from "./testing/fake-imageio.ts";
import { caught, errorText } from "../../test/harness/error-text.ts";

const TICKET = "6f0c1a52-1b0e-4c3e-9d2a-7e1d1c0ffee1";
const MiB = 1024 * 1024;

let pki: TestPki;
beforeAll(async () => {
  pki = await makeTestPki();
});

const servers: FakeImageio[] = [];
const clients: ImageioClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await s.close();
});

/** 2 MiB image: first 1 MiB random data, second MiB zero. */
async function setup(o: FakeImageioOptions & { ops?: Array<"read" | "write">; maxConnections?: number } = {}) {
  const server = await startFakeImageio({ tls: { cert: pki.cert, key: pki.key }, ...o });
  servers.push(server);
  const data = Buffer.concat([randomBytes(MiB), Buffer.alloc(MiB)]);
  server.tickets.set(TICKET, { data, ops: o.ops ?? ["read"] });
  const client = await openImageio(`${server.url}/images/${TICKET}`, { caPem: pki.caPem, maxConnections: o.maxConnections ?? 4 });
  clients.push(client);
  return { server, client, data };
}

describe("imageio client", () => {
  it("imageio client - OPTIONS sets readers/writers to min(requested, server max)", async () => {
    const { client } = await setup({ ops: ["write"], maxReaders: 2, maxWriters: 3, maxConnections: 4 });
    expect(client.readers).toBe(2);
    expect(client.writers).toBe(3);
    const opts = await client.options();
    expect(opts.features).toEqual(["checksum", "extents", "flush", "zero"]);
    expect(opts.allow).toEqual(["OPTIONS", "GET", "PUT", "PATCH"]);
    expect(opts.legacy).toBe(false);
    const ro = await setup({ maxReaders: 8, maxConnections: 2 });
    expect(ro.client.readers).toBe(2);
    expect(ro.client.writers).toBe(0);
  });

  it("imageio client - never opens more connections than the server allows", async () => {
    const { server, client, data } = await setup({ maxReaders: 2, maxConnections: 8 });
    server.faults.push(...Array.from({ length: 8 }, () => ({ method: "GET", kind: "delay" as const, ms: 30 })));
    const before = server.stats.connections; // the OPTIONS probe's own connection
    const parts = await Promise.all(Array.from({ length: 8 }, (_, i) => client.read(i * 4096, 4096)));
    parts.forEach((p, i) => expect(p.equals(data.subarray(i * 4096, (i + 1) * 4096))).toBe(true));
    expect(server.stats.connections - before).toBeLessThanOrEqual(2);
    expect(server.stats.maxOpen).toBeLessThanOrEqual(2);
  });

  it("imageio client - legacy servers (405/204 on OPTIONS) get GET/PUT only on one connection", async () => {
    for (const legacyOptions of [405, 204] as const) {
      const { client, data } = await setup({ legacyOptions, maxConnections: 4 });
      const opts = await client.options();
      expect(opts).toMatchObject({ legacy: true, features: [], max_readers: 1, max_writers: 1 });
      expect(client.readers).toBe(1);
      await expect(client.extents("zero")).rejects.toBeInstanceOf(ImageioUnsupportedError);
      expect((await client.read(0, 16)).equals(data.subarray(0, 16))).toBe(true);
    }
  });

  it("imageio client - read sends an inclusive Range and returns exactly the bytes", async () => {
    const { server, client, data } = await setup();
    const buf = await client.read(1000, 70_000);
    expect(buf.equals(data.subarray(1000, 71_000))).toBe(true);
    expect(server.log.at(-1)!.headers.range).toBe("bytes=1000-70999");
    expect(client.size).toBe(2 * MiB);
    const into = Buffer.alloc(100_000, 0xff);
    const out = await client.read(0, 4096, { into });
    expect(out.length).toBe(4096);
    expect(into.subarray(0, 4096).equals(data.subarray(0, 4096))).toBe(true);
    expect(into[4096]).toBe(0xff);
  });

  it("imageio client - readStream streams a range", async () => {
    const { client, data } = await setup();
    const stream = await client.readStream(MiB - 10, 20_000);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(data.subarray(MiB - 10, MiB - 10 + 20_000))).toBe(true);
  });

  it("imageio client - a wrong Content-Range is a protocol error", async () => {
    const { server, client } = await setup();
    server.faults.push({ method: "GET", kind: "bad-range" });
    const err = await caught(client.read(0, 4096));
    expect(err).toBeInstanceOf(ImageioProtocolError);
    expect(err).toBeInstanceOf(PermanentError);
  });

  it("imageio client - a premature close is transient and withRetry repeats the range", async () => {
    const { server, client, data } = await setup();
    server.faults.push({ method: "GET", kind: "truncate" });
    const err = await caught(client.read(0, 512 * 1024));
    expect(err).toBeInstanceOf(ImageioConnectionError);
    expect(err).toBeInstanceOf(TransientError);
    server.faults.push({ method: "GET", kind: "truncate" }, { method: "GET", kind: "reset" });
    let attempts = 0;
    const buf = await withRetry(
      (n) => {
        attempts = n;
        return client.read(0, 512 * 1024);
      },
      { attempts: 4, baseDelayMs: 5 },
    );
    expect(attempts).toBe(3);
    expect(buf.equals(data.subarray(0, 512 * 1024))).toBe(true);
  });

  it("imageio client - a readStream cut short errors with a typed error", async () => {
    const { server, client } = await setup();
    server.faults.push({ method: "GET", kind: "truncate" });
    const stream = await client.readStream(0, 512 * 1024);
    const err = await caught((async () => {
      for await (const _ of stream) void _;
    })());
    expect(err).toBeInstanceOf(ImageioConnectionError);
  });

  it("imageio client - 5xx is transient and retried; 416 and 400 are not", async () => {
    const { server, client } = await setup({ ops: ["write"] });
    server.faults.push({ method: "GET", kind: "status", status: 500 }, { method: "GET", kind: "status", status: 503 });
    let calls = 0;
    await withRetry(() => (calls++, client.read(0, 10)), { baseDelayMs: 5 });
    expect(calls).toBe(3);
    const e500 = await caught((server.faults.push({ method: "PUT", kind: "status", status: 500 }), client.write(0, Buffer.alloc(10))));
    expect(e500).toBeInstanceOf(ImageioServerError);
    calls = 0;
    await expect(withRetry(() => (calls++, client.read(2 * MiB - 4, 8)), { baseDelayMs: 5 })).rejects.toBeInstanceOf(ImageioRangeError);
    expect(calls).toBe(1);
    server.faults.push({ method: "PATCH", kind: "status", status: 400, body: "Invalid JSON message" });
    calls = 0;
    await expect(withRetry(() => (calls++, client.flush()), { baseDelayMs: 5 })).rejects.toBeInstanceOf(ImageioBadRequestError);
    expect(calls).toBe(1);
  });

  it("imageio client - 403 is final and never shows the ticket", async () => {
    const { server, client } = await setup();
    server.tickets.delete(TICKET);
    let calls = 0;
    const err = await caught(withRetry(() => (calls++, client.read(0, 10)), { baseDelayMs: 5 }));
    expect(calls).toBe(1);
    expect(err).toBeInstanceOf(ImageioForbiddenError);
    expect((err as Error).message).toContain("No such ticket ***");
    expect(errorText(err)).not.toContain(TICKET);
    const openErr = await caught(openImageio(`${server.url}/images/${TICKET}`, { caPem: pki.caPem }));
    expect(openErr).toBeInstanceOf(ImageioForbiddenError);
    expect(errorText(openErr)).not.toContain(TICKET);
  });

  it("imageio client - writing with a read-only ticket is 403 without the ticket", async () => {
    const { client } = await setup();
    const err = await caught(client.write(0, Buffer.alloc(16)));
    expect(err).toBeInstanceOf(ImageioForbiddenError);
    expect(errorText(err)).not.toContain(TICKET);
    expect((err as Error).message).toContain("forbids write");
  });

  it("imageio client - extents zero are validated and merged", async () => {
    const { client } = await setup();
    const extents = await client.extents("zero");
    expect(extents).toEqual([
      { start: 0, length: MiB, zero: false, hole: false, dirty: false },
      { start: MiB, length: MiB, zero: true, hole: false, dirty: false },
    ]);
    expect(client.size).toBe(2 * MiB);
  });

  it("imageio client - dirty extents parse; a ticket without dirty is DirtyExtentsUnsupported", async () => {
    const { server, client } = await setup();
    await expect(client.extents("dirty")).rejects.toBeInstanceOf(DirtyExtentsUnsupportedError);
    server.tickets.get(TICKET)!.dirty = [
      { start: 0, length: 65536, dirty: false, zero: false },
      { start: 65536, length: 65536, dirty: true, zero: false },
      { start: 131072, length: 2 * MiB - 131072, dirty: true, zero: true },
    ];
    const extents = await client.extents("dirty");
    expect(extents.map((e) => [e.start, e.length, e.dirty, e.zero])).toEqual([
      [0, 65536, false, false],
      [65536, 65536, true, false],
      [131072, 2 * MiB - 131072, true, true],
    ]);
  });

  it("imageio client - extents with a gap are a protocol error", async () => {
    const { server, client } = await setup();
    server.tickets.get(TICKET)!.dirty = [
      { start: 0, length: 4096, dirty: true },
      { start: 8192, length: 4096, dirty: false },
    ];
    await expect(client.extents("dirty")).rejects.toThrow(/gap or overlap/);
  });

  it("imageio client - write PUTs with Content-Range, Content-Length and flush=n", async () => {
    const { server, client } = await setup({ ops: ["write"] });
    const payload = randomBytes(65536);
    await client.write(MiB + 4096, payload);
    const put = server.log.at(-1)!;
    expect(put.method).toBe("PUT");
    expect(put.url).toBe(`/images/${TICKET}?flush=n`);
    expect(put.headers["content-range"]).toBe(`bytes ${MiB + 4096}-${MiB + 4096 + 65535}/*`);
    expect(put.headers["content-length"]).toBe("65536");
    expect(server.tickets.get(TICKET)!.data.subarray(MiB + 4096, MiB + 4096 + 65536).equals(payload)).toBe(true);
  });

  it("imageio client - zero and flush are PATCH JSON ops", async () => {
    const { server, client } = await setup({ ops: ["write"] });
    await client.zero(4096, 8192);
    await client.flush();
    const [zero, flush] = server.log.slice(-2);
    expect(JSON.parse(zero!.body.toString())).toEqual({ op: "zero", offset: 4096, size: 8192, flush: false });
    expect(zero!.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(flush!.body.toString())).toEqual({ op: "flush" });
    expect(server.tickets.get(TICKET)!.data.subarray(4096, 4096 + 8192).every((b) => b === 0)).toBe(true);
  });

  it("imageio client - without the zero feature, zero PUTs zeroes in 128 KiB writes", async () => {
    const { server, client } = await setup({ ops: ["write"], features: ["extents"] });
    await client.zero(0, 300 * 1024);
    const puts = server.log.filter((l) => l.method === "PUT");
    expect(puts.map((p) => p.body.length)).toEqual([131072, 131072, 45056]);
    expect(server.tickets.get(TICKET)!.data.subarray(0, 300 * 1024).every((b) => b === 0)).toBe(true);
    await client.flush(); // no flush feature: nothing is sent
    expect(server.log.filter((l) => l.method === "PATCH")).toHaveLength(0);
  });

  it("imageio client - checksum returns imageio's JSON shape", async () => {
    const { server, client } = await setup();
    const sum = await client.checksum({ blockSize: MiB });
    expect(sum.algorithm).toBe("sha256");
    expect(sum.block_size).toBe(MiB);
    expect(sum.checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(server.log.at(-1)!.url).toBe(`/images/${TICKET}/checksum?algorithm=sha256&block_size=1048576`);
  });

  it("imageio client - falls back to proxy_url when transfer_url cannot be reached", async () => {
    const proxy = await startFakeImageio({ tls: { cert: pki.cert, key: pki.key } });
    servers.push(proxy);
    const data = randomBytes(8192);
    proxy.tickets.set(TICKET, { data, ops: ["read"] });
    const dead = await startFakeImageio({ tls: { cert: pki.cert, key: pki.key } });
    const deadUrl = `${dead.url}/images/${TICKET}`;
    await dead.close();
    const client = await openImageio(deadUrl, { caPem: pki.caPem, proxyUrl: `${proxy.url}/images/${TICKET}` });
    clients.push(client);
    expect(client.viaProxy).toBe(true);
    expect((await client.read(0, 8192)).equals(data)).toBe(true);
    const err = await caught(openImageio(deadUrl, { caPem: pki.caPem }));
    expect(err).toBeInstanceOf(ImageioConnectionError);
    expect(errorText(err)).not.toContain(TICKET);
  });

  it("imageio client - a 403 on transfer_url is final (no proxy fallback)", async () => {
    const { server } = await setup();
    const proxy = await startFakeImageio({ tls: { cert: pki.cert, key: pki.key } });
    servers.push(proxy);
    proxy.tickets.set("other-ticket-1234", { data: Buffer.alloc(10), ops: ["read"] });
    await expect(
      openImageio(`${server.url}/images/unknown-ticket-1234`, { caPem: pki.caPem, proxyUrl: `${proxy.url}/images/other-ticket-1234` }),
    ).rejects.toBeInstanceOf(ImageioForbiddenError);
    expect(proxy.log).toHaveLength(0);
  });

  it("imageio client - TLS is verified with the CA", async () => {
    const { server } = await setup();
    const err = await caught(openImageio(`${server.url}/images/${TICKET}`, { caPem: pki.otherCaPem }));
    expect(err).toBeInstanceOf(ImageioTlsError);
    expect(errorText(err)).not.toContain(TICKET);
    const insecure = await openImageio(`${server.url}/images/${TICKET}`, { insecure: true });
    clients.push(insecure);
    expect((await insecure.read(0, 1)).length).toBe(1);
  });

  it("imageio client - the ticket never shows in toString, inspect, JSON or redacted url", async () => {
    const { client } = await setup();
    for (const v of [String(client), inspect(client, { depth: 10, showHidden: true }), JSON.stringify(client), client.url]) {
      expect(v).not.toContain(TICKET);
    }
    expect(client.url).toMatch(/\/images\/\*\*\*$/);
  });

  it("imageio client - aborting the signal stops an in-flight read with the reason", async () => {
    const { server, client } = await setup();
    server.faults.push({ method: "GET", kind: "delay", ms: 2000 });
    const ac = new AbortController();
    const reason = new Error("cancelled by user");
    setTimeout(() => ac.abort(reason), 50);
    await expect(client.read(0, 100, { signal: ac.signal })).rejects.toBe(reason);
  });

  it("imageio client - bad arguments and a closed client are clear permanent errors", async () => {
    const { client } = await setup();
    await expect(client.read(-1, 10)).rejects.toThrow(/invalid range/);
    await expect(client.read(0, 0)).rejects.toBeInstanceOf(PermanentError);
    await client.close();
    await expect(client.read(0, 10)).rejects.toThrow(/closed/);
    await expect(openImageio("not a url")).rejects.toThrow(/not a valid URL/);
  });
});
