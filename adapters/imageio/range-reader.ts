/**
 * Ranged GETs of a transfer URL straight into the caller's buffer: one keep-alive HTTP/1.1
 * connection, TLS (or plain TCP for http:) read with Node's `onread`, so the socket's bytes land
 * in the window buffer where the NBD write and the hashing thread take them, and no per-chunk
 * Buffer is ever allocated. The download's data path only; OPTIONS, extents, PUT and the rest stay
 * with the imageio client beside it (client.ts), whose typed errors this raises too.
 *
 * Why not the client's `read`: undici hands every 16-64 KiB of a body over as a new Buffer. On the
 * bench child (102 MiB, 4 connections, load ~9) that garbage held RSS ~60 MiB above the buffers
 * until V8's external-memory GC caught up, and GC threads and the copies cost 1.3 CPU-s + 0.7 s of
 * GC, against 0.3 CPU-s for the same GETs read this way (measured, bench/README.md).
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import {
  ImageioConnectionError,
  ImageioProtocolError,
  ImageioTlsError,
  type RequestInfo,
  statusError,
} from "./errors.ts";
import { isTlsFailure, safeCause } from "../ovirt/transport.ts";
import { redactUrl } from "../secrets.ts";

/** Response heads larger than this are refused (imageio's are a few hundred bytes). */
const HEAD_MAX = 16 * 1024;
const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

interface Pending {
  info: RequestInfo;
  offset: number;
  target: Buffer;
  /** Body bytes stored into `target` so far. */
  pos: number;
  status: number;
  bodyLength: number;
  inBody: boolean;
  resolve(): void;
  reject(err: unknown): void;
}

export interface RangeReaderOptions {
  transferUrl: string;
  caPem?: string;
  signal?: AbortSignal;
}

/** One connection. Not safe for concurrent reads: a lane owns it (RangeReaders hands them out). */
export class RangeReader {
  readonly #url: URL;
  readonly #info: string;
  readonly #caPem: string | undefined;
  #socket: Socket | undefined;
  #ready: Promise<void> | undefined;
  #pending: Pending | undefined;
  #closed = false;
  readonly #head = Buffer.allocUnsafe(HEAD_MAX);
  #headLen = 0;

  constructor(o: { transferUrl: string; caPem?: string }) {
    this.#url = new URL(o.transferUrl);
    this.#info = redactUrl(this.#url);
    this.#caPem = o.caPem;
  }

  /**
   * GET bytes [offset, offset + length) into `into` (at least `length` long); returns that view.
   * A reset or short body is ImageioConnectionError (transient: the caller's withRetry reconnects),
   * a status other than 206 the imageio client's error for it.
   */
  async read(offset: number, length: number, into: Buffer, signal?: AbortSignal): Promise<Buffer> {
    const info: RequestInfo = { method: "GET", url: this.#info, offset, length };
    if (into.length < length) throw new ImageioProtocolError(info, `read buffer of ${into.length} bytes is smaller than ${length}`);
    if (this.#pending) throw new ImageioProtocolError(info, "a read is already in flight on this connection");
    signal?.throwIfAborted();
    if (this.#closed) throw new ImageioConnectionError(info, "the reader is closed");
    const target = into.subarray(0, length);
    const socket = await this.#connect(info);
    signal?.throwIfAborted();
    const done = new Promise<void>((resolve, reject) => {
      this.#pending = { info, offset, target, pos: 0, status: 0, bodyLength: -1, inBody: false, resolve, reject };
    });
    // The caller's reason as it is (the transfer's first failure, or a cancel), never retried.
    const onAbort = () => this.#abort(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const path = `${this.#url.pathname}${this.#url.search}`;
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${this.#url.host}\r\nRange: bytes=${offset}-${offset + length - 1}\r\n\r\n`);
      await done;
      return target;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  close(): void {
    this.#closed = true;
    this.#drop(undefined);
  }

  #connect(info: RequestInfo): Promise<Socket> {
    if (this.#socket && this.#ready) return this.#ready.then(() => this.#socket!);
    const port = Number(this.#url.port) || (this.#url.protocol === "https:" ? 443 : 80);
    const host = this.#url.hostname.replace(/^\[|\]$/g, "");
    let socket: Socket | undefined;
    const onread = {
      buffer: () => this.#nextBuffer(),
      callback: (n: number) => (this.#socket === socket ? this.#onBytes(n) : false),
    };
    socket =
      this.#url.protocol === "https:"
        ? // tls.connect passes `onread` to its socket (measured: it works); @types/node lists it for net only.
          tlsConnect({ host, port, ca: this.#caPem, servername: isIp(host) ? undefined : host, onread } as ConnectionOptions)
        : netConnect({ host, port, onread });
    socket.setNoDelay(true);
    this.#socket = socket;
    this.#headLen = 0;
    const s = socket;
    const ready = new Promise<void>((resolve, reject) => {
      s.once(this.#url.protocol === "https:" ? "secureConnect" : "connect", resolve);
      s.once("error", reject);
    });
    // Only while it is the current socket: an old one's late events must not end its successor.
    s.on("error", (err) => this.#socket === s && this.#drop(err));
    s.on("close", () => this.#socket === s && this.#drop(new Error("the server closed the connection")));
    this.#ready = ready;
    return ready.then(
      () => s,
      (err: unknown) => {
        this.#drop(err);
        throw this.#networkError(info, err);
      },
    );
  }

  /** Where the socket's next bytes go: the body's place in the target, else the head buffer. */
  #nextBuffer(): Uint8Array {
    const p = this.#pending;
    if (p?.inBody && p.status === 206) return p.target.subarray(p.pos);
    // Before a head is parsed, or an error answer's body: the head buffer (never past its end).
    return this.#head.subarray(this.#headLen);
  }

  #onBytes(n: number): boolean {
    const p = this.#pending;
    if (!p) {
      this.#drop(new Error(`${n} bytes arrived with no request in flight`));
      return false;
    }
    if (p.inBody) {
      p.pos += n;
    } else {
      this.#headLen += n;
      if (!this.#parseHead(p)) return true;
    }
    if (p.pos >= p.bodyLength) this.#finish(p);
    return true;
  }

  /** Parses the status line and headers once they are all in; moves body bytes read with them. */
  #parseHead(p: Pending): boolean {
    const end = this.#head.subarray(0, this.#headLen).indexOf("\r\n\r\n", 0, "latin1");
    if (end < 0) {
      if (this.#headLen >= HEAD_MAX) this.#fail(p, new ImageioProtocolError(p.info, "the answer's head is too long"));
      return false;
    }
    const lines = this.#head.toString("latin1", 0, end).split("\r\n");
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
    if (!status) return this.#fail(p, new ImageioProtocolError(p.info, "not an HTTP/1.1 answer")), false;
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    p.status = Number(status[1]);
    const info = { ...p.info, status: p.status };
    // Any other status: its typed error at once; the body is not read and the connection not reused.
    if (p.status !== 206) return this.#fail(p, statusError(info, `HTTP ${p.status}`)), false;
    if (headers.has("transfer-encoding")) return this.#fail(p, new ImageioProtocolError(info, "chunked answers are not expected")), false;
    const length = Number(headers.get("content-length") ?? "NaN");
    const m = CONTENT_RANGE.exec(headers.get("content-range") ?? "");
    if (!m || Number(m[1]) !== p.offset || Number(m[2]) !== p.offset + p.target.length - 1 || length !== p.target.length) {
      return this.#fail(p, new ImageioProtocolError(info, `Content-Range ${JSON.stringify(headers.get("content-range") ?? null)} does not match bytes ${p.offset}-${p.offset + p.target.length - 1}`)), false;
    }
    const extra = this.#headLen - (end + 4);
    if (extra > length) return this.#fail(p, new ImageioProtocolError(info, "the server sent more bytes than asked")), false;
    if (headers.get("connection")?.toLowerCase() === "close") this.#closeAfter = true;
    this.#head.copy(p.target, 0, end + 4, this.#headLen);
    p.bodyLength = length;
    p.pos = extra;
    this.#headLen = 0;
    p.inBody = true;
    return true;
  }

  #closeAfter = false;

  #finish(p: Pending): void {
    this.#pending = undefined;
    this.#headLen = 0;
    if (p.pos > p.bodyLength) {
      this.#fail(p, new ImageioProtocolError({ ...p.info, status: p.status }, "the server sent more bytes than asked"));
      return;
    }
    if (this.#closeAfter) this.#drop(undefined);
    p.resolve();
  }

  #fail(p: Pending, err: unknown): void {
    this.#pending = undefined;
    this.#drop(undefined);
    p.reject(err);
  }

  /** Ends the connection; a read in flight fails with `err` as a typed error (the next read reconnects). */
  #drop(err: unknown): void {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#ready = undefined;
    this.#closeAfter = false;
    this.#headLen = 0;
    socket?.destroy();
    const p = this.#pending;
    if (!p) return;
    this.#pending = undefined;
    p.reject(err === undefined ? new ImageioConnectionError(p.info, "connection closed") : this.#networkError(p.info, err));
  }

  #abort(reason: unknown): void {
    const p = this.#pending;
    this.#pending = undefined;
    this.#drop(undefined);
    p?.reject(reason);
  }

  #networkError(info: RequestInfo, err: unknown): unknown {
    if (err instanceof ImageioConnectionError || err instanceof ImageioProtocolError || err instanceof ImageioTlsError) return err;
    if (isTlsFailure(err)) return new ImageioTlsError(info, safeCause(err));
    const code = (err as { code?: unknown }).code;
    return new ImageioConnectionError(info, `connection failed (${typeof code === "string" ? code : safeCause(err).message})`, safeCause(err));
  }
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}

/**
 * Readers for a transfer's lanes: a read takes a free one (connecting on first use) and gives it
 * back, so N lanes keep at most N connections open, each reused.
 */
export class RangeReaders {
  readonly #free: RangeReader[] = [];
  readonly #all: RangeReader[] = [];
  readonly #o: { transferUrl: string; caPem?: string };
  constructor(o: { transferUrl: string; caPem?: string }) {
    this.#o = o;
  }

  async read(offset: number, length: number, into: Buffer, signal?: AbortSignal): Promise<Buffer> {
    const r = this.#free.pop() ?? this.#add();
    try {
      return await r.read(offset, length, into, signal);
    } finally {
      this.#free.push(r);
    }
  }

  #add(): RangeReader {
    const r = new RangeReader(this.#o);
    this.#all.push(r);
    return r;
  }

  close(): void {
    for (const r of this.#all) r.close();
  }
}
