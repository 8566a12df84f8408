/**
 * The hook endpoint: a small HTTP(S) server (node:http / node:https) that turns an authenticated
 * POST into one validated event on the bus. It answers 202 only after JetStream has stored the
 * event (publisher port), so a hook that got 202 can forget it; anything else it may retry, and
 * the msgID (requests.ts) keeps a retry from becoming a second event.
 *
 * node:http rather than a framework: four routes, and the parts that matter here — refusing a
 * body before reading it (Content-Length) or as soon as it passes the limit, answering before
 * the body for a missing token — are a few lines with the raw request stream.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { TransientError } from "../../contracts/errors.ts";
import { buildHookEvent, hookRoutes, idempotencyKeyProblem, isHookPath, type HookSubject } from "./requests.ts";
import { bearerChecker } from "./token.ts";

/** Publishes one event with JetStream and resolves with the ack; a TransientError means "the bus cannot take it now". */
export interface HookPublisher {
  publish(subject: HookSubject, event: Record<string, unknown> & { id: string }, msgId: string): Promise<{ stream: string; seq: number; duplicate: boolean }>;
}

/**
 * The bus cannot store the event now, for a reason the operator can act on (no stream stores the
 * subject yet, the NATS user may not publish it): `hint` is the 503's reason and the log's.
 */
export class BusUnavailableError extends TransientError {
  readonly hint: string;
  constructor(
    subject: string,
    hint: string,
    cause?: unknown,
  ) {
    super("BUS_UNAVAILABLE", `${subject}: ${hint}`, { subject }, { cause });
    this.hint = hint;
  }
}

/** The part of a pino logger the server uses. Nothing it logs holds a header. */
export interface HookLog {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface HooksServerOptions {
  readonly token: string;
  readonly publisher: HookPublisher;
  readonly log: HookLog;
  readonly maxBodyBytes: number;
  /** PEM certificate and key: serve HTTPS. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer } | undefined;
  /** Whether the bus connection is up, for GET /healthz (default: always). */
  readonly busReady?: () => boolean;
  /** Seconds a 503 asks the client to wait (Retry-After). */
  readonly retryAfterS?: number;
  readonly now?: () => Date;
}

export interface HooksServer {
  /** Listen; resolves with the URL (port 0 → the port chosen). */
  listen(host: string, port: number): Promise<string>;
  /** Stop accepting, let requests in flight finish (their publish included), close. */
  close(): Promise<void>;
}

const REALM = 'Bearer realm="ferry-hooks"';

class BodyTooLarge extends Error {}

function send(res: ServerResponse, status: number, body: Record<string, unknown>, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), "cache-control": "no-store", ...headers });
  res.end(text);
}

/** The body, or BodyTooLarge as soon as it passes `limit` (by Content-Length before reading, else while reading). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new BodyTooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.off("data", onData);
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    };
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks)));
    req.once("error", reject);
  });
}

/**
 * After a 413: read and drop what the client still sends (up to 1 MiB), so the socket closes
 * cleanly and the client reads the answer instead of a reset; a client that keeps sending is cut off.
 */
function discardRest(req: IncomingMessage): void {
  let dropped = 0;
  req.removeAllListeners("data");
  req.on("data", (c: Buffer) => {
    dropped += c.length;
    if (dropped > 1024 * 1024) req.destroy();
  });
  req.resume();
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function createHooksServer(o: HooksServerOptions): HooksServer {
  const authorized = bearerChecker(o.token);
  const now = o.now ?? (() => new Date());
  const retryAfter = String(o.retryAfterS ?? 5);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://hooks").pathname;
    const method = req.method ?? "GET";
    const seen = { method, path, remote: req.socket.remoteAddress };
    let bodyRead = false;
    const refuse = (status: number, body: Record<string, unknown>, headers: Record<string, string> = {}) => {
      o.log.warn({ ...seen, status, ...(typeof body.reason === "string" ? { reason: body.reason } : { error: body.error }) }, "hook refused");
      // Refused before its body was read: drop the rest and close, so the client sees this answer.
      if (!bodyRead) discardRest(req);
      send(res, status, body, bodyRead ? headers : { ...headers, connection: "close" });
    };

    if (path === "/healthz") {
      if (method !== "GET" && method !== "HEAD") return refuse(405, { error: "method not allowed", allow: "GET, HEAD" }, { allow: "GET, HEAD" });
      const up = o.busReady?.() ?? true;
      return send(res, up ? 200 : 503, { ok: up, nats: up ? "connected" : "disconnected" }, up ? {} : { "retry-after": retryAfter });
    }
    if (!isHookPath(path)) return refuse(404, { error: "not found", routes: [...Object.keys(hookRoutes), "/healthz"] });
    if (method !== "POST") return refuse(405, { error: "method not allowed", allow: "POST" }, { allow: "POST" });
    // Before the body is read: an unauthenticated client gets nothing more out of us.
    if (!authorized(header(req, "authorization"))) {
      return refuse(401, { error: "unauthorized", reason: "send Authorization: Bearer <token>" }, { "www-authenticate": REALM });
    }
    const type = header(req, "content-type");
    if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) {
      return refuse(415, { error: "unsupported media type", reason: "send Content-Type: application/json" });
    }
    const key = header(req, "idempotency-key") ?? header(req, "x-request-id");
    const keyProblem = key === undefined ? undefined : idempotencyKeyProblem(key);
    if (keyProblem) return refuse(400, { error: "invalid", reason: `Idempotency-Key: ${keyProblem}`, errors: [{ path: "Idempotency-Key", message: keyProblem }] });

    let body: Buffer;
    try {
      body = await readBody(req, o.maxBodyBytes);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        return refuse(413, { error: "body too large", reason: `the body is larger than ${o.maxBodyBytes} bytes`, limit: o.maxBodyBytes });
      }
      throw err;
    }
    bodyRead = true;
    const built = buildHookEvent(path, body.toString("utf8"), { idempotencyKey: key, now: now() });
    if (!built.ok) return refuse(400, { error: "invalid", subject: hookRoutes[path], reason: built.reason, errors: built.errors });

    try {
      const ack = await o.publisher.publish(built.subject, built.event, built.msgId);
      o.log.info({ ...seen, status: 202, subject: built.subject, id: built.event.id, stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate }, "hook accepted");
      send(res, 202, { id: built.event.id, subject: built.subject, stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate });
    } catch (err) {
      if (err instanceof TransientError) {
        const reason = err instanceof BusUnavailableError ? err.hint : "NATS did not store the event in time; retry later (same Idempotency-Key)";
        return refuse(503, { error: "unavailable", reason, id: built.event.id }, { "retry-after": retryAfter });
      }
      throw err;
    }
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      o.log.error({ method: req.method, path: req.url?.split("?")[0], err }, "hook failed");
      if (!res.headersSent) send(res, 500, { error: "internal error" }, { connection: "close" });
      else res.destroy();
    });
  };
  const server: Server = o.tls ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }, onRequest) : createHttpServer(onRequest);
  // A slow or silent client must not hold a connection for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;

  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const a = server.address() as AddressInfo;
          const h = a.family === "IPv6" ? `[${a.address}]` : a.address;
          resolve(`${o.tls ? "https" : "http"}://${h}:${a.port}`);
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
    },
  };
}
