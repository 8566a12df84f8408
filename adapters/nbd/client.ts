import net from "node:net";
import {
  CMD,
  CMD_FLAG,
  CMD_NAME,
  MAGIC,
  MAX_BLOCK_STATUS_SIZE,
  MAX_REQUEST_SIZE,
  MAX_ZERO_SIZE,
  REQUEST_HEADER_SIZE,
  TRANSMISSION_FLAG,
} from "./constants.ts";
import {
  NbdConnectError,
  NbdDisconnectedError,
  NbdProtocolError,
  NbdUsageError,
  nbdReplyError,
  type NbdError,
  type NbdTransientError,
} from "./errors.ts";
import { handshake, type HandshakeIo } from "./handshake.ts";
import { ReplyParser, type ReplySink, type ReplyTarget } from "./reply-parser.ts";
import type { BlockExtent, ExportInfo } from "./types.ts";

export interface NbdConnectOptions {
  /** Unix socket path (the usual case: qemu-nbd --socket). */
  socket?: string;
  /** TCP, when no socket is given. */
  host?: string;
  port?: number;
  exportName?: string;
  /**
   * Meta contexts to negotiate, e.g. ["base:allocation", "qemu:dirty-bitmap:ck1"].
   * A query ending in ":" ("qemu:dirty-bitmap:") selects every context the export offers
   * under that prefix. Contexts the server does not offer are simply absent from `contexts`.
   */
  metaContexts?: string[];
  signal?: AbortSignal;
  /** Limit for connect + handshake (a server at its connection limit never answers). Default 30 s. */
  timeoutMs?: number;
}

interface Pending extends ReplyTarget {
  resolve(t: ReplyTarget): void;
  reject(err: Error): void;
}

/** Socket reads land in one reused buffer; bigger means fewer syscalls for 4 MiB reads. */
const READ_BUFFER_SIZE = 256 * 1024;
const CLOSE_TIMEOUT_MS = 5000;

/**
 * Ferry's NBD client: fixed newstyle handshake, structured replies, meta contexts, and
 * pipelined requests (cookie → pending request). Reads and writes larger than the
 * request ceiling (min(server max block size, 32 MiB)) are split and sent together.
 * Not safe to share across processes; safe to use concurrently from many async callers.
 */
export class NbdClient {
  readonly size: number;
  readonly exportName: string;
  readonly contexts: ReadonlyMap<string, number>;
  readonly transmissionFlags: number;
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  readonly maxBlockSize: number;
  readonly structuredReplies: boolean;
  /** The largest READ/WRITE this client sends in one request. */
  readonly maxRequestSize: number;

  private readonly sock: net.Socket;
  private readonly pending = new Map<number, Pending>();
  private readonly parser: ReplyParser;
  private readonly contextNames = new Map<number, string>();
  private readonly where: string;
  private nextCookie = 1;
  private queue: Buffer[] = [];
  private blocked = false;
  private corked = false;
  private failure: Error | undefined;
  private closing = false;
  private idleWaiters: Array<() => void> = [];
  private closedPromise: Promise<void>;

  private constructor(sock: net.Socket, exportName: string, info: ExportInfo, where: string, early: Buffer[]) {
    this.sock = sock;
    this.where = where;
    this.exportName = exportName;
    this.size = info.size;
    this.contexts = info.contexts;
    for (const [name, id] of info.contexts) this.contextNames.set(id, name);
    this.transmissionFlags = info.transmissionFlags;
    this.minBlockSize = info.minBlockSize;
    this.preferredBlockSize = info.preferredBlockSize;
    this.maxBlockSize = info.maxBlockSize;
    this.structuredReplies = info.structuredReplies;
    const ceiling = Math.min(info.maxBlockSize, MAX_REQUEST_SIZE);
    this.maxRequestSize = ceiling - (ceiling % info.minBlockSize);

    const sink: ReplySink = {
      lookup: (cookie) => this.pending.get(cookie),
      complete: (t) => this.onComplete(t as Pending),
    };
    this.parser = new ReplyParser(sink, () => this.structuredReplies);
    this.closedPromise = new Promise((resolve) => sock.once("close", () => resolve()));
    sock.on("drain", () => {
      this.blocked = false;
      this.pump();
    });
    sock.on("error", (err) => this.fail(this.disconnected(err)));
    sock.on("end", () => this.fail(this.disconnected()));
    sock.on("close", () => this.fail(this.disconnected()));
    for (const b of early) this.onBytes(b, b.length);
  }

  static async connect(o: NbdConnectOptions): Promise<NbdClient> {
    const exportName = o.exportName ?? "";
    const where = o.socket ? `unix:${o.socket}` : `${o.host ?? "?"}:${o.port ?? "?"}`;
    if (!o.socket && !(o.host && o.port)) {
      throw new NbdUsageError("NBD_BAD_ADDRESS", "NbdClient.connect needs a socket path or host and port");
    }
    o.signal?.throwIfAborted();

    // Until the handshake ends, bytes go to the handshake reader; afterwards to the parser.
    let sink: ((buf: Buffer, n: number) => void) | undefined;
    const hs = new HandshakeBuffer();
    const onread = {
      buffer: Buffer.allocUnsafe(READ_BUFFER_SIZE),
      callback: (n: number, buf: Buffer): boolean => {
        if (sink) sink(buf, n);
        else hs.push(buf.subarray(0, n));
        return true;
      },
    };
    const sock = o.socket
      ? net.connect({ path: o.socket, onread })
      : net.connect({ host: o.host!, port: o.port!, onread, noDelay: true });

    let timer: NodeJS.Timeout | undefined;
    const abort = (err: Error) => {
      hs.fail(err);
      sock.destroy();
    };
    const onAbort = () => abort(o.signal!.reason instanceof Error ? o.signal!.reason : new Error("aborted"));
    o.signal?.addEventListener("abort", onAbort, { once: true });
    timer = setTimeout(
      () => abort(new NbdConnectError(`NBD server at ${where} did not complete the handshake in time`, { where })),
      o.timeoutMs ?? 30_000,
    );
    const onError = (err: Error) => hs.fail(new NbdConnectError(`cannot connect to NBD server at ${where}: ${err.message}`, { where }, err));
    const onClose = () => hs.fail(new NbdDisconnectedError(`NBD server at ${where} closed the connection during the handshake`, { where }));
    sock.on("error", onError);
    sock.on("close", onClose);

    try {
      await new Promise<void>((resolve, reject) => {
        sock.once("connect", resolve);
        hs.onFail(reject);
      });
      const io: HandshakeIo = { read: (n) => hs.read(n), write: (b) => void sock.write(b) };
      const info = await handshake(io, exportName, o.metaContexts ?? []);
      const client = new NbdClient(sock, exportName, info, where, hs.drain());
      sink = (buf, n) => client.onBytes(buf, n);
      return client;
    } catch (err) {
      sock.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      sock.off("error", onError);
      sock.off("close", onClose);
    }
  }

  /** False once closed or disconnected; every call would fail. */
  get isOpen(): boolean {
    return !this.failure && !this.closing;
  }

  get readOnly(): boolean {
    return (this.transmissionFlags & TRANSMISSION_FLAG.READ_ONLY) !== 0;
  }

  get canMultiConn(): boolean {
    return (this.transmissionFlags & TRANSMISSION_FLAG.CAN_MULTI_CONN) !== 0;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Read `length` bytes at `offset`; unaligned ranges are widened to the server's minimum block size. */
  async read(offset: number, length: number): Promise<Buffer> {
    this.checkRange("READ", offset, length);
    if (length === 0) return Buffer.alloc(0);
    const min = this.minBlockSize;
    const start = offset - (offset % min);
    const end = Math.min(Math.ceil((offset + length) / min) * min, this.size);
    const buf = Buffer.allocUnsafe(end - start);
    await this.readInto(start, buf);
    return start === offset && end === offset + length ? buf : buf.subarray(offset - start, offset - start + length);
  }

  /** Read into a caller buffer (aligned ranges only); lets a caller reuse memory. */
  async readInto(offset: number, buf: Buffer): Promise<void> {
    this.checkRange("READ", offset, buf.length);
    this.checkAligned("READ", offset, buf.length);
    const parts: Promise<ReplyTarget>[] = [];
    for (let pos = 0; pos < buf.length; pos += this.maxRequestSize) {
      const n = Math.min(this.maxRequestSize, buf.length - pos);
      parts.push(this.request(CMD.READ, 0, offset + pos, n, buf.subarray(pos, pos + n)));
    }
    await Promise.all(parts);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.checkRange("WRITE", offset, data.length);
    this.checkWritable("WRITE", offset, data.length);
    this.checkAligned("WRITE", offset, data.length);
    if (data.length === 0) return;
    const parts: Promise<ReplyTarget>[] = [];
    for (let pos = 0; pos < data.length; pos += this.maxRequestSize) {
      const n = Math.min(this.maxRequestSize, data.length - pos);
      parts.push(this.request(CMD.WRITE, 0, offset + pos, n, undefined, data.subarray(pos, pos + n)));
    }
    await Promise.all(parts);
  }

  /**
   * Make the range read as zeroes. `noHole` asks the server to keep it allocated
   * (NBD_CMD_FLAG_NO_HOLE). Servers without WRITE_ZEROES get plain zero writes.
   */
  async writeZeroes(offset: number, length: number, o: { noHole?: boolean } = {}): Promise<void> {
    this.checkRange("WRITE_ZEROES", offset, length);
    this.checkWritable("WRITE_ZEROES", offset, length);
    this.checkAligned("WRITE_ZEROES", offset, length);
    if (length === 0) return;
    const parts: Promise<ReplyTarget>[] = [];
    if (this.transmissionFlags & TRANSMISSION_FLAG.SEND_WRITE_ZEROES) {
      const flags = o.noHole ? CMD_FLAG.NO_HOLE : 0;
      const step = MAX_ZERO_SIZE - (MAX_ZERO_SIZE % this.minBlockSize);
      for (let pos = 0; pos < length; pos += step) {
        parts.push(this.request(CMD.WRITE_ZEROES, flags, offset + pos, Math.min(step, length - pos)));
      }
    } else {
      const zeroes = Buffer.alloc(Math.min(this.maxRequestSize, length));
      for (let pos = 0; pos < length; pos += zeroes.length) {
        const n = Math.min(zeroes.length, length - pos);
        parts.push(this.request(CMD.WRITE, 0, offset + pos, n, undefined, zeroes.subarray(0, n)));
      }
    }
    await Promise.all(parts);
  }

  /** Flush written data to stable storage (no-op when the server has no FLUSH). */
  async flush(): Promise<void> {
    this.checkOpen("FLUSH");
    if (!(this.transmissionFlags & TRANSMISSION_FLAG.SEND_FLUSH)) return;
    await this.request(CMD.FLUSH, 0, 0, 0);
  }

  /**
   * Extents for every negotiated context, keyed by context name, covering exactly
   * [offset, offset+length): the client repeats BLOCK_STATUS when the server answers
   * short, clips the last extent, and merges neighbours with equal flags.
   */
  async blockStatus(offset: number, length: number): Promise<Map<string, BlockExtent[]>> {
    this.checkRange("BLOCK_STATUS", offset, length);
    if (!this.contexts.size) {
      throw new NbdUsageError("NBD_NO_META_CONTEXT", `NBD export '${this.exportName}' has no negotiated meta context`);
    }
    const end = offset + length;
    const result = new Map<string, BlockExtent[]>();
    const covered = new Map<string, number>();
    for (const name of this.contexts.keys()) {
      result.set(name, []);
      covered.set(name, offset);
    }
    const step = MAX_BLOCK_STATUS_SIZE - (MAX_BLOCK_STATUS_SIZE % this.minBlockSize);
    for (;;) {
      const from = Math.min(...covered.values());
      if (from >= end) break;
      const t = await this.request(CMD.BLOCK_STATUS, 0, from, Math.min(step, end - from));
      let progressed = false;
      for (const [id, extents] of t.extents ?? []) {
        const name = this.contextNames.get(id);
        if (name === undefined) throw this.protocolFailure(`BLOCK_STATUS for unknown context id ${id}`);
        const list = result.get(name)!;
        let pos = covered.get(name)!;
        for (const e of extents) {
          const eStart = Math.max(e.offset, pos);
          const eEnd = Math.min(e.offset + e.length, end);
          if (eEnd <= eStart) continue;
          if (eStart !== pos) throw this.protocolFailure(`BLOCK_STATUS gap at ${pos} for ${name}`);
          const last = list[list.length - 1];
          if (last && last.flags === e.flags && last.offset + last.length === eStart) last.length += eEnd - eStart;
          else list.push({ offset: eStart, length: eEnd - eStart, flags: e.flags });
          pos = eEnd;
          progressed = true;
        }
        covered.set(name, pos);
      }
      if (!progressed) throw this.protocolFailure("BLOCK_STATUS reply made no progress");
    }
    return result;
  }

  /**
   * Wait for requests in flight, send NBD_CMD_DISC and close the socket. Safe to call
   * twice and after a disconnect.
   */
  async close(): Promise<void> {
    if (this.closing) return this.closedPromise;
    this.closing = true;
    if (!this.failure) {
      if (this.pending.size) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      if (!this.failure) {
        this.enqueue(this.header(CMD.DISC, 0, this.nextCookie++, 0, 0));
        this.sock.end();
      }
    }
    const timer = setTimeout(() => this.sock.destroy(), CLOSE_TIMEOUT_MS);
    await this.closedPromise;
    clearTimeout(timer);
  }

  // -- internals ------------------------------------------------------------------------

  private request(type: number, flags: number, offset: number, length: number, buf?: Buffer, payload?: Buffer): Promise<ReplyTarget> {
    const blocked = this.failure ?? (this.closing ? this.closedError(CMD_NAME[type]!) : undefined);
    if (blocked) return Promise.reject(blocked);
    const cookie = this.nextCookie++;
    return new Promise<ReplyTarget>((resolve, reject) => {
      const p: Pending = {
        cookie,
        type,
        offset,
        length,
        buf,
        covered: 0,
        error: undefined,
        extents: undefined,
        resolve,
        reject,
      };
      this.pending.set(cookie, p);
      this.enqueue(this.header(type, flags, cookie, offset, length));
      if (payload) this.enqueue(payload);
    });
  }

  private header(type: number, flags: number, cookie: number, offset: number, length: number): Buffer {
    const h = Buffer.allocUnsafe(REQUEST_HEADER_SIZE);
    h.writeUInt32BE(MAGIC.REQUEST, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(Math.floor(cookie / 0x1_0000_0000), 8);
    h.writeUInt32BE(cookie >>> 0, 12);
    h.writeUInt32BE(Math.floor(offset / 0x1_0000_0000), 16);
    h.writeUInt32BE(offset >>> 0, 20);
    h.writeUInt32BE(length, 24);
    return h;
  }

  /** Header and payload stay in order; `blocked` holds further writes until 'drain'. */
  private enqueue(buf: Buffer): void {
    this.queue.push(buf);
    if (!this.corked) {
      // Requests issued in the same tick go out in one writev.
      this.corked = true;
      this.sock.cork();
      process.nextTick(() => {
        this.corked = false;
        this.sock.uncork();
      });
    }
    this.pump();
  }

  private pump(): void {
    while (!this.blocked && this.queue.length && !this.sock.destroyed) {
      const b = this.queue.shift()!;
      if (!this.sock.write(b)) this.blocked = true;
    }
  }

  private onBytes(buf: Buffer, n: number): void {
    if (this.failure) return;
    try {
      this.parser.feed(buf, 0, n);
    } catch (err) {
      this.fail(err instanceof Error ? err : new NbdProtocolError(String(err)));
      this.sock.destroy();
    }
  }

  private onComplete(p: Pending): void {
    this.pending.delete(p.cookie);
    if (p.error) {
      const name = CMD_NAME[p.type] ?? String(p.type);
      const e: NbdError | NbdTransientError = nbdReplyError(p.error.code, name, p.offset, p.length, p.error.message);
      p.reject(e);
    } else {
      p.resolve(p);
    }
    if (this.pending.size === 0) this.wakeIdle();
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private disconnected(cause?: Error): Error {
    const n = this.pending.size;
    return new NbdDisconnectedError(
      n
        ? `NBD server at ${this.where} disconnected with ${n} request(s) in flight`
        : `NBD connection to ${this.where} is closed`,
      { where: this.where, exportName: this.exportName, inFlight: n },
      cause,
    );
  }

  private closedError(command: string): Error {
    return new NbdUsageError("NBD_CLOSED", `NBD ${command} after close()`, { where: this.where });
  }

  private protocolFailure(message: string): Error {
    const err = new NbdProtocolError(message, { where: this.where });
    this.fail(err);
    this.sock.destroy();
    return err;
  }

  /** First failure wins: every pending request is rejected, later calls fail fast. */
  private fail(err: Error): void {
    if (this.failure) return;
    // A clean close we asked for is not a failure of anything still pending (there is none).
    this.failure = this.closing && !this.pending.size ? this.closedError("request") : err;
    this.queue = [];
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
    this.wakeIdle();
  }

  private checkOpen(command: string): void {
    if (this.failure) throw this.failure;
    if (this.closing) throw this.closedError(command);
  }

  private checkRange(command: string, offset: number, length: number): void {
    this.checkOpen(command);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new NbdUsageError("NBD_BAD_RANGE", `NBD ${command}: invalid offset ${offset} or length ${length}`);
    }
    if (offset + length > this.size) {
      throw new NbdUsageError(
        "NBD_OUT_OF_RANGE",
        `NBD ${command} offset=${offset} length=${length} is past the end of the export (${this.size} bytes)`,
        { offset, length, size: this.size },
      );
    }
  }

  private checkAligned(command: string, offset: number, length: number): void {
    const min = this.minBlockSize;
    if (min > 1 && (offset % min !== 0 || (length % min !== 0 && offset + length !== this.size))) {
      throw new NbdUsageError(
        "NBD_UNALIGNED",
        `NBD ${command} offset=${offset} length=${length} is not aligned to the server's minimum block size ${min}`,
      );
    }
  }

  private checkWritable(command: string, offset: number, length: number): void {
    if (this.readOnly) throw nbdReplyError(1, command, offset, length, "export is read-only");
  }
}

/** Bytes received during the handshake, handed out in exact sizes. */
class HandshakeBuffer {
  private chunks: Buffer[] = [];
  private total = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private error: Error | undefined;
  private failListeners: Array<(e: Error) => void> = [];

  push(b: Buffer): void {
    this.chunks.push(Buffer.from(b)); // the socket reuses its read buffer
    this.total += b.length;
    this.serve();
  }

  read(n: number): Promise<Buffer> {
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.serve();
    });
  }

  fail(err: Error): void {
    if (this.error) return;
    this.error = err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
    for (const l of this.failListeners) l(err);
  }

  onFail(l: (e: Error) => void): void {
    if (this.error) l(this.error);
    else this.failListeners.push(l);
  }

  /** Whatever arrived after the handshake (normally nothing). */
  drain(): Buffer[] {
    const rest = this.chunks;
    this.chunks = [];
    this.total = 0;
    return rest;
  }

  private serve(): void {
    const w = this.waiter;
    if (!w || this.total < w.n) return;
    this.waiter = undefined;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, w.n);
    const rest = all.subarray(w.n);
    this.chunks = rest.length ? [rest] : [];
    this.total = rest.length;
    w.resolve(out);
  }
}
