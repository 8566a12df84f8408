/**
 * A scripted stand-in for the engine's HTTP edge, for unit tests only (the lab is the real
 * simulation). It implements the SSO token endpoint and Bearer checks; every API request is
 * recorded and answered by the test's `route` function (unanswered → 404 with no body).
 */
import type { IncomingHttpHeaders } from "node:http";
import { createServer as createHttp, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttps } from "node:https";
import type { AddressInfo } from "node:net";

export interface Recorded {
  readonly method: string;
  /** Path relative to /ovirt-engine/api (or the full path for non-API requests), without the query. */
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** JSON body, if it parsed. */
  readonly json: unknown;
}

export interface Reply {
  readonly status: number;
  readonly json?: unknown;
  readonly text?: string;
  readonly headers?: Record<string, string>;
}

export type Route = (req: Recorded) => Reply | undefined | Promise<Reply | undefined>;

export interface FakeEngine {
  readonly url: string;
  readonly requests: Recorded[];
  readonly logins: Recorded[];
  /** Forget every issued token (the next API call gets 401). */
  revokeTokens(): void;
  /** Make the next N SSO logins fail with this body. */
  failLogins(n: number, status: number, body: unknown): void;
  /** API requests matching `method path`. */
  calls(method: string, path: string | RegExp): Recorded[];
  close(): Promise<void>;
}

export interface FakeEngineOptions {
  readonly route: Route;
  readonly user?: string;
  readonly password?: string;
  readonly tls?: { readonly cert: string; readonly key: string };
  /** When set, answer API calls with 401 even for valid tokens this many times. */
  readonly reject401?: number;
}

const API = "/ovirt-engine/api";

export async function startFakeEngine(o: FakeEngineOptions): Promise<FakeEngine> {
  const requests: Recorded[] = [];
  const logins: Recorded[] = [];
  const valid = new Set<string>();
  let issued = 0;
  let loginFailures: { n: number; status: number; body: unknown } = { n: 0, status: 400, body: {} };
  let reject401 = o.reject401 ?? 0;

  const send = (res: ServerResponse, r: Reply): void => {
    const headers: Record<string, string> = { ...(r.headers ?? {}) };
    let body = "";
    if (r.json !== undefined) {
      body = JSON.stringify(r.json);
      headers["content-type"] ??= "application/json";
    } else if (r.text !== undefined) {
      body = r.text;
      headers["content-type"] ??= "text/plain";
    }
    res.writeHead(r.status, headers);
    res.end(body);
  };

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", "http://x");
    let json: unknown;
    try {
      json = body ? JSON.parse(body) : undefined;
    } catch {
      json = undefined;
    }
    const isApi = url.pathname === API || url.pathname.startsWith(`${API}/`);
    const rec: Recorded = {
      method: req.method ?? "GET",
      path: isApi ? url.pathname.slice(API.length) : url.pathname,
      query: url.searchParams,
      headers: req.headers,
      body,
      json,
    };
    if (url.pathname === "/ovirt-engine/sso/oauth/token") {
      logins.push(rec);
      if (req.headers.accept !== "application/json") {
        return send(res, { status: 400, json: { error: "invalid_request", error_description: "Missing parameter: 'Accept Header'" } });
      }
      if (loginFailures.n > 0) {
        loginFailures.n--;
        return send(res, { status: loginFailures.status, json: loginFailures.body });
      }
      const form = new URLSearchParams(body);
      if (form.get("username") !== (o.user ?? "admin@internal") || form.get("password") !== (o.password ?? "secret-pw")) {
        return send(res, {
          status: 400,
          json: {
            error_code: "access_denied",
            error: `Cannot authenticate user '${form.get("username")}': Unable to log in. Verify your login information or contact the system administrator..`,
          },
        });
      }
      const token = `tok-${++issued}-aaaaaaaaaaaa`;
      valid.add(token);
      return send(res, {
        status: 200,
        json: { access_token: token, token_type: "bearer", scope: "ovirt-app-api", exp: "9223372036854775807" },
      });
    }
    if (isApi) {
      requests.push(rec);
      const auth = req.headers.authorization ?? "";
      const token = auth.startsWith("Bearer ") ? auth.slice(7) : "";
      if (!valid.has(token) || reject401 > 0) {
        if (valid.has(token)) reject401--;
        return send(res, {
          status: 401,
          text: "<html><body>Unauthorized</body></html>",
          headers: { "content-type": "text/html", "www-authenticate": 'Basic realm="RESTAPI"' },
        });
      }
    }
    const reply = await o.route(rec);
    send(res, reply ?? { status: 404 });
  };

  const server = o.tls
    ? createHttps({ cert: o.tls.cert, key: o.tls.key }, (q, s) => void handler(q, s))
    : createHttp((q, s) => void handler(q, s));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${o.tls ? "https" : "http"}://127.0.0.1:${port}`,
    requests,
    logins,
    revokeTokens: () => valid.clear(),
    failLogins: (n, status, body) => {
      loginFailures = { n, status, body };
    },
    calls: (method, path) =>
      requests.filter((r) => r.method === method && (typeof path === "string" ? r.path === path : path.test(r.path))),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
