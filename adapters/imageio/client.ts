/**
 * The imageio HTTP data client (ovirt-api.md §7): OPTIONS, extents, ranged GET streamed into one
 * buffer, PUT with Content-Range and flush=n, PATCH zero/flush, checksum. One undici Pool of
 * min(requested, server max) keep-alive connections, pipelining 1. The ticket URL is a secret: it
 * lives in private fields and every message is redacted.
 */
import { Readable } from "node:stream";
import { inspect } from "node:util";
import { Client, Pool, type Dispatcher } from "undici";
import { z } from "zod";
import { PermanentError } from "../../contracts/errors.ts";
import { redactUrl } from "../secrets.ts";
import { isTlsFailure } from "../ovirt/transport.ts";
import {
  DirtyExtentsUnsupportedError,
  ImageioConnectionError,
  ImageioForbiddenError,
  ImageioHttpError,
  ImageioProtocolError,
  ImageioServerError,
  ImageioTlsError,
  ImageioUnsupportedError,
  Redactor,
  type RequestInfo,
  statusError,
} from "./errors.ts";
import { extentsSize, parseExtents, type Extent, type ExtentContext } from "./extents.ts";

export interface OpenImageioOptions {
  /** PEM of the engine CA (hosts and proxy have certificates issued by it). */
  readonly caPem?: string | undefined;
  /** The engine proxy URL, tried when transfer_url cannot be reached at open. Also a secret. */
  readonly proxyUrl?: string | undefined;
  /** Wanted parallel connections; capped by the server's max_readers / max_writers. Default 4. */
  readonly maxConnections?: number | undefined;
  /** Aborts every request of this client. */
  readonly signal?: AbortSignal | undefined;
  /** Skip TLS verification (explicit, logged by the caller). */
  readonly insecure?: boolean | undefined;
  readonly connectTimeoutMs?: number | undefined;
  /** Headers/body inactivity timeout per request. Default 60 s (the reference client's read timeout). */
  readonly requestTimeoutMs?: number | undefined;
  /** The checksum reads the whole image before answering. Default 30 min. */
  readonly checksumTimeoutMs?: number | undefined;
}

/** OPTIONS, as imageio answers it (snake_case kept), plus what this client derived. */
export interface ImageioOptions {
  /** Methods from the `Allow` header. */
  readonly allow: readonly string[];
  readonly features: readonly string[];
  readonly max_readers: number;
  readonly max_writers: number;
  readonly unix_socket?: string | undefined;
  /** The server has no OPTIONS (405) or an old proxy answered 204: GET and PUT only, one connection. */
  readonly legacy: boolean;
}

export interface ChecksumResult {
  readonly algorithm: string;
  readonly block_size: number;
  readonly checksum: string;
}

export interface CallOptions {
  readonly signal?: AbortSignal | undefined;
}

const OptionsBody = z.object({
  features: z.array(z.string()).optional(),
  max_readers: z.number().int().positive().optional(),
  max_writers: z.number().int().positive().optional(),
  unix_socket: z.string().optional(),
});

const ChecksumBody = z.object({
  algorithm: z.string(),
  block_size: z.number().int().positive(),
  checksum: z.string().regex(/^[0-9a-f]+$/i),
});

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;
/** The reference client splits zero requests at 128 MiB (MAX_ZERO_SIZE) and PUTs 128 KiB of zeroes when the server cannot zero. */
const MAX_ZERO_SIZE = 128 * 1024 * 1024;
const ZERO_PUT_SIZE = 128 * 1024;
const ERROR_BODY_LIMIT = 4096;

function ticketOf(url: URL): string | undefined {
  const m = /\/images\/([^/?#]+)/.exec(url.pathname);
  return m ? decodeURIComponent(m[1]!) : url.pathname.split("/").filter(Boolean).at(-1);
}

function parseTransferUrl(raw: string, what: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new PermanentError("IMAGEIO_ARGUMENT", `${what} is not a valid URL`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") {
    throw new PermanentError("IMAGEIO_ARGUMENT", `${what} must be https:// (got ${u.protocol})`);
  }
  return u;
}

function checkRange(offset: number, length: number, allowEmpty = false): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < (allowEmpty ? 0 : 1)) {
    throw new PermanentError("IMAGEIO_ARGUMENT", `invalid range offset=${offset} length=${length}`);
  }
}

/** Drops an answer body. undici emits an "aborted" error on a destroyed body; nobody needs it. */
function discard(body: Dispatcher.ResponseData["body"]): void {
  if (body.destroyed) return;
  body.on("error", () => undefined);
  body.destroy();
}

async function readLimited(body: Dispatcher.ResponseData["body"]): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= ERROR_BODY_LIMIT) break;
    }
  } catch {
    // The server may close right after an error answer (it does on 403).
  }
  discard(body);
  return Buffer.concat(chunks).subarray(0, ERROR_BODY_LIMIT).toString("utf8").trim();
}

interface Endpoint {
  readonly url: URL;
  readonly display: string;
  readonly options: ImageioOptions;
}

interface Timeouts {
  readonly connect: number;
  readonly request: number;
  readonly checksum: number;
}

function tlsConnect(o: OpenImageioOptions, timeout: number) {
  return {
    timeout,
    rejectUnauthorized: o.insecure !== true,
    ...(o.caPem ? { ca: o.caPem } : {}),
  };
}

export class ImageioClient {
  /** The URL in use, redacted (scheme, host, port, /images/***). */
  readonly url: string;
  /** True when the transfer URL could not be reached and the engine proxy is used. */
  readonly viaProxy: boolean;
  /** Connections used for reads: min(requested, max_readers). */
  readonly readers: number;
  /** Connections used for writes: min(requested, max_writers); 0 for a read-only ticket. */
  readonly writers: number;
  /** True when TLS verification is off; callers must log that. */
  readonly insecure: boolean;
  readonly #base: URL;
  readonly #options: ImageioOptions;
  readonly #pool: Pool;
  readonly #redactor: Redactor;
  readonly #signal: AbortSignal | undefined;
  readonly #timeouts: Timeouts;
  #size: number | undefined;
  #closed = false;

  constructor(
    endpoint: Endpoint,
    viaProxy: boolean,
    requested: number,
    redactor: Redactor,
    o: OpenImageioOptions,
    timeouts: Timeouts,
  ) {
    this.#base = endpoint.url;
    this.url = endpoint.display;
    this.viaProxy = viaProxy;
    this.insecure = o.insecure === true;
    this.#options = endpoint.options;
    this.#redactor = redactor;
    this.#signal = o.signal;
    this.#timeouts = timeouts;
    const writable = endpoint.options.allow.includes("PUT");
    this.readers = Math.max(1, Math.min(requested, endpoint.options.max_readers));
    this.writers = writable ? Math.max(1, Math.min(requested, endpoint.options.max_writers)) : 0;
    this.#pool = new Pool(endpoint.url.origin, {
      connections: Math.max(this.readers, this.writers),
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connect: tlsConnect(o, timeouts.connect),
    });
  }

  /** The image size, once known (from extents or a Content-Range). */
  get size(): number | undefined {
    return this.#size;
  }

  /** The OPTIONS answer taken at open (an OPTIONS request counts as activity on the ticket). */
  async options(): Promise<ImageioOptions> {
    return this.#options;
  }

  #signalFor(o: CallOptions): AbortSignal | undefined {
    const signals = [this.#signal, o.signal].filter((s): s is AbortSignal => s !== undefined);
    if (signals.length === 0) return undefined;
    return signals.length === 1 ? signals[0] : AbortSignal.any(signals);
  }

  #path(suffix: string, query?: Record<string, string>): string {
    const qs = query ? `?${new URLSearchParams(query)}` : "";
    return `${this.#base.pathname}${suffix}${qs}`;
  }

  async #send(
    info: RequestInfo,
    req: {
      path: string;
      headers?: Record<string, string>;
      body?: Buffer | Uint8Array | string;
      timeoutMs?: number;
    },
    signal: AbortSignal | undefined,
  ): Promise<Dispatcher.ResponseData> {
    if (this.#closed) throw new PermanentError("IMAGEIO_CLOSED", `${info.method} ${this.url}: the client is closed`);
    signal?.throwIfAborted();
    try {
      return await this.#pool.request({
        method: info.method as Dispatcher.HttpMethod,
        path: req.path,
        headers: req.headers ?? {},
        body: req.body ?? null,
        signal: signal ?? null,
        headersTimeout: req.timeoutMs ?? this.#timeouts.request,
        bodyTimeout: req.timeoutMs ?? this.#timeouts.request,
      });
    } catch (err) {
      throw this.#networkError(info, err, signal);
    }
  }

  #networkError(info: RequestInfo, err: unknown, signal: AbortSignal | undefined): unknown {
    if (signal?.aborted) return signal.reason;
    if (err instanceof PermanentError || err instanceof ImageioConnectionError) return err;
    const cause = this.#redactor.cause(err);
    if (isTlsFailure(err)) return new ImageioTlsError(info, cause);
    const code = (err as { code?: unknown }).code;
    return new ImageioConnectionError(info, `connection failed (${typeof code === "string" ? code : cause.message})`, cause);
  }

  /** Turns a non-expected status into a typed error (reading at most a few KiB of the text body). */
  async #statusError(
    info: RequestInfo,
    res: Dispatcher.ResponseData,
    on404?: (i: RequestInfo, m: string) => Error,
  ): Promise<Error> {
    const i = { ...info, status: res.statusCode };
    if (res.statusCode >= 200 && res.statusCode < 300) {
      discard(res.body);
      return new ImageioProtocolError(i, `unexpected status ${res.statusCode}`);
    }
    const message = this.#redactor.text(await readLimited(res.body)) || `HTTP ${res.statusCode}`;
    return statusError(i, message, on404);
  }

  async #json(info: RequestInfo, res: Dispatcher.ResponseData, signal: AbortSignal | undefined): Promise<unknown> {
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      throw this.#networkError(info, err, signal);
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new ImageioProtocolError({ ...info, status: res.statusCode }, "the answer is not JSON");
    }
  }

  /** GET …/extents?context=zero|dirty, validated and merged. */
  async extents(context: ExtentContext, o: CallOptions = {}): Promise<Extent[]> {
    const info: RequestInfo = { method: "GET", url: `${this.url}/extents?context=${context}` };
    if (!this.#options.features.includes("extents")) {
      throw new ImageioUnsupportedError(info, "the server does not offer extents");
    }
    const signal = this.#signalFor(o);
    const res = await this.#send(info, { path: this.#path("/extents", { context }) }, signal);
    if (res.statusCode !== 200) {
      throw await this.#statusError(info, res, (i, m) =>
        context === "dirty" ? new DirtyExtentsUnsupportedError(i, m) : new ImageioUnsupportedError(i, `404 ${m}`),
      );
    }
    const parsed = parseExtents(await this.#json(info, res, signal), context);
    if ("problem" in parsed) throw new ImageioProtocolError(info, parsed.problem);
    this.#size = extentsSize(parsed.extents);
    return parsed.extents;
  }

  /** Checks a 206 answer's Content-Range against the requested range; records the image size. */
  #checkContentRange(info: RequestInfo, res: Dispatcher.ResponseData, offset: number, length: number): void {
    const header = res.headers["content-range"];
    const m = CONTENT_RANGE.exec(String(Array.isArray(header) ? header[0] : (header ?? "")));
    const last = offset + length - 1;
    if (!m || Number(m[1]) !== offset || Number(m[2]) !== last) {
      discard(res.body);
      throw new ImageioProtocolError(
        { ...info, status: res.statusCode },
        `Content-Range ${JSON.stringify(header ?? null)} does not match bytes ${offset}-${last}`,
      );
    }
    if (m[3] !== "*") this.#size = Number(m[3]);
  }

  async #openRange(
    offset: number,
    length: number,
    signal: AbortSignal | undefined,
  ): Promise<{ info: RequestInfo; res: Dispatcher.ResponseData }> {
    checkRange(offset, length);
    const info: RequestInfo = { method: "GET", url: this.url, offset, length };
    const res = await this.#send(
      info,
      { path: this.#path(""), headers: { range: `bytes=${offset}-${offset + length - 1}` } },
      signal,
    );
    if (res.statusCode !== 206) throw await this.#statusError(info, res);
    this.#checkContentRange(info, res, offset, length);
    return { info, res };
  }

  /**
   * Ranged GET of `length` bytes at `offset`, streamed into one buffer (`o.into`, if given, must
   * hold at least `length` bytes; its first `length` bytes are returned). A short body is a
   * transient ImageioConnectionError (retry the range).
   */
  async read(offset: number, length: number, o: CallOptions & { into?: Buffer } = {}): Promise<Buffer> {
    if (o.into && o.into.length < length) {
      throw new PermanentError("IMAGEIO_ARGUMENT", `read buffer of ${o.into.length} bytes is smaller than ${length}`);
    }
    const signal = this.#signalFor(o);
    const { info, res } = await this.#openRange(offset, length, signal);
    const target = o.into ? o.into.subarray(0, length) : Buffer.allocUnsafe(length);
    let pos = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (pos + chunk.length > length) throw new ImageioProtocolError(info, "the server sent more bytes than asked");
        chunk.copy(target, pos);
        pos += chunk.length;
      }
    } catch (err) {
      discard(res.body);
      throw this.#networkError(info, err, signal);
    }
    if (pos !== length) throw new ImageioConnectionError(info, `premature end of data: ${pos} of ${length} bytes`);
    return target;
  }

  /**
   * Ranged GET as a stream, for ranges too big to hold in memory. Errors on the stream are the
   * same typed, redacted errors as `read`; the consumer must read it to the end or destroy it.
   */
  async readStream(offset: number, length: number, o: CallOptions = {}): Promise<Readable> {
    const signal = this.#signalFor(o);
    const { info, res } = await this.#openRange(offset, length, signal);
    const mapError = (err: unknown) => this.#networkError(info, err, signal);
    async function* counted(): AsyncGenerator<Buffer> {
      let n = 0;
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          n += chunk.length;
          if (n > length) throw new ImageioProtocolError(info, "the server sent more bytes than asked");
          yield chunk;
        }
      } catch (err) {
        throw mapError(err);
      } finally {
        discard(res.body);
      }
      if (n !== length) throw new ImageioConnectionError(info, `premature end of data: ${n} of ${length} bytes`);
    }
    return Readable.from(counted(), { objectMode: false });
  }

  async #expectOk(info: RequestInfo, res: Dispatcher.ResponseData, signal: AbortSignal | undefined): Promise<void> {
    if (res.statusCode !== 200 && res.statusCode !== 204) throw await this.#statusError(info, res);
    try {
      await res.body.dump();
    } catch (err) {
      throw this.#networkError(info, err, signal);
    }
  }

  /** PUT `data` at `offset` (`Content-Range: bytes a-b/*`, `?flush=n` unless `flush`). */
  async write(offset: number, data: Buffer | Uint8Array, o: CallOptions & { flush?: boolean } = {}): Promise<void> {
    checkRange(offset, data.length, true);
    if (data.length === 0) return;
    const info: RequestInfo = { method: "PUT", url: this.url, offset, length: data.length };
    const signal = this.#signalFor(o);
    const res = await this.#send(
      info,
      {
        path: this.#path("", { flush: o.flush ? "y" : "n" }),
        headers: {
          "content-range": `bytes ${offset}-${offset + data.length - 1}/*`,
          "content-length": String(data.length),
          "content-type": "application/octet-stream",
        },
        body: data,
      },
      signal,
    );
    await this.#expectOk(info, res, signal);
  }

  async #patch(info: RequestInfo, body: Record<string, unknown>, signal: AbortSignal | undefined): Promise<void> {
    const text = JSON.stringify(body);
    const res = await this.#send(
      info,
      {
        path: this.#path(""),
        headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) },
        body: text,
      },
      signal,
    );
    await this.#expectOk(info, res, signal);
  }

  /**
   * Zero `size` bytes at `offset`: PATCH `{"op":"zero"}` in ≤ 128 MiB pieces, or, when the server
   * has no `zero` feature, PUTs of 128 KiB of zeroes (like the reference client).
   */
  async zero(offset: number, size: number, o: CallOptions & { flush?: boolean } = {}): Promise<void> {
    checkRange(offset, size, true);
    const signal = this.#signalFor(o);
    const canZero = this.#options.features.includes("zero");
    const step = canZero ? MAX_ZERO_SIZE : ZERO_PUT_SIZE;
    const zeroes = canZero ? undefined : Buffer.alloc(ZERO_PUT_SIZE);
    for (let pos = offset; pos < offset + size; pos += step) {
      const n = Math.min(step, offset + size - pos);
      if (zeroes) {
        await this.write(pos, zeroes.subarray(0, n), { signal });
      } else {
        const info: RequestInfo = { method: "PATCH", url: this.url, offset: pos, length: n };
        await this.#patch(info, { op: "zero", offset: pos, size: n, flush: false }, signal);
      }
    }
    if (o.flush) await this.flush({ signal });
  }

  /** PATCH `{"op":"flush"}`. Servers without the `flush` feature flush on every write (flush=y is their default). */
  async flush(o: CallOptions = {}): Promise<void> {
    if (!this.#options.features.includes("flush")) return;
    await this.#patch({ method: "PATCH", url: this.url }, { op: "flush" }, this.#signalFor(o));
  }

  /** GET …/checksum (imageio's block checksum, ovirt-api.md §7.8 and A.1). Default sha256 over 4 MiB blocks. */
  async checksum(o: CallOptions & { algorithm?: string; blockSize?: number } = {}): Promise<ChecksumResult> {
    const algorithm = o.algorithm ?? "sha256";
    const blockSize = o.blockSize ?? 4 * 1024 * 1024;
    const info: RequestInfo = { method: "GET", url: `${this.url}/checksum?algorithm=${algorithm}` };
    const signal = this.#signalFor(o);
    const res = await this.#send(
      info,
      {
        path: this.#path("/checksum", { algorithm, block_size: String(blockSize) }),
        timeoutMs: this.#timeouts.checksum,
      },
      signal,
    );
    if (res.statusCode !== 200) throw await this.#statusError(info, res);
    const parsed = ChecksumBody.safeParse(await this.#json(info, res, signal));
    if (!parsed.success) throw new ImageioProtocolError(info, "the checksum answer is not {algorithm, block_size, checksum}");
    return { algorithm: parsed.data.algorithm, block_size: parsed.data.block_size, checksum: parsed.data.checksum };
  }

  /** Closes the connections. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.close();
  }

  toString(): string {
    return `ImageioClient(${this.url}${this.viaProxy ? ", via proxy" : ""}, readers=${this.readers}, writers=${this.writers})`;
  }

  toJSON(): Record<string, unknown> {
    return { url: this.url, viaProxy: this.viaProxy, readers: this.readers, writers: this.writers };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** OPTIONS through a throwaway connection; the pool is sized from the answer. */
async function probe(
  url: URL,
  redactor: Redactor,
  o: OpenImageioOptions,
  timeouts: Timeouts,
): Promise<Endpoint> {
  const display = redactUrl(url);
  const info: RequestInfo = { method: "OPTIONS", url: display };
  const client = new Client(url.origin, { connect: tlsConnect(o, timeouts.connect), pipelining: 1 });
  const signal = o.signal;
  try {
    let res: Dispatcher.ResponseData;
    try {
      res = await client.request({
        method: "OPTIONS",
        path: `${url.pathname}${url.search}`,
        signal: signal ?? null,
        headersTimeout: timeouts.request,
        bodyTimeout: timeouts.request,
      });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const cause = redactor.cause(err);
      if (isTlsFailure(err)) throw new ImageioTlsError(info, cause);
      const code = (err as { code?: unknown }).code;
      throw new ImageioConnectionError(info, `cannot connect (${typeof code === "string" ? code : cause.message})`, cause);
    }
    if (res.statusCode === 405 || res.statusCode === 204) {
      // Legacy daemon (no OPTIONS) or old proxy: GET and PUT only, one connection, no extents/zero/flush.
      await res.body.dump().catch(() => undefined);
      return { url, display, options: { allow: ["GET", "PUT"], features: [], max_readers: 1, max_writers: 1, legacy: true } };
    }
    if (res.statusCode !== 200) {
      const i = { ...info, status: res.statusCode };
      const message = redactor.text(await readLimited(res.body)) || `HTTP ${res.statusCode}`;
      if (res.statusCode === 403) throw new ImageioForbiddenError(i, message);
      if (res.statusCode >= 500) throw new ImageioServerError(i, message);
      throw new ImageioHttpError(i, message);
    }
    let body: unknown;
    try {
      body = JSON.parse(await res.body.text());
    } catch {
      throw new ImageioProtocolError(info, "OPTIONS answer is not JSON");
    }
    const parsed = OptionsBody.safeParse(body);
    if (!parsed.success) throw new ImageioProtocolError(info, "OPTIONS answer has an unexpected shape");
    const allowHeader = res.headers["allow"];
    const allow = String(Array.isArray(allowHeader) ? allowHeader.join(",") : (allowHeader ?? "OPTIONS,GET"))
      .split(",")
      .map((s) => s.trim().toUpperCase())
      .filter(Boolean);
    return {
      url,
      display,
      options: {
        allow,
        features: parsed.data.features ?? [],
        max_readers: parsed.data.max_readers ?? 1,
        max_writers: parsed.data.max_writers ?? 1,
        unix_socket: parsed.data.unix_socket,
        legacy: false,
      },
    };
  } finally {
    await client.destroy().catch(() => undefined);
  }
}

/**
 * Opens a transfer: OPTIONS on `transferUrl`, falling back to `proxyUrl` when the host cannot be
 * reached (connection or TLS failure; an HTTP answer such as 403 is final). Errors never contain
 * the ticket.
 */
export async function openImageio(transferUrl: string, o: OpenImageioOptions = {}): Promise<ImageioClient> {
  const primary = parseTransferUrl(transferUrl, "transfer URL");
  const proxy = o.proxyUrl ? parseTransferUrl(o.proxyUrl, "proxy URL") : undefined;
  const redactor = new Redactor([ticketOf(primary), proxy ? ticketOf(proxy) : undefined]);
  const timeouts: Timeouts = {
    connect: o.connectTimeoutMs ?? 10_000,
    request: o.requestTimeoutMs ?? 60_000,
    checksum: o.checksumTimeoutMs ?? 30 * 60_000,
  };
  const requested = Math.max(1, Math.floor(o.maxConnections ?? 4));
  let endpoint: Endpoint;
  let viaProxy = false;
  try {
    endpoint = await probe(primary, redactor, o, timeouts);
  } catch (err) {
    const unreachable = err instanceof ImageioConnectionError || err instanceof ImageioTlsError;
    if (!proxy || !unreachable) throw err;
    endpoint = await probe(proxy, redactor, o, timeouts);
    viaProxy = true;
  }
  return new ImageioClient(endpoint, viaProxy, requested, redactor, o, timeouts);
}
