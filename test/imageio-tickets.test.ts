/**
 * Ticket lifecycle (auth.py semantics: expiry, cancel/remove, idle_time, transferred,
 * connections), the per-ticket connection limit, inactivity, and the fault hooks.
 */
import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { PermanentError, TransientError } from "../contracts/errors.ts";
import { NbdPool } from "../lab/imageio/backend.ts";
import { startImageioServer, type ImageioServer, type LabTicket } from "../lab/imageio/mod.ts";
import { makeTestPki, RawHttps, type TestPki } from "./imageio-fixtures.ts";
import { qemuImgCreate, qemuIoWrite, startNbdkit, startQemuNbd, tempDir, type RunningServer } from "./nbd-fixtures.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;

let tmp: Awaited<ReturnType<typeof tempDir>>;
let pki: TestPki;
let disk: RunningServer;
let slow: RunningServer;
const started: Array<{ close(): Promise<void> }> = [];
let now = 1000;
const clock = () => now;

beforeAll(async () => {
  tmp = await tempDir("imageio-tickets");
  pki = await makeTestPki(tmp.dir);
  const image = `${tmp.dir}/disk.qcow2`;
  await qemuImgCreate(image, SIZE);
  await qemuIoWrite(image, 0, SIZE, 0x42);
  disk = await startQemuNbd({ image, socket: `${tmp.dir}/disk.sock`, shared: 64 });
  // Reads take a second: long enough to act while an operation is running.
  slow = await startNbdkit({ socket: `${tmp.dir}/slow.sock`, plugin: "memory", args: ["8M", "delay-read=1"], filters: ["delay"] });
});

afterAll(async () => {
  await Promise.all(started.map((s) => s.close()));
  await Promise.all([disk?.stop(), slow?.stop()]);
  await tmp?.cleanup();
});

async function startServer(o: { maxConnections?: number; removeTimeoutMs?: number } = {}): Promise<ImageioServer> {
  const s = await startImageioServer({ tls: { cert: pki.cert, key: pki.key }, clock, ...o });
  started.push(s);
  return s;
}

function addTicket(server: ImageioServer, o: Partial<LabTicket> = {}): LabTicket {
  const t: LabTicket = { uuid: crypto.randomUUID(), size: SIZE, ops: ["read"], timeout: 300, url: `nbd:unix:${disk.socket}`, ...o };
  server.addTicket(t);
  return t;
}

/** Poll a ticket's state (the server updates it as requests run); fails naming the state. */
function until(cond: () => boolean, what: string): Promise<true> {
  return waitFor(() => cond() || undefined, { timeoutMs: 3000, intervalMs: 10, what });
}

/**
 * Count NbdPool.acquire calls: a request asks its ticket's pool for an NBD connection before it
 * touches the disk, and when every connection is leased the call queues it. A new call seen while
 * the pool is full is a request that is now waiting for a slot.
 */
function watchAcquire(): { readonly calls: number; restore(): void } {
  const spy = vi.spyOn(NbdPool.prototype, "acquire");
  return {
    get calls() {
      return spy.mock.calls.length;
    },
    restore: () => spy.mockRestore(),
  };
}

describe("imageio tickets", () => {
  it("imageio tickets - expired tickets are refused with the transfer id; extendTicket revives them", async () => {
    const server = await startServer();
    const t = addTicket(server, { transferId: "tr-123", timeout: 30 });
    const c = await RawHttps.open(server.url, pki.caPem);
    try {
      expect((await c.request("OPTIONS", `/images/${t.uuid}`)).status).toBe(200);
      now += 31; // past the timeout with no activity
      const r = await c.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-0" });
      expect([r.status, r.body.toString()]).toEqual([403, "You are not allowed to access this resource: Transfer=tr-123 expired\n"]);
    } finally {
      c.close();
    }
    server.extendTicket(t.uuid, 60);
    expect(server.getTicket(t.uuid)!.expires).toBe(now + 60);
    const c2 = await RawHttps.open(server.url, pki.caPem);
    try {
      expect((await c2.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-0" })).status).toBe(206);
      server.faults.expire(t.uuid);
      const r = await c2.request("GET", `/images/${t.uuid}/extents`);
      expect([r.status, r.body.toString()]).toEqual([403, "You are not allowed to access this resource: Transfer=tr-123 expired\n"]);
    } finally {
      c2.close();
    }
  });

  it("imageio tickets - getTicket reports connections, transferred (union of ranges), idle_time and activity", async () => {
    const server = await startServer();
    const t = addTicket(server, { inactivityTimeout: 120 });
    const a = await RawHttps.open(server.url, pki.caPem);
    const b = await RawHttps.open(server.url, pki.caPem);
    try {
      expect((await a.request("GET", `/images/${t.uuid}`, { Range: `bytes=0-${4 * MiB - 1}` })).status).toBe(206);
      expect((await b.request("GET", `/images/${t.uuid}`, { Range: `bytes=${2 * MiB}-${6 * MiB - 1}` })).status).toBe(206);
      let info = server.getTicket(t.uuid)!;
      expect(info).toMatchObject({ uuid: t.uuid, connections: 2, transferred: 6 * MiB, active: false, idle_time: 0, canceled: false, inactivityTimeout: 120 });
      now += 7;
      expect(server.getTicket(t.uuid)!.idle_time).toBe(7);
      expect(server.getTicket(t.uuid)!.expires).toBe(now - 7 + 300);
      // OPTIONS is activity too.
      await a.request("OPTIONS", `/images/${t.uuid}`);
      expect(server.getTicket(t.uuid)!.idle_time).toBe(0);
      a.close();
      await until(() => server.getTicket(t.uuid)!.connections === 1, "the ticket to have 1 connection");
      info = server.getTicket(t.uuid)!;
      expect(info.connections).toBe(1);
    } finally {
      a.close();
      b.close();
    }
    // Read-write tickets do not report transferred, like imageio.
    const rw = addTicket(server, { ops: ["read", "write"] });
    expect("transferred" in server.getTicket(rw.uuid)!).toBe(false);

    // While an operation runs the ticket is active and idle_time is 0.
    const s = addTicket(server, { url: `nbd:unix:${slow.socket}` });
    const c = await RawHttps.open(server.url, pki.caPem);
    try {
      const pending = c.request("GET", `/images/${s.uuid}`, { Range: "bytes=0-9" });
      await until(() => server.getTicket(s.uuid)!.active, "the ticket to be active");
      now += 50;
      expect(server.getTicket(s.uuid)!.idle_time).toBe(0);
      expect((await pending).status).toBe(206);
      expect(server.getTicket(s.uuid)!.active).toBe(false);
    } finally {
      c.close();
    }
  });

  it("imageio tickets - removeTicket cancels: new requests get 'was canceled', the running GET is cut, removal waits for it", async () => {
    const server = await startServer();
    const t = addTicket(server, { url: `nbd:unix:${slow.socket}`, transferId: "tr-9" });
    const a = await RawHttps.open(server.url, pki.caPem);
    const b = await RawHttps.open(server.url, pki.caPem);
    try {
      const running = a.request("GET", `/images/${t.uuid}`);
      await until(() => server.getTicket(t.uuid)?.active === true, "the slow read to make the ticket active");
      const t0 = Date.now();
      const removal = server.removeTicket(t.uuid);
      const r = await b.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-1" });
      expect([r.status, r.body.toString()]).toEqual([403, "You are not allowed to access this resource: Transfer=tr-9 was canceled\n"]);
      await removal;
      expect(Date.now() - t0).toBeGreaterThan(200); // it waited for the running read
      const cut: unknown = await running.catch((e: unknown) => e);
      // The response had started (206 head) or not; either way it did not deliver the whole image.
      if (cut instanceof Error) expect(cut.message).toMatch(/closed/);
      else expect((cut as { body: Buffer }).body.length).toBeLessThan(SIZE);
      expect(server.getTicket(t.uuid)).toBeUndefined();
      const c = await RawHttps.open(server.url, pki.caPem);
      const gone = await c.request("GET", `/images/${t.uuid}`);
      expect(gone.body.toString()).toBe(`You are not allowed to access this resource: No such ticket ${t.uuid}\n`);
      c.close();
      await server.removeTicket(t.uuid); // idempotent
    } finally {
      a.close();
      b.close();
    }
  });

  it("imageio tickets - removeTicket gives up after the remove timeout with a transient error", async () => {
    const server = await startServer({ removeTimeoutMs: 100 });
    const t = addTicket(server, { url: `nbd:unix:${slow.socket}` });
    const a = await RawHttps.open(server.url, pki.caPem);
    try {
      const running = a.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-9" }).catch(() => undefined);
      await until(() => server.getTicket(t.uuid)?.active === true, "the slow read to make the ticket active");
      const err = await server.removeTicket(t.uuid).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TransientError);
      expect((err as TransientError).code).toBe("IMAGEIO_TICKET_CANCEL_TIMEOUT");
      expect(server.getTicket(t.uuid)!.canceled).toBe(true);
      await running;
      await server.removeTicket(t.uuid);
      expect(server.getTicket(t.uuid)).toBeUndefined();
    } finally {
      a.close();
    }
  });

  it("imageio tickets - at most maxConnections connections use a ticket; the next one waits for a free slot", async () => {
    const server = await startServer({ maxConnections: 2 });
    const t = addTicket(server);
    const conns = await Promise.all([0, 1, 2].map(() => RawHttps.open(server.url, pki.caPem)));
    const acquire = watchAcquire();
    try {
      const opt = await conns[0]!.request("OPTIONS", `/images/${t.uuid}`);
      expect(JSON.parse(opt.body.toString())).toEqual({ features: ["checksum", "extents"], max_readers: 2, max_writers: 2 });
      expect((await conns[1]!.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-0" })).status).toBe(206);
      let third = false;
      const before = acquire.calls;
      const waiting = conns[2]!.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-0" }).then((r) => ((third = true), r));
      await waitFor(() => acquire.calls > before, { what: "the third GET to ask the full pool for a connection" });
      // The request is now at the pool. This window is the test itself (a request that found both
      // slots taken must not be served while they stay taken), so it stays.
      await new Promise((r) => setTimeout(r, 300));
      expect(third).toBe(false);
      expect(server.getTicket(t.uuid)!.connections).toBe(2);
      conns[0]!.close();
      expect((await waiting).status).toBe(206);
      expect(server.getTicket(t.uuid)!.connections).toBe(2);
    } finally {
      acquire.restore();
      for (const c of conns) c.close();
    }
  });

  it("imageio tickets - close() finishes even while a request waits for a connection slot", async () => {
    const server = await startImageioServer({ tls: { cert: pki.cert, key: pki.key }, clock, maxConnections: 1 });
    const t = addTicket(server);
    const a = await RawHttps.open(server.url, pki.caPem);
    const b = await RawHttps.open(server.url, pki.caPem);
    const acquire = watchAcquire();
    try {
      expect((await a.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-0" })).status).toBe(206);
      const before = acquire.calls;
      const waiting = b.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-0" }).catch((e: unknown) => e);
      await waitFor(() => acquire.calls > before, { what: "the second GET to wait for the only connection slot" });
      const t0 = Date.now();
      await server.close();
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(await waiting).toBeInstanceOf(Error);
    } finally {
      acquire.restore();
      a.close();
      b.close();
    }
  });

  it("imageio tickets - an idle connection is dropped after the ticket's inactivity timeout", async () => {
    const server = await startServer();
    const t = addTicket(server, { inactivityTimeout: 1 });
    const c = await RawHttps.open(server.url, pki.caPem);
    try {
      expect((await c.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-0" })).status).toBe(206);
      expect(await c.waitClosed(3000)).toBe(true);
      await until(() => server.getTicket(t.uuid)!.connections === 0, "the idle connection to leave the ticket");
    } finally {
      c.close();
    }
  });

  it("imageio tickets - addTicket rejects invalid tickets with a permanent error", async () => {
    const server = await startServer();
    const bad: Array<Partial<LabTicket>> = [{ url: "file:///tmp/x" }, { size: -1 }, { ops: ["delete" as "read"] }, { uuid: "" }, { timeout: 1.5 }];
    for (const o of bad) {
      let err: unknown;
      try {
        addTicket(server, o);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(o)).toBeInstanceOf(PermanentError);
      expect((err as PermanentError).code).toBe("IMAGEIO_INVALID_TICKET");
    }
  });
});

describe("imageio faults", () => {
  it("imageio faults - failNext answers the next requests with 500/503 text bodies, by method", async () => {
    const server = await startServer();
    const t = addTicket(server);
    const c = await RawHttps.open(server.url, pki.caPem);
    try {
      server.faults.failNext(500, 2, "GET");
      server.faults.failNext(503, 1);
      let r = await c.request("OPTIONS", `/images/${t.uuid}`);
      expect([r.status, r.statusLine, r.body.toString()]).toEqual([503, "HTTP/1.1 503 Service Unavailable", "Service Unavailable\n"]);
      for (let i = 0; i < 2; i++) {
        r = await c.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-0" });
        expect([r.status, r.headers.get("content-type"), r.body.toString()]).toEqual([
          500,
          "text/plain; charset=UTF-8",
          "Server failed to perform the request, check logs\n",
        ]);
      }
      r = await c.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-0" });
      expect(r.status).toBe(206);
    } finally {
      c.close();
    }
  });

  it("imageio faults - dropConnectionAfterBytes cuts a GET after exactly N body bytes, once", async () => {
    const server = await startServer();
    const t = addTicket(server);
    server.faults.dropConnectionAfterBytes(MiB + 5, t.uuid);
    const c = await RawHttps.open(server.url, pki.caPem);
    try {
      const r = await c.request("GET", `/images/${t.uuid}`, { Range: `bytes=0-${4 * MiB - 1}` });
      expect(r.status).toBe(206);
      expect(r.body.length).toBe(MiB + 5);
      expect(r.closed).toBe(true);
    } finally {
      c.close();
    }
    const c2 = await RawHttps.open(server.url, pki.caPem);
    try {
      const r = await c2.request("GET", `/images/${t.uuid}`, { Range: `bytes=0-${4 * MiB - 1}` });
      expect(r.body.length).toBe(4 * MiB);
      expect(r.body.every((x) => x === 0x42)).toBe(true);
    } finally {
      c2.close();
    }
  });

  it("imageio faults - dropConnectionAfterBytes cuts a PUT mid-body without a response", async () => {
    const server = await startServer();
    const t = addTicket(server, { ops: ["write"] });
    server.faults.dropConnectionAfterBytes(2 * MiB);
    const c = await RawHttps.open(server.url, pki.caPem);
    try {
      const err = await c.request("PUT", `/images/${t.uuid}?flush=n`, {}, Buffer.alloc(4 * MiB, 1)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(c.isClosed).toBe(true);
    } finally {
      c.close();
    }
    server.faults.clear();
  });
});
