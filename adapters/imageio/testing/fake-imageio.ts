/**
 * A small in-process imageio stand-in over memory buffers, for the client's unit tests only (the
 * lab's imageio over qemu-nbd is the faithful one). Follows ovirt-api.md §7 / Appendix A for the
 * parts the client uses, and lets a test inject one-shot faults.
 */
import { createHash } from "node:crypto";
import { createServer as createHttp, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttps } from "node:https";
import type { AddressInfo, Socket } from "node:net";

export interface FakeTicket {
  data: Buffer;
  ops: Array<"read" | "write">;
  /** Dirty extents (context=dirty); without it the ticket answers 404 for dirty. */
  dirty?: Array<{ start: number; length: number; dirty: boolean; zero?: boolean }>;
}

export type Fault =
  | { method: string; kind: "status"; status: number; body?: string }
  /** Send the headers of a 206 and half of the body, then destroy the socket. */
  | { method: string; kind: "truncate" }
  /** Destroy the socket before answering. */
  | { method: string; kind: "reset" }
  /** Answer a read with a Content-Range for another range. */
  | { method: string; kind: "bad-range" }
  /** Hold the answer for `ms`. */
  | { method: string; kind: "delay"; ms: number };

export interface FakeImageio {
  readonly url: string;
  readonly tickets: Map<string, FakeTicket>;
  readonly faults: Fault[];
  readonly log: Array<{ method: string; url: string; headers: IncomingMessage["headers"]; body: Buffer }>;
  /** Distinct TCP connections accepted so far, and the most open at once. */
  readonly stats: { connections: number; open: number; maxOpen: number };
  close(): Promise<void>;
}

export interface FakeImageioOptions {
  readonly tls?: { cert: string; key: string };
  readonly maxReaders?: number;
  readonly maxWriters?: number;
  /** 405: no OPTIONS (old daemon); 204: old proxy. */
  readonly legacyOptions?: 405 | 204;
  readonly features?: string[];
}

const ZERO_SCAN = 64 * 1024;

function zeroExtents(data: Buffer): Array<{ start: number; length: number; zero: boolean; hole: boolean }> {
  const out: Array<{ start: number; length: number; zero: boolean; hole: boolean }> = [];
  for (let off = 0; off < data.length; off += ZERO_SCAN) {
    const len = Math.min(ZERO_SCAN, data.length - off);
    const zero = data.subarray(off, off + len).every((b) => b === 0);
    const last = out.at(-1);
    // Unmerged neighbours on purpose: the client must merge them.
    if (last && last.zero === zero && last.length < 4 * ZERO_SCAN) last.length += len;
    else out.push({ start: off, length: len, zero, hole: false });
  }
  return out;
}

function blkhash(data: Buffer, blockSize: number): string {
  const outer = createHash("sha256");
  for (let off = 0; off < data.length; off += blockSize) {
    outer.update(createHash("sha256").update(data.subarray(off, Math.min(off + blockSize, data.length))).digest());
  }
  return outer.digest("hex");
}

export async function startFakeImageio(o: FakeImageioOptions = {}): Promise<FakeImageio> {
  const tickets = new Map<string, FakeTicket>();
  const faults: Fault[] = [];
  const log: FakeImageio["log"] = [];
  const stats = { connections: 0, open: 0, maxOpen: 0 };
  const sockets = new Set<Socket>();

  const text = (res: ServerResponse, status: number, msg: string, extra: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "text/plain; charset=UTF-8", ...extra });
    res.end(`${msg}\n`);
  };
  const json = (res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}) => {
    const s = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(s)), ...extra });
    res.end(s);
  };

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const method = req.method ?? "GET";
    log.push({ method, url: req.url ?? "", headers: req.headers, body });
    const url = new URL(req.url ?? "/", "http://x");
    const m = /^\/images\/([^/]+)(\/extents|\/checksum)?$/.exec(url.pathname);
    if (!m) return text(res, 404, "No such route");
    const id = decodeURIComponent(m[1]!);
    const sub = m[2];
    const faultIndex = faults.findIndex((f) => f.method === method);
    const fault = faultIndex >= 0 ? faults.splice(faultIndex, 1)[0] : undefined;
    if (fault?.kind === "delay") await new Promise((r) => setTimeout(r, fault.ms));
    if (fault?.kind === "reset") return void req.socket.destroy();
    if (fault?.kind === "status") return text(res, fault.status, fault.body ?? `injected ${fault.status}`);
    const t = tickets.get(id);
    if (!t) {
      return text(res, 403, `You are not allowed to access this resource: No such ticket ${id}`, { connection: "close" });
    }
    const writable = t.ops.includes("write");
    if (method === "OPTIONS") {
      if (o.legacyOptions) return text(res, o.legacyOptions, o.legacyOptions === 405 ? "Method not allowed" : "");
      const features = o.features ?? (writable ? ["checksum", "extents", "flush", "zero"] : ["checksum", "extents"]);
      return json(
        res,
        200,
        { features, max_readers: o.maxReaders ?? 8, max_writers: o.maxWriters ?? 8 },
        { allow: writable ? "OPTIONS,GET,PUT,PATCH" : "OPTIONS,GET" },
      );
    }
    if (method === "GET" && sub === "/extents") {
      const context = url.searchParams.get("context") ?? "zero";
      if (context === "dirty") {
        if (!t.dirty) return text(res, 404, "Ticket does not support dirty extents");
        return json(res, 200, t.dirty);
      }
      return json(res, 200, zeroExtents(t.data));
    }
    if (method === "GET" && sub === "/checksum") {
      const blockSize = Number(url.searchParams.get("block_size") ?? 4 * 1024 * 1024);
      return json(res, 200, { algorithm: url.searchParams.get("algorithm") ?? "blake2b", block_size: blockSize, checksum: blkhash(t.data, blockSize) });
    }
    if (method === "GET") {
      const r = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
      if (!r) return text(res, 416, "Invalid range", { "content-range": `bytes */${t.data.length}` });
      const first = Number(r[1]);
      const last = Number(r[2]);
      if (last >= t.data.length || first > last) {
        return text(res, 416, "Requested range not satisfiable", { "content-range": `bytes */${t.data.length}` });
      }
      const slice = t.data.subarray(first, last + 1);
      const shown = fault?.kind === "bad-range" ? `bytes ${first + 1}-${last + 1}/${t.data.length}` : `bytes ${first}-${last}/${t.data.length}`;
      res.writeHead(206, {
        "content-type": "application/octet-stream",
        "content-length": String(slice.length),
        "content-range": shown,
        "content-disposition": "attachment",
      });
      if (fault?.kind === "truncate") {
        res.write(slice.subarray(0, Math.floor(slice.length / 2)));
        setTimeout(() => req.socket.destroy(), 10);
        return;
      }
      return void res.end(slice);
    }
    if (!writable) return text(res, 403, `You are not allowed to access this resource: Transfer=(ticket/${id}) forbids write`);
    if (method === "PUT") {
      if (req.headers["content-length"] === undefined) return text(res, 400, "Content-Length header is required");
      const cr = /^bytes (\d+)-(\d+)\/\*$/.exec(req.headers["content-range"] ?? "bytes 0-0/*");
      if (!cr) return text(res, 400, "Invalid Content-Range header");
      const start = Number(cr[1]);
      if (start + body.length > t.data.length) return text(res, 416, "Requested range not satisfiable");
      body.copy(t.data, start);
      res.writeHead(200);
      return void res.end();
    }
    if (method === "PATCH") {
      let msg: { op?: string; offset?: number; size?: number };
      try {
        msg = JSON.parse(body.toString("utf8")) as typeof msg;
      } catch {
        return text(res, 400, "Invalid JSON message");
      }
      if (msg.op === "flush") return void res.writeHead(200).end();
      if (msg.op !== "zero") return text(res, 400, `Unsupported value '${msg.op}' for 'op', expecting one of ['flush', 'zero']`);
      if (typeof msg.size !== "number") return text(res, 400, "Missing required value for 'size'");
      const off = msg.offset ?? 0;
      if (off + msg.size > t.data.length) return text(res, 416, "Requested range not satisfiable");
      t.data.fill(0, off, off + msg.size);
      return void res.writeHead(200).end();
    }
    return text(res, 405, "Method not allowed");
  };

  const server = o.tls
    ? createHttps({ cert: o.tls.cert, key: o.tls.key }, (q, s) => void handler(q, s))
    : createHttp((q, s) => void handler(q, s));
  server.on(o.tls ? "secureConnection" : "connection", (socket: Socket) => {
    sockets.add(socket);
    stats.connections++;
    stats.open++;
    stats.maxOpen = Math.max(stats.maxOpen, stats.open);
    socket.on("close", () => {
      stats.open--;
      sockets.delete(socket);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${o.tls ? "https" : "http"}://127.0.0.1:${port}`,
    tickets,
    faults,
    log,
    stats,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
