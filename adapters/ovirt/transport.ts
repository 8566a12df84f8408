/**
 * One engine session: an undici Pool (keep-alive, TLS verified with the engine CA), the SSO
 * token, and the request/response rules of ovirt-api.md §1-§2: `Version: 4`, JSON both ways,
 * Bearer on every call, one re-authentication and one retry on 401, faults parsed into typed
 * errors. The password and the token live only in private fields of this object.
 */
import { inspect } from "node:util";
import { buildConnector, Pool } from "undici";
import type { z } from "zod";
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { redactText } from "../secrets.ts";
import {
  AuthError,
  EngineClientClosedError,
  EngineConflictError,
  EngineFaultError,
  EngineProtocolError,
  EngineServerError,
  EngineTlsError,
  EngineUnavailableError,
  engineFaultError,
  type EngineFault,
} from "./errors.ts";
import { SsoToken } from "./models.ts";
import { sleep } from "./sleep.ts";

export type HttpMethod = "GET" | "POST" | "PUT" | "DELETE";
export type Query = Record<string, string | number | boolean | undefined>;

export interface ApiRequest {
  readonly method: HttpMethod;
  /** Relative to /ovirt-engine/api, e.g. `/vms/<id>/backups`. */
  readonly path: string;
  readonly query?: Query;
  readonly body?: unknown;
  readonly signal?: AbortSignal | undefined;
}

/** What the operation modules use: JSON in, validated JSON out. */
export interface EngineApi {
  json<S extends z.ZodType>(req: ApiRequest, schema: S): Promise<z.output<S>>;
  /** A request whose answer body is not needed (actions, deletes). */
  send(req: ApiRequest): Promise<void>;
}

export interface SessionOptions {
  /** Engine base URL: `https://engine.example.com` (a trailing /ovirt-engine or /ovirt-engine/api is accepted). */
  readonly url: string;
  readonly user: string;
  readonly password: string;
  /** PEM of the engine CA; TLS is verified against it. Without it, the system trust store is used. */
  readonly caPem?: string | undefined;
  /**
   * Asked when a request fails TLS verification: re-read the CA the caller trusts now and return
   * its PEM. A PEM other than the one in use replaces it (`setCa`) and the request is sent once
   * more (a failed handshake never reached the engine, so this is safe for any method); the same
   * PEM, or none, and the TLS error stands. So a CA renewed on disk is picked up without a restart.
   */
  readonly refreshCa?: (() => Promise<string | undefined>) | undefined;
  /** Skip TLS verification. Only as an explicit choice the caller logs (see `EngineClient.insecure`). */
  readonly insecure?: boolean | undefined;
  /** Keep-alive connections to the engine (default 4). */
  readonly connections?: number | undefined;
  /** Headers and body timeout per request (default 120 s; creating a VM from an OVF is a blocking call). */
  readonly requestTimeoutMs?: number | undefined;
  readonly connectTimeoutMs?: number | undefined;
  /** Extra attempts for a GET that failed transiently (5xx, reset). Default 2. Other methods are never repeated. */
  readonly getRetries?: number | undefined;
  readonly retryDelayMs?: number | undefined;
}

interface RawResponse {
  readonly status: number;
  readonly contentType: string;
  readonly text: string;
}

const TLS_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "HOSTNAME_MISMATCH",
]);

/** True when a network error is a TLS verification or handshake failure (not worth retrying). */
export function isTlsFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (TLS_CODES.has(code) || code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_"));
}

/** A copy of a low-level error that is safe to keep as `cause`: redacted message, code, no nested chain. */
export function safeCause(err: unknown, scrub: (s: string) => string = redactText): Error {
  const src = err instanceof Error ? err : new Error(String(err));
  const copy = new Error(scrub(src.message));
  copy.name = src.name;
  const code = (src as { code?: unknown }).code;
  if (typeof code === "string") Object.assign(copy, { code });
  return copy;
}

/** Splits the configured URL into the origin and the path prefix in front of /ovirt-engine. */
export function parseEngineUrl(url: string): { origin: string; prefix: string; display: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new PermanentError("ENGINE_CONFIG", "engine url is not a valid URL");
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") {
    throw new PermanentError("ENGINE_CONFIG", `engine url must be https:// (got ${u.protocol})`);
  }
  if (u.username || u.password) {
    throw new PermanentError("ENGINE_CONFIG", "engine url must not carry credentials; pass user and password");
  }
  const prefix = u.pathname.replace(/\/+$/, "").replace(/\/ovirt-engine(\/api)?$/, "");
  return { origin: u.origin, prefix, display: `${u.origin}${prefix}` };
}

/** Keeps what the engine keeps of a Correlation-Id: [A-Za-z0-9._-], at most 36 characters. */
export function sanitizeCorrelationId(id: string): string {
  return id.replace(/[^A-Za-z0-9._-]/g, "").slice(0, 36);
}

function snippet(text: string, max = 300): string {
  const plain = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
  return plain.length > max ? `${plain.slice(0, max)}…` : plain;
}

function parseFault(method: string, path: string, res: RawResponse, scrub: (s: string) => string): EngineFault {
  let reason = "";
  let detail = "";
  if (res.contentType.includes("json") || res.text.trimStart().startsWith("{")) {
    try {
      const body = JSON.parse(res.text) as { reason?: unknown; detail?: unknown };
      if (typeof body.reason === "string") reason = body.reason;
      if (typeof body.detail === "string") detail = body.detail;
    } catch {
      detail = snippet(res.text);
    }
  } else {
    detail = snippet(res.text);
  }
  return { status: res.status, reason: scrub(reason), detail: scrub(detail), method, path };
}


export class EngineSession {
  /** Engine base for messages: origin plus path prefix, no credentials. */
  readonly engine: string;
  readonly user: string;
  readonly insecure: boolean;
  readonly #origin: string;
  readonly #prefix: string;
  readonly #password: string;
  #pool: Pool;
  #caPem: string | undefined;
  readonly #connections: number;
  readonly #connectTimeoutMs: number;
  readonly #refreshCa: (() => Promise<string | undefined>) | undefined;
  readonly #timeoutMs: number;
  readonly #getRetries: number;
  readonly #retryDelayMs: number;
  #token: string | undefined;
  #login: Promise<string> | undefined;
  #closed = false;
  /** Connections still in their TCP/TLS set-up: a pool's destroy does not reach them (see close). */
  readonly #connecting = new Set<{ destroy(): unknown }>();
  /** The password and the tokens issued so far: scrubbed from any engine text put into an error. */
  readonly #secrets = new Set<string>();

  constructor(o: SessionOptions) {
    const { origin, prefix, display } = parseEngineUrl(o.url);
    if (!o.user) throw new PermanentError("ENGINE_CONFIG", "engine user is required");
    if (!o.password) throw new PermanentError("ENGINE_CONFIG", "engine password is required");
    this.engine = display;
    this.user = o.user;
    this.insecure = o.insecure === true;
    this.#origin = origin;
    this.#prefix = prefix;
    this.#password = o.password;
    this.#secrets.add(o.password);
    this.#timeoutMs = o.requestTimeoutMs ?? 120_000;
    this.#getRetries = o.getRetries ?? 2;
    this.#retryDelayMs = o.retryDelayMs ?? 250;
    this.#connections = o.connections ?? 4;
    this.#connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
    this.#refreshCa = o.refreshCa;
    this.#caPem = o.caPem;
    this.#pool = this.#newPool();
  }

  #newPool(): Pool {
    const connect = buildConnector({
      timeout: this.#connectTimeoutMs,
      rejectUnauthorized: !this.insecure,
      ...(this.#caPem ? { ca: this.#caPem } : {}),
    });
    return new Pool(this.#origin, {
      connections: this.#connections,
      pipelining: 1,
      keepAliveTimeout: 10_000,
      // Tracked until connected or failed, so close() can end a handshake an engine never answers.
      connect: (opts, callback) => {
        // undici's connector returns the socket it creates (lib/core/connect.js); its types say void.
        const start = connect as unknown as (o: typeof opts, cb: (err: Error | null, sock: unknown) => void) => { destroy(): unknown };
        const done = callback as (err: Error | null, sock: unknown) => void;
        const socket = start(opts, (err, sock) => {
          this.#connecting.delete(socket);
          done(err, sock);
        });
        this.#connecting.add(socket);
      },
    });
  }

  /** The PEM TLS is verified with now (undefined: the system trust store). */
  get caPem(): string | undefined {
    return this.#caPem;
  }

  /**
   * Verify TLS with `pem` from now on: new connections use it (a new pool); requests already
   * under way finish on the old connections, which are then closed. Returns false when `pem` is
   * the one in use (nothing changes).
   */
  setCa(pem: string | undefined): boolean {
    if (pem === this.#caPem) return false;
    this.#caPem = pem;
    const old = this.#pool;
    this.#pool = this.#newPool();
    void old.close().catch(() => undefined);
    return true;
  }

  /** Sends one HTTP request; network failures become typed errors with a redacted cause. */
  async #raw(
    method: HttpMethod,
    fullPath: string,
    headers: Record<string, string>,
    body: string | undefined,
    what: string,
    signal: AbortSignal | undefined,
    retried = false,
  ): Promise<RawResponse> {
    if (this.#closed) throw new EngineClientClosedError(this.engine, what);
    const pool = this.#pool;
    try {
      const res = await pool.request({
        method,
        path: fullPath,
        headers,
        body: body ?? null,
        signal: signal ?? null,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
      const text = await res.body.text();
      const ct = res.headers["content-type"];
      return { status: res.statusCode, contentType: Array.isArray(ct) ? ct.join(",") : (ct ?? ""), text };
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (this.#closed) throw new EngineClientClosedError(this.engine, what);
      if (err instanceof TransientError || err instanceof PermanentError) throw err;
      if (isTlsFailure(err) && !retried && (await this.#caChangedSince(pool))) {
        return this.#raw(method, fullPath, headers, body, what, signal, true);
      }
      const cause = safeCause(err, (s) => this.scrub(s));
      if (isTlsFailure(err)) throw new EngineTlsError(this.engine, cause);
      throw new EngineUnavailableError(this.engine, what, cause);
    }
  }

  /**
   * After a TLS failure on `pool`: is there another CA to try? Yes when the pool was replaced
   * meanwhile (another request already picked up a new CA), or when the caller's `refreshCa`
   * hands back a PEM other than the one in use.
   */
  async #caChangedSince(pool: Pool): Promise<boolean> {
    if (this.insecure) return false;
    if (this.#pool !== pool) return true;
    if (!this.#refreshCa) return false;
    const pem = await this.#refreshCa().catch(() => undefined);
    if (pem === undefined) return false;
    this.setCa(pem);
    return this.#pool !== pool;
  }

  /** Removes the password, any token of this session and the usual secret shapes from engine text. */
  scrub(text: string): string {
    let out = text;
    for (const secret of this.#secrets) if (secret.length >= 4) out = out.split(secret).join("***");
    return redactText(out);
  }

  /** The current SSO token, logging in if needed. Concurrent callers share one login. */
  async token(signal?: AbortSignal): Promise<string> {
    if (this.#token) return this.#token;
    this.#login ??= this.#ssoLogin(signal).finally(() => {
      this.#login = undefined;
    });
    return this.#login;
  }

  /** Forgets `stale` (a token the engine just refused), unless another caller already replaced it. */
  invalidate(stale: string): void {
    if (this.#token === stale) this.#token = undefined;
  }

  async #ssoLogin(signal: AbortSignal | undefined): Promise<string> {
    const form = new URLSearchParams({
      grant_type: "password",
      scope: "ovirt-app-api",
      username: this.user,
      password: this.#password,
    }).toString();
    const res = await this.#raw(
      "POST",
      `${this.#prefix}/ovirt-engine/sso/oauth/token`,
      // The SSO insists on Accept being exactly application/json (validateClientAcceptHeader).
      { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
      form,
      "SSO login",
      signal,
    );
    if (res.status >= 500) {
      throw new EngineServerError({
        status: res.status,
        reason: "SSO",
        detail: this.scrub(snippet(res.text)),
        method: "POST",
        path: "/sso/oauth/token",
      });
    }
    let body: unknown;
    try {
      body = JSON.parse(res.text);
    } catch {
      throw new AuthError(this.engine, this.user, `http_${res.status}`, this.scrub(snippet(res.text, 200)));
    }
    const b = (body ?? {}) as { error?: unknown; error_code?: unknown; error_description?: unknown };
    // Two error shapes: {error, error_description} (OAuth) and {error_code, error} (API scope).
    if (typeof b.error_description === "string") {
      throw new AuthError(this.engine, this.user, this.scrub(String(b.error ?? "error")), this.scrub(b.error_description));
    }
    if (typeof b.error_code === "string") {
      const description = typeof b.error === "string" ? this.scrub(b.error) : "";
      throw new AuthError(this.engine, this.user, this.scrub(b.error_code), description);
    }
    if (res.status !== 200) throw new AuthError(this.engine, this.user, `http_${res.status}`, "");
    const parsed = SsoToken.safeParse(body);
    if (!parsed.success) throw new AuthError(this.engine, this.user, "bad_token_response", "no access_token in the answer");
    this.#token = parsed.data.access_token;
    this.#secrets.add(this.#token);
    // Keep the password and the last few tokens (an old one may still be echoed back).
    if (this.#secrets.size > 9) {
      for (const old of this.#secrets) {
        if (old !== this.#password) {
          this.#secrets.delete(old);
          break;
        }
      }
    }
    return this.#token;
  }

  async #once(req: ApiRequest, correlationId: string): Promise<RawResponse> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) qs.set(k, String(v));
    const fullPath = `${this.#prefix}/ovirt-engine/api${req.path}${qs.size ? `?${qs}` : ""}`;
    const body = req.body === undefined ? undefined : JSON.stringify(req.body);
    const headersFor = (token: string): Record<string, string> => ({
      authorization: `Bearer ${token}`,
      version: "4",
      accept: "application/json",
      "correlation-id": correlationId,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    });
    const what = `${req.method} ${req.path}`;
    let token = await this.token(req.signal);
    let res = await this.#raw(req.method, fullPath, headersFor(token), body, what, req.signal);
    if (res.status === 401) {
      // Tokens go stale after ~30 idle minutes; the SDK logs in again once and repeats the call once.
      this.invalidate(token);
      token = await this.token(req.signal);
      res = await this.#raw(req.method, fullPath, headersFor(token), body, what, req.signal);
      if (res.status === 401) {
        this.invalidate(token);
        throw new AuthError(this.engine, this.user, "rejected_token", "the engine refused a freshly issued token");
      }
    }
    if (res.status < 200 || res.status >= 300) {
      throw engineFaultError(parseFault(req.method, req.path, res, (s) => this.scrub(s)));
    }
    return res;
  }

  /** One API call with the GET retry policy (transient failures only, never 409). */
  async request(req: ApiRequest, correlationId: string): Promise<RawResponse> {
    const attempts = req.method === "GET" ? 1 + this.#getRetries : 1;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#once(req, correlationId);
      } catch (err) {
        const retryable = err instanceof TransientError && !(err instanceof EngineConflictError);
        if (!retryable || attempt >= attempts || req.signal?.aborted) throw err;
        await sleep(this.#retryDelayMs * 2 ** (attempt - 1), req.signal);
      }
    }
  }

  /** An EngineApi bound to one correlation id. */
  api(correlationId: string): EngineApi {
    return {
      json: async <S extends z.ZodType>(req: ApiRequest, schema: S): Promise<z.output<S>> => {
        const res = await this.request(req, correlationId);
        let body: unknown;
        try {
          body = JSON.parse(res.text);
        } catch {
          const head = this.scrub(snippet(res.text, 80));
          throw new EngineProtocolError(req.method, req.path, `not JSON (${res.status}, ${head})`);
        }
        const parsed = schema.safeParse(body);
        if (!parsed.success) {
          const issues = parsed.error.issues
            .slice(0, 5)
            .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
            .join("; ");
          throw new EngineProtocolError(req.method, req.path, issues);
        }
        return parsed.data;
      },
      send: async (req: ApiRequest): Promise<void> => {
        await this.request(req, correlationId);
      },
    };
  }

  /**
   * Closes the connections. Requests still under way get `graceMs` (default 2 s) to finish, then
   * their sockets are destroyed: a caller stops a client when it is done with it, and a request
   * left waiting on an engine that does not answer would otherwise keep the process alive until
   * the request timeout (minutes).
   */
  async close(o: { graceMs?: number } = {}): Promise<void> {
    this.#closed = true;
    this.#token = undefined;
    const pool = this.#pool;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), o.graceMs ?? 2_000)));
    const closed = pool.close().then(() => "closed" as const, () => "closed" as const);
    await Promise.race([closed, late]);
    clearTimeout(timer);
    await pool.destroy().catch(() => undefined);
    // A connection still being set up for a request that was aborted (an engine that accepts and
    // never completes TLS) is not the pool's yet: it would live until the connect timeout.
    for (const socket of this.#connecting) socket.destroy();
    this.#connecting.clear();
  }

  toString(): string {
    return `EngineSession(${this.engine}, user=${this.user})`;
  }

  toJSON(): Record<string, unknown> {
    return { engine: this.engine, user: this.user, insecure: this.insecure };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}
