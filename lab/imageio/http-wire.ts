import type { Socket } from "node:net";
import { pyJsonDumps } from "./py-json.ts";
import { HttpError, STATUS } from "./validate.ts";

/**
 * A deliberately small HTTP/1.1 server connection, so responses are byte-for-byte what
 * imageio's own server (Python http.server + imageio's Response) sends: status line with
 * Python's reason phrases, `server` and `date` first, lowercase headers in insertion
 * order, no added `connection: keep-alive`. Keep-alive, pipelining, `Expect:
 * 100-continue` and Content-Length bodies are supported; chunked bodies are not
 * (imageio does not support them either).
 */

export const SERVER_VERSION = "2.5.3";

const REASON: Readonly<Record<number, string>> = {
  100: "Continue",
  200: "OK",
  204: "No Content",
  206: "Partial Content",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  414: "Request-URI Too Long",
  416: "Requested Range Not Satisfiable",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

const MAX_REQUEST_LINE = 4096;
const MAX_HEAD = 64 * 1024 + MAX_REQUEST_LINE;
/** Pause the socket when this much unread input is queued (bounds memory per connection). */
const HIGH_WATER = 1024 * 1024;
const EMPTY = Buffer.alloc(0);

/** The peer went away while we were reading or writing. */
export class ConnectionLost extends Error {}

export type App = (req: HttpRequest, resp: HttpResponse) => Promise<void>;

export class HttpRequest {
  /** Unread body bytes (Content-Length based); 0 without Content-Length. */
  remaining: number;
  private contentLengthValue: number | null | undefined;

  readonly conn: HttpConnection;
  readonly method: string;
  /** Percent-decoded path without the query. */
  readonly path: string;
  readonly version: string;
  /** Raw request target, path and query. */
  readonly uri: string;
  /** parse_qsl(keep_blank_values=True), last value wins. */
  readonly query: Map<string, string>;
  /** Lowercase names, first occurrence wins. */
  readonly headers: Map<string, string>;
  constructor(conn: HttpConnection, method: string, uri: string, path: string, query: Map<string, string>, headers: Map<string, string>, version: string) {
    this.conn = conn;
    this.method = method;
    this.uri = uri;
    this.path = path;
    this.query = query;
    this.headers = headers;
    this.version = version;
    const cl = headers.get("content-length");
    const valid = cl !== undefined && /^\s*\+?\d+\s*$/.test(cl);
    this.remaining = valid ? Number(cl) : 0;
    // A body we cannot delimit (chunked, bad length) must not be parsed as the next request.
    if ((cl !== undefined && !valid) || headers.has("transfer-encoding")) conn.closeAfter = true;
  }

  /** Parsed Content-Length, null when absent; invalid values are a 400 like imageio's. */
  get contentLength(): number | null {
    if (this.contentLengthValue !== undefined) return this.contentLengthValue;
    const value = this.headers.get("content-length");
    if (value === undefined) return (this.contentLengthValue = null);
    if (!/^\s*[+-]?\d+(_\d+)*\s*$/.test(value)) {
      this.contentLengthValue = null;
      throw new HttpError(STATUS.BAD_REQUEST, `Invalid Content-Length: '${value}'`);
    }
    const n = Number(value.trim().replace(/_/g, ""));
    if (n < 0) {
      this.contentLengthValue = null;
      throw new HttpError(STATUS.BAD_REQUEST, `Negative Content-Length: ${n}`);
    }
    return (this.contentLengthValue = n);
  }

  /** Up to `max` body bytes; an empty buffer when the body is done or the peer closed. */
  async read(max: number): Promise<Buffer> {
    if (this.remaining <= 0) return EMPTY;
    const b = await this.conn.readSome(Math.min(max, this.remaining));
    this.remaining -= b.length;
    return b;
  }

  /** Copy up to `max` body bytes (whatever is buffered, waiting only if nothing is) into `target`. */
  async readInto(target: Buffer, offset: number, max: number): Promise<number> {
    if (this.remaining <= 0) return 0;
    const n = await this.conn.readInto(target, offset, Math.min(max, this.remaining));
    this.remaining -= n;
    return n;
  }

  /** The whole remaining body (small bodies only: PATCH). */
  async readAll(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      const b = await this.read(this.remaining);
      if (!b.length) break;
      parts.push(b);
    }
    return Buffer.concat(parts);
  }

  get clientAddr(): string {
    return this.conn.socket.remoteAddress ?? "";
  }
}

export class HttpResponse {
  status: number = STATUS.OK;
  /** imageio starts every response with content-length 0; setting a key keeps its position. */
  readonly headers = new Map<string, string>([["content-length", "0"]]);
  started = false;

  private readonly conn: HttpConnection;
  constructor(conn: HttpConnection) {
    this.conn = conn;
  }

  set(name: string, value: string | number): void {
    this.headers.set(name.toLowerCase(), String(value));
  }

  /** Mark the connection for closing after this response (adds `connection: close`). */
  closeConnection(): void {
    this.set("connection", "close");
    this.conn.closeAfter = true;
  }

  /** First call sends the head; the caller has set content-length. Waits for drain. */
  async write(data: Buffer): Promise<void> {
    if (!this.started) {
      this.started = true;
      const head = this.head();
      if (data.length < 4096) return this.conn.write(data.length ? Buffer.concat([head, data]) : head);
      // Same socket, so order is kept; only the data write needs awaiting.
      this.conn.write(head).catch(() => undefined);
    }
    if (data.length) await this.conn.write(data);
  }

  async sendJson(obj: unknown): Promise<void> {
    if (this.started) throw new Error("Response already sent");
    this.status = STATUS.OK;
    const body = Buffer.from(pyJsonDumps(obj) + "\n", "utf8");
    this.set("content-length", body.length);
    this.set("content-type", "application/json");
    await this.write(body);
  }

  async sendError(e: HttpError): Promise<void> {
    if (this.started) throw new Error("Response already sent");
    this.status = e.status;
    const body = Buffer.from(e.message + "\n", "utf8");
    this.set("content-type", "text/plain; charset=UTF-8");
    this.set("content-length", body.length);
    if (e.contentRange !== undefined) this.set("content-range", e.contentRange);
    await this.write(body);
  }

  private head(): Buffer {
    let s = `HTTP/1.1 ${this.status} ${REASON[this.status] ?? ""}\r\n`;
    s += `server: imageio/${SERVER_VERSION}\r\n`;
    s += `date: ${new Date().toUTCString()}\r\n`;
    for (const [k, v] of this.headers) s += `${k}: ${v}\r\n`;
    return Buffer.from(s + "\r\n", "utf8");
  }
}

let connectionCounter = 0;

export class HttpConnection {
  readonly id = ++connectionCounter;
  /** Per-connection state handlers cache (imageio's req.context); closed with the connection. */
  readonly context = new Map<string, { close(): void }>();
  closeAfter = false;

  private chunks: Buffer[] = [];
  private buffered = 0;
  private eof = false;
  private wake: (() => void) | undefined;
  private contextsClosed = false;

  readonly socket: Socket;
  private readonly app: App;
  constructor(
    socket: Socket,
    app: App,
    idleTimeoutMs: number,
  ) {
    this.socket = socket;
    this.app = app;
    socket.setNoDelay(true);
    this.setTimeout(idleTimeoutMs);
    socket.on("data", (b: Buffer) => {
      this.chunks.push(b);
      this.buffered += b.length;
      if (this.buffered >= HIGH_WATER) socket.pause();
      this.notify();
    });
    const done = () => {
      this.eof = true;
      this.notify();
    };
    socket.on("end", done);
    socket.on("close", () => {
      done();
      this.closeContexts();
    });
    socket.on("error", done);
  }

  get closed(): boolean {
    return this.socket.destroyed;
  }

  setTimeout(ms: number): void {
    this.socket.setTimeout(ms, () => this.socket.destroy());
  }

  /** Drop the connection now (fault injection, broken response). */
  destroy(): void {
    this.socket.destroy();
  }

  async run(): Promise<void> {
    try {
      for (;;) {
        const req = await this.nextRequest();
        if (!req) break;
        const resp = new HttpResponse(this);
        await this.app(req, resp);
        if (this.socket.destroyed) break;
        if (!resp.started) await resp.write(EMPTY);
        // An unread body would be parsed as the next request.
        if (req.remaining > 0) this.closeAfter = true;
        if (this.closeAfter) break;
      }
      if (!this.socket.destroyed) this.socket.end();
    } catch {
      this.socket.destroy();
    } finally {
      this.closeContexts();
    }
  }

  async readSome(max: number): Promise<Buffer> {
    while (!this.buffered) {
      if (this.eof) return EMPTY;
      await new Promise<void>((r) => (this.wake = r));
    }
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length <= max) {
      out = first;
      this.chunks.shift();
    } else {
      out = first.subarray(0, max);
      this.chunks[0] = first.subarray(max);
    }
    this.buffered -= out.length;
    if (this.buffered < HIGH_WATER / 2 && this.socket.isPaused()) this.socket.resume();
    return out;
  }

  async readInto(target: Buffer, offset: number, max: number): Promise<number> {
    while (!this.buffered) {
      if (this.eof) return 0;
      await new Promise<void>((r) => (this.wake = r));
    }
    let n = 0;
    while (n < max && this.chunks.length) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length, max - n);
      c.copy(target, offset + n, 0, take);
      n += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    this.buffered -= n;
    if (this.buffered < HIGH_WATER / 2 && this.socket.isPaused()) this.socket.resume();
    return n;
  }

  /**
   * Resolves once the socket has taken the data (its write callback), so the caller may
   * reuse the buffer; rejects with ConnectionLost if the peer is gone.
   */
  write(data: Buffer): Promise<void> {
    if (this.socket.destroyed || this.socket.writableEnded) return Promise.reject(new ConnectionLost("connection closed"));
    return new Promise<void>((resolve, reject) => {
      this.socket.write(data, (err) => (err ? reject(new ConnectionLost(err.message)) : resolve()));
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private closeContexts(): void {
    if (this.contextsClosed) return;
    this.contextsClosed = true;
    for (const c of this.context.values()) {
      try {
        c.close();
      } catch {
        // Closing a context must not stop the others from closing.
      }
    }
    this.context.clear();
  }

  /** Read and parse the next request head; null at a clean EOF. Bad heads get a 400 and close. */
  private async nextRequest(): Promise<HttpRequest | null> {
    let head: Buffer | undefined;
    for (;;) {
      if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
      const buf = this.chunks[0];
      if (buf) {
        // Tolerate stray CRLFs between requests, like http.server does.
        let start = 0;
        while (start < buf.length && (buf[start] === 0x0d || buf[start] === 0x0a)) start++;
        const crlf = buf.indexOf("\r\n\r\n", start);
        const lf = buf.indexOf("\n\n", start);
        const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf + 4 : lf >= 0 ? lf + 2 : -1;
        if (end >= 0) {
          head = buf.subarray(start, end);
          const rest = buf.subarray(end);
          this.chunks = rest.length ? [rest] : [];
          this.buffered = rest.length;
          break;
        }
        if (buf.length - start > MAX_HEAD) {
          await this.reject(STATUS.BAD_REQUEST, "Request header too large");
          return null;
        }
      }
      if (this.eof) return null;
      if (this.socket.isPaused()) this.socket.resume();
      await new Promise<void>((r) => (this.wake = r));
    }

    const lines = head.toString("latin1").split(/\r?\n/);
    const requestLine = lines[0]!;
    if (requestLine.length > MAX_REQUEST_LINE) {
      await this.reject(STATUS.REQUEST_URI_TOO_LARGE, "Request-URI Too Long");
      return null;
    }
    const words = requestLine.split(/\s+/).filter(Boolean);
    if (words.length !== 3 || !/^HTTP\/1\.\d$/.test(words[2]!)) {
      await this.reject(STATUS.BAD_REQUEST, `Bad request syntax (${JSON.stringify(requestLine)})`);
      return null;
    }
    const [method, uri, version] = words as [string, string, string];
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      if (!line) continue;
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
    }
    const q = uri.indexOf("?");
    const rawPath = q >= 0 ? uri.slice(0, q) : uri;
    const query = new Map<string, string>();
    if (q >= 0) {
      for (const part of uri.slice(q + 1).split(/[&;]/)) {
        if (!part) continue;
        const eq = part.indexOf("=");
        const k = eq >= 0 ? part.slice(0, eq) : part;
        const v = eq >= 0 ? part.slice(eq + 1) : "";
        query.set(unquotePlus(k), unquotePlus(v));
      }
    }
    const conntype = (headers.get("connection") ?? "").toLowerCase();
    if (conntype === "close" || (version === "HTTP/1.0" && conntype !== "keep-alive")) this.closeAfter = true;
    if (version !== "HTTP/1.0" && (headers.get("expect") ?? "").toLowerCase() === "100-continue") {
      await this.write(Buffer.from("HTTP/1.1 100 Continue\r\n\r\n", "latin1"));
    }
    return new HttpRequest(this, method, uri, unquote(rawPath), query, headers, version);
  }

  private async reject(status: number, message: string): Promise<void> {
    const resp = new HttpResponse(this);
    resp.closeConnection();
    await resp.sendError(new HttpError(status, message)).catch(() => undefined);
  }
}

function unquote(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function unquotePlus(s: string): string {
  return unquote(s.replace(/\+/g, " "));
}
