/**
 * The lab imageio daemon beyond the captured rows: ranges, validation messages (as
 * imageio's validate.py words them), routing errors, parallel transfers, holes, backend
 * errors, and a real HTTP client (undici) on keep-alive connections.
 */
import crypto from "node:crypto";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startImageioServer, type ImageioServer, type LabTicket } from "../lab/imageio/mod.ts";
import { makeTestPki, RawHttps, type RawResponse, type TestPki } from "./imageio-fixtures.ts";
import { patternBytes, qemuImgCreate, qemuIoWrite, startNbdkit, startQemuNbd, tempDir, type RunningServer } from "./nbd-fixtures.ts";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

let tmp: Awaited<ReturnType<typeof tempDir>>;
let pki: TestPki;
let disk: RunningServer;
let server: ImageioServer;
const servers: RunningServer[] = [];
let seq = 0;

beforeAll(async () => {
  tmp = await tempDir("imageio-behaviour");
  pki = await makeTestPki(tmp.dir);
  const image = `${tmp.dir}/disk.qcow2`;
  await qemuImgCreate(image, SIZE);
  await qemuIoWrite(image, 0, 2 * MiB, 0x61);
  disk = await startQemuNbd({ image, socket: `${tmp.dir}/disk.sock`, shared: 64 });
  servers.push(disk);
  server = await startImageioServer({ tls: { cert: pki.cert, key: pki.key } });
});

afterAll(async () => {
  await server?.close();
  await Promise.all(servers.map((s) => s.stop()));
  await tmp?.cleanup();
});

function ticket(o: Partial<LabTicket> = {}): LabTicket {
  const t: LabTicket = { uuid: `b${++seq}-${crypto.randomUUID()}`, size: SIZE, ops: ["write"], timeout: 300, url: `nbd:unix:${disk.socket}`, ...o };
  server.addTicket(t);
  return t;
}

async function withConn<T>(fn: (c: RawHttps) => Promise<T>): Promise<T> {
  const c = await RawHttps.open(server.url, pki.caPem);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

function text(r: RawResponse): string {
  return r.body.toString("utf8");
}

describe("imageio daemon behaviour", () => {
  it("imageio - GET without Range is 200 with the whole image; bytes=N- reads to the end", async () => {
    const t = ticket({ ops: ["read"] });
    await withConn(async (c) => {
      const all = await c.request("GET", `/images/${t.uuid}`);
      expect(all.status).toBe(200);
      expect(all.headers.has("content-range")).toBe(false);
      expect(all.body.length).toBe(SIZE);
      expect(all.body.subarray(0, 2 * MiB).every((b) => b === 0x61)).toBe(true);
      expect(all.body.subarray(2 * MiB).every((b) => b === 0)).toBe(true);
      const tail = await c.request("GET", `/images/${t.uuid}`, { Range: `bytes=${2 * MiB - 2}-` });
      expect(tail.status).toBe(206);
      expect(tail.headers.get("content-range")).toBe(`bytes ${2 * MiB - 2}-${SIZE - 1}/${SIZE}`);
      expect(tail.body.length).toBe(SIZE - 2 * MiB + 2);
      expect([...tail.body.subarray(0, 3)]).toEqual([0x61, 0x61, 0]);
    });
    await server.removeTicket(t.uuid);
  });

  it("imageio - suffix, multiple and malformed ranges are 416; ranges past the export are 416 with bytes */available", async () => {
    const t = ticket({ size: 2 * SIZE, ops: ["read"] }); // a ticket larger than its export
    await withConn(async (c) => {
      const cases: Array<[string, string]> = [
        ["bytes=-4", "suffix-byte-range-spec not supported yet"],
        ["bytes=0-1,4-5", "Cannot satisfy range 'bytes=0-1,4-5', invalid range or multiple ranges"],
        ["bytes=5-1", "Cannot satisfy range 'bytes=5-1', first > last"],
        ["bytes=-", "Cannot satisfy range 'bytes=-', no first or last"],
        ["items=0-1", "Cannot satisfy range 'items=0-1', invalid range or multiple ranges"],
      ];
      for (const [range, message] of cases) {
        const r = await c.request("GET", `/images/${t.uuid}`, { Range: range });
        expect(r.status, range).toBe(416);
        expect(text(r)).toBe(message + "\n");
        expect(r.headers.has("content-range")).toBe(false);
      }
      const past = await c.request("GET", `/images/${t.uuid}`, { Range: `bytes=${SIZE - 1}-${SIZE}` });
      expect(past.status).toBe(416);
      expect(text(past)).toBe(`Requested more bytes than available: ${SIZE + 1} > ${SIZE}\n`);
      expect(past.headers.get("content-range")).toBe(`bytes */${SIZE}`);
      const beyondTicket = await c.request("GET", `/images/${t.uuid}`, { Range: `bytes=0-${2 * SIZE}` });
      expect(beyondTicket.headers.get("content-range")).toBe(`bytes */${2 * SIZE}`);
    });
    await server.removeTicket(t.uuid);
  });

  it("imageio - PUT validation: Content-Length, Content-Range, flush, and 416 past the ticket size (closing the connection)", async () => {
    const t = ticket();
    const refused: Array<[string, Record<string, string>, string]> = [
      ["?flush=x", {}, "Unsupported value 'x' for 'flush', expecting one of ['n', 'y']"],
      ["", { "Content-Range": "bytes 10-5/*" }, "Invalid Content-Range 'bytes 10-5/*', first > last"],
      ["", { "Content-Range": "bytes=0-3" }, "Invalid Content-Range 'bytes=0-3'"],
      ["", { "Content-Length": "x" }, "Invalid Content-Length: 'x'"],
    ];
    for (const [query, headers, message] of refused) {
      await withConn(async (c) => {
        // An error before the body is read closes the connection (the body would be parsed as a request).
        const r = await c.request("PUT", `/images/${t.uuid}${query}`, headers, "abcd");
        expect([r.status, text(r)]).toEqual([400, message + "\n"]);
        expect(await c.waitClosed(2000)).toBe(true);
      });
    }
    await withConn(async (c) => {
      // Without Content-Range the offset is 0; flush defaults to y.
      let r = await c.request("PUT", `/images/${t.uuid}`, {}, "WXYZ");
      expect(r.status).toBe(200);
      r = await c.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-5" });
      expect(text(r)).toBe("WXYZaa");
    });
    await withConn(async (c) => {
      const r = await c.request("PUT", `/images/${t.uuid}`, { "Content-Range": `bytes ${SIZE - 2}-${SIZE + 1}/*` }, "abcd");
      expect([r.status, text(r)]).toEqual([416, "Requested range out of allowed range\n"]);
      expect(r.headers.get("content-range")).toBe(`bytes */${SIZE}`);
      expect(r.headers.get("connection")).toBe("close"); // the body was not read
      expect(r.closed).toBe(true);
    });
    await server.removeTicket(t.uuid);
  });

  it("imageio - PATCH validation messages match validate.py", async () => {
    const t = ticket();
    const cases: Array<[string, number, string]> = [
      ["", 400, "Invalid JSON message Expecting value: line 1 column 1 (char 0)"],
      ['{"op": }', 400, "Invalid JSON message Expecting value: line 1 column 8 (char 7)"],
      ["{}", 400, "Missing required value for op"],
      ['{"op":"zero"}', 400, "Missing required value for 'size'"],
      ['{"op":"zero","size":"abc"}', 400, "Integer required 'abc'"],
      ['{"op":"zero","size":1.0}', 400, "Integer required 1.0"],
      ['{"op":"zero","size":-1}', 400, "Invalid value -1 < 0"],
      ['{"op":"zero","size":1,"offset":null}', 400, "Integer required None"],
      ['{"op":"zero","size":1,"flush":"yes"}', 400, "Boolean required 'yes'"],
      ['{"op":5}', 400, "Unsupported value 5 for 'op', expecting one of ['flush', 'zero']"],
      [`{"op":"zero","size":${SIZE},"offset":1}`, 416, "Requested range out of allowed range"],
      ["[1, 2]", 500, "Server failed to perform the request, check logs"],
    ];
    await withConn(async (c) => {
      for (const [body, status, message] of cases) {
        const r = await c.request("PATCH", `/images/${t.uuid}`, { "Content-Type": "application/json" }, body);
        expect([r.status, text(r)], body).toEqual([status, message + "\n"]);
      }
      // true is an int in Python: size=true zeroes one byte.
      await c.request("PUT", `/images/${t.uuid}?flush=n`, { "Content-Range": "bytes 8-9/*" }, "zz");
      const r = await c.request("PATCH", `/images/${t.uuid}`, {}, '{"op":"zero","offset":8,"size":true}');
      expect(r.status).toBe(200);
      expect((await c.request("GET", `/images/${t.uuid}`, { Range: "bytes=8-9" })).body.toString("latin1")).toBe("\0z");
    });
    await server.removeTicket(t.uuid);
  });

  it("imageio - extents and checksum parameters are validated; shake_* fails like the real daemon", async () => {
    const t = ticket({ ops: ["read"] });
    await withConn(async (c) => {
      const cases: Array<[string, number, string]> = [
        ["extents?context=foo", 400, "Unsupported value 'foo' for 'context', expecting one of ['dirty', 'zero']"],
        ["checksum?block_size=abc", 400, "Invalid block size: 'abc'"],
        ["checksum?block_size=4096", 400, "Block size out of allowed range: 1048576-16777216"],
        ["checksum?block_size=1049088", 400, "Block size is not aligned to 4096"],
        ["checksum?algorithm=shake_128", 500, "Server failed to perform the request, check logs"],
      ];
      for (const [path, status, message] of cases) {
        const r = await c.request("GET", `/images/${t.uuid}/${path}`);
        expect([r.status, text(r)], path).toEqual([status, message + "\n"]);
      }
      const bad = await c.request("GET", `/images/${t.uuid}/checksum?algorithm=crc32`);
      expect(bad.status).toBe(400);
      expect(text(bad)).toMatch(/^Unsupported value 'crc32' for 'algorithm', expecting one of \['blake2b', 'blake2s', 'md5', /);
      const r = await c.request("GET", `/images/${t.uuid}/checksum?algorithm=md5&block_size=1048576`);
      expect(JSON.parse(text(r))).toMatchObject({ algorithm: "md5", block_size: 1048576 });
    });
    await server.removeTicket(t.uuid);
  });

  it("imageio - routing errors: no handler, method not defined, invalid method, missing ticket id", async () => {
    await withConn(async (c) => {
      let r = await c.request("GET", "/foo");
      expect([r.status, text(r)]).toEqual([404, "No handler for '/foo'\n"]);
      r = await c.request("DELETE", "/images/abc");
      expect([r.status, text(r)]).toEqual([405, "Method 'DELETE' not defined for '/images/abc'\n"]);
      r = await c.request("BREW", "/images/abc");
      expect([r.status, text(r)]).toEqual([405, "Invalid method 'BREW'\n"]);
      r = await c.request("GET", "/images/");
      expect([r.status, text(r)]).toEqual([400, "Ticket id is required\n"]);
      r = await c.request("GET", "/images/x/checksum/algorithms"); // no ticket needed
      expect(r.status).toBe(200);
    });
  });

  it("imageio - parallel PUTs on four connections, then checksum equals the A.1 block checksum of the data", async () => {
    const t = ticket();
    const data = crypto.randomBytes(SIZE);
    const conns = await Promise.all([0, 1, 2, 3].map(() => RawHttps.open(server.url, pki.caPem)));
    try {
      const quarter = SIZE / 4;
      await Promise.all(
        conns.map(async (c, i) => {
          for (let off = i * quarter; off < (i + 1) * quarter; off += 2 * MiB) {
            const r = await c.request("PUT", `/images/${t.uuid}?flush=n`, { "Content-Range": `bytes ${off}-${off + 2 * MiB - 1}/*` }, data.subarray(off, off + 2 * MiB));
            expect(r.status).toBe(200);
          }
          expect((await c.request("PATCH", `/images/${t.uuid}`, {}, '{"op": "flush"}')).status).toBe(200);
        }),
      );
      expect(server.getTicket(t.uuid)!.connections).toBe(4);
      const r = await conns[0]!.request("GET", `/images/${t.uuid}/checksum?algorithm=sha256`);
      const outer = crypto.createHash("sha256");
      for (let off = 0; off < SIZE; off += 4 * MiB) outer.update(crypto.createHash("sha256").update(data.subarray(off, off + 4 * MiB)).digest());
      expect(JSON.parse(text(r))).toEqual({ algorithm: "sha256", block_size: 4 * MiB, checksum: outer.digest("hex") });
      const back = await conns[1]!.request("GET", `/images/${t.uuid}`);
      expect(back.body.equals(data)).toBe(true);
    } finally {
      for (const c of conns) c.close();
    }
    await server.removeTicket(t.uuid);
  });

  it("imageio - holes are reported only when the export offers qemu:allocation-depth", async () => {
    const fresh = `${tmp.dir}/holes.qcow2`;
    await qemuImgCreate(fresh, 4 * MiB);
    await qemuIoWrite(fresh, 0, MiB, 0x01);
    const plain = await startQemuNbd({ image: fresh, socket: `${tmp.dir}/holes.sock`, readOnly: true });
    const depth = await startQemuNbd({ image: fresh, socket: `${tmp.dir}/holes-a.sock`, readOnly: true, allocationDepth: true });
    servers.push(plain, depth);
    const a = ticket({ ops: ["read"], size: 4 * MiB, url: `nbd:unix:${plain.socket}` });
    const b = ticket({ ops: ["read"], size: 4 * MiB, url: `nbd:unix:${depth.socket}` });
    await withConn(async (c) => {
      const ra = await c.request("GET", `/images/${a.uuid}/extents`);
      expect(text(ra)).toBe('[{"start": 0, "length": 1048576, "zero": false, "hole": false}, {"start": 1048576, "length": 3145728, "zero": true, "hole": false}]\n');
      const rb = await c.request("GET", `/images/${b.uuid}/extents`);
      expect(text(rb)).toBe('[{"start": 0, "length": 1048576, "zero": false, "hole": false}, {"start": 1048576, "length": 3145728, "zero": true, "hole": true}]\n');
    });
    await Promise.all([server.removeTicket(a.uuid), server.removeTicket(b.uuid)]);
  });

  it("imageio - an NBD read error is a 500 with imageio's text, and the connection stays usable", async () => {
    const trigger = `${tmp.dir}/eio`;
    const k = await startNbdkit({ socket: `${tmp.dir}/k.sock`, plugin: "memory", args: ["8M", "error-pread=EIO", "error-pread-rate=100%", `error-pread-file=${trigger}`], filters: ["error"] });
    servers.push(k);
    const t = ticket({ size: 8 * MiB, url: `nbd:unix:${k.socket}` });
    await withConn(async (c) => {
      const { writeFile, rm } = await import("node:fs/promises");
      await writeFile(trigger, "");
      let r = await c.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-99" });
      expect([r.status, text(r)]).toEqual([500, "Server failed to perform the request, check logs\n"]);
      await rm(trigger);
      r = await c.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-99" });
      expect(r.status).toBe(206);
      expect(c.isClosed).toBe(false);
    });
    await server.removeTicket(t.uuid);
  });

  it("imageio - undici on keep-alive connections: ranged GET, PUT, OPTIONS; Expect: 100-continue is honoured", async () => {
    const t = ticket();
    const dispatcher = new Agent({ connect: { ca: pki.caPem }, connections: 2 });
    try {
      const url = `${server.url}/images/${t.uuid}`;
      const body = patternBytes(3 * MiB, 77);
      const put = await request(`${url}?flush=n`, { method: "PUT", body, headers: { "content-range": `bytes ${MiB}-${4 * MiB - 1}/*` }, dispatcher });
      expect(put.statusCode).toBe(200);
      await put.body.dump();
      const get = await request(url, { headers: { range: `bytes=${MiB}-${4 * MiB - 1}` }, dispatcher });
      expect(get.statusCode).toBe(206);
      expect(Buffer.from(await get.body.arrayBuffer()).equals(body)).toBe(true);
      const opt = await request(url, { method: "OPTIONS", dispatcher });
      expect(await opt.body.json()).toEqual({ features: ["checksum", "extents", "flush", "zero"], max_readers: 8, max_writers: 8 });
    } finally {
      await dispatcher.close();
    }
    await withConn(async (c) => {
      // The body is sent only after the server's 100 Continue, like curl does for large uploads.
      c.send("PUT", `/images/${t.uuid}?flush=n`, { "Content-Length": 4, "Content-Range": "bytes 0-3/*", Expect: "100-continue" });
      expect(await c.interim()).toBe("HTTP/1.1 100 Continue");
      c.write("EXPC");
      expect((await c.response()).status).toBe(200);
      expect(text(await c.request("GET", `/images/${t.uuid}`, { Range: "bytes=0-3" }))).toBe("EXPC");
    });
    await server.removeTicket(t.uuid);
  });
});
