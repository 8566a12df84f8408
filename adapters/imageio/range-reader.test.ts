import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImageioConnectionError, ImageioForbiddenError, ImageioProtocolError, ImageioServerError, isRetryable } from "./mod.ts";
import { RangeReader, RangeReaders } from "./range-reader.ts";

const IMAGE = randomBytes(3 << 20);
type Mode = "ok" | "wrong-range" | "cut" | "403" | "503" | "stall";

describe("range reader", () => {
  let server: Server;
  let url: string;
  const modes: Mode[] = [];
  let connections = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
      const first = Number(m?.[1]);
      const last = Number(m?.[2]);
      const mode = modes.shift() ?? "ok";
      if (mode === "403" || mode === "503") {
        res.writeHead(Number(mode), { "content-type": "text/plain" }).end(`no: /images/secret-ticket`);
        return;
      }
      if (mode === "stall") return; // never answers
      const body = IMAGE.subarray(first, last + 1);
      const shown = mode === "wrong-range" ? `bytes ${first + 1}-${last + 1}/${IMAGE.length}` : `bytes ${first}-${last}/${IMAGE.length}`;
      res.writeHead(206, { "content-length": body.length, "content-range": shown });
      if (mode === "cut") {
        res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
        return;
      }
      res.end(body);
    });
    server.on("connection", () => connections++);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/images/secret-ticket`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("reads ranges into the caller's buffer at the right place, reusing one connection", async () => {
    const before = connections;
    const reader = new RangeReader({ transferUrl: url });
    const buf = Buffer.alloc(1 << 20);
    for (const [offset, length] of [[0, 4096], [12345, 1 << 20], [(3 << 20) - 100, 100]] as const) {
      const got = await reader.read(offset, length, buf);
      expect(got.buffer).toBe(buf.buffer);
      expect(got.equals(IMAGE.subarray(offset, offset + length))).toBe(true);
    }
    reader.close();
    expect(connections - before).toBe(1);
  });

  it("a Content-Range that is not the one asked for is a protocol error; the next read reconnects", async () => {
    const reader = new RangeReader({ transferUrl: url });
    modes.push("wrong-range");
    const err = await reader.read(100, 200, Buffer.alloc(200)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageioProtocolError);
    expect((await reader.read(100, 200, Buffer.alloc(200))).equals(IMAGE.subarray(100, 300))).toBe(true);
    reader.close();
  });

  it("a body cut short is a retryable connection error, and a retry on the same reader succeeds", async () => {
    const reader = new RangeReader({ transferUrl: url });
    modes.push("cut");
    const buf = Buffer.alloc(1 << 20);
    const err = await reader.read(0, 1 << 20, buf).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageioConnectionError);
    expect(isRetryable(err)).toBe(true);
    expect((await reader.read(0, 1 << 20, buf)).equals(IMAGE.subarray(0, 1 << 20))).toBe(true);
    reader.close();
  });

  it("403 and 503 are the imageio client's typed errors (only the 503 retryable), never showing the ticket", async () => {
    const readers = new RangeReaders({ transferUrl: url });
    modes.push("403", "503");
    const forbidden = await readers.read(0, 10, Buffer.alloc(10)).catch((e: unknown) => e);
    expect(forbidden).toBeInstanceOf(ImageioForbiddenError);
    expect(isRetryable(forbidden)).toBe(false);
    const busy = await readers.read(0, 10, Buffer.alloc(10)).catch((e: unknown) => e);
    expect(busy).toBeInstanceOf(ImageioServerError);
    expect(isRetryable(busy)).toBe(true);
    for (const e of [forbidden, busy]) expect(String((e as Error).message)).not.toContain("secret-ticket");
    expect((await readers.read(5, 10, Buffer.alloc(10))).equals(IMAGE.subarray(5, 15))).toBe(true);
    readers.close();
  });

  it("an abort ends a read in flight with the caller's reason", async () => {
    const reader = new RangeReader({ transferUrl: url });
    modes.push("stall");
    const ac = new AbortController();
    const reason = new Error("cancelled by the test");
    const pending = reader.read(0, 10, Buffer.alloc(10), ac.signal).catch((e: unknown) => e);
    setTimeout(() => ac.abort(reason), 50);
    expect(await pending).toBe(reason);
    reader.close();
  });
});
