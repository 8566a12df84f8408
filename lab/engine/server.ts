import type { IncomingMessage, ServerResponse } from "node:http";
import { sendUnauthorized, type Sessions } from "./auth.ts";
import type { Engine } from "./engine.ts";
import { HttpFault, NotFound, readBody, sendJson, sendNotFound, sendText, type Ctx } from "./http.ts";
import { handlePkiResource } from "./pki.ts";
import type { Router } from "./router.ts";
import { handleSsoLogout, handleSsoToken } from "./sso.ts";
import type { LabPki } from "../ca.ts";

/** Control API handler (lab/control-http.ts), mounted under /ferry-lab/. */
export type ControlHandler = (req: IncomingMessage, res: ServerResponse, url: URL, user: string) => Promise<void>;

export interface RequestHandlerDeps {
  engine: Engine;
  router: Router;
  sessions: Sessions;
  pki: () => LabPki;
  control?: ControlHandler;
  /** Log of unexpected errors (the engine answers 500 for them). */
  onError?: (err: unknown) => void;
}

const API_PREFIX = "/ovirt-engine/api";

/** Correlation-Id: invalid characters stripped, cut to 36 chars (§1.1). */
function correlationId(req: IncomingMessage, url: URL): string | undefined {
  const raw = (req.headers["correlation-id"] as string | undefined) ?? url.searchParams.get("correlation_id") ?? undefined;
  if (!raw) return undefined;
  const cleaned = raw.replace(/[^A-Za-z0-9_-]/g, "").slice(0, 36);
  return cleaned || undefined;
}

/** The TLS listener's request handler: PKI, SSO, the API, and the control API. */
export function createRequestHandler(d: RequestHandlerDeps) {
  const { engine: e, router, sessions } = d;
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      const url = new URL(req.url ?? "/", "https://lab.invalid");
      const path = url.pathname;
      if (path === "/ovirt-engine/services/pki-resource") return handlePkiResource(res, url, d.pki);
      // Injected 500/503 answers (control API: httpErrors) hit the engine's own paths, not the control API.
      if (path.startsWith("/ovirt-engine/")) {
        const rule = e.faults.httpErrors.find((f) => f.remaining > 0 && f.path.test(path));
        if (rule) {
          rule.remaining--;
          e.faults.httpErrors = e.faults.httpErrors.filter((f) => f.remaining > 0);
          const text = rule.status === 503 ? "Service Unavailable" : "Internal Server Error";
          return sendText(res, rule.status, `<html><body><h1>${rule.status} ${text}</h1></body></html>`, {
            "Content-Type": "text/html;charset=utf-8",
          });
        }
      }
      if (path === "/ovirt-engine/sso/oauth/token") return await handleSsoToken(req, res, url, sessions);
      if (path === "/ovirt-engine/services/sso-logout") return await handleSsoLogout(req, res, url, sessions);
      if (path === "/ferry-lab" || path.startsWith("/ferry-lab/")) {
        const user = sessions.authenticate(req, res);
        if (!user) return sendUnauthorized(res);
        if (!d.control) return sendNotFound(res);
        return await d.control(req, res, url, user);
      }
      if (path === API_PREFIX || path.startsWith(`${API_PREFIX}/`)) return await handleApi(req, res, url);
      return sendNotFound(res);
    } catch (err) {
      d.onError?.(err);
      if (!res.headersSent) sendJson(res, 500, { reason: "Operation Failed", detail: "[Internal Engine Error]" });
      else res.destroy();
    }
  };

  async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const user = sessions.authenticate(req, res);
    if (!user) return sendUnauthorized(res);
    let rest = url.pathname.slice(API_PREFIX.length);
    const version = req.headers.version;
    const pathVersion = /^\/v(\d+)(?=\/|$)/.exec(rest);
    if (pathVersion) rest = rest.slice(pathVersion[0].length);
    const wanted = pathVersion?.[1] ?? (typeof version === "string" ? version.trim() : undefined);
    if (wanted !== undefined && wanted !== "4") {
      return sendJson(res, 400, { reason: "Operation Failed", detail: `[Version "${wanted}" isn't supported]` });
    }
    const accept = String(req.headers.accept ?? "");
    if (!/application\/json/i.test(accept)) {
      // The real default is XML; the lab speaks JSON only, so say so instead of guessing.
      return sendText(res, 406, "The lab engine answers only Accept: application/json\n");
    }
    // Matrix parameters on the last segment (`/vms;max=10`) and the All-Content/Filter headers.
    const query = new URLSearchParams(url.search);
    const segments = rest.split("/");
    const last = segments[segments.length - 1] ?? "";
    if (last.includes(";")) {
      const [seg, ...matrix] = last.split(";");
      segments[segments.length - 1] = seg!;
      for (const m of matrix) {
        const [k, v] = m.split("=");
        if (k && !query.has(k)) query.set(k, decodeURIComponent(v ?? ""));
      }
    }
    if (req.headers["all-content"] && !query.has("all_content")) query.set("all_content", String(req.headers["all-content"]));
    if (req.headers.filter && !query.has("filter")) query.set("filter", String(req.headers.filter));
    const path = segments.join("/") || "/";
    const method = req.method ?? "GET";
    const match = router.match(method, path);
    if (match === undefined) return sendNotFound(res);
    if (match === "method") {
      res.writeHead(405, { "Content-Length": 0 });
      res.end();
      return;
    }
    let body: unknown = undefined;
    if (method === "POST" || method === "PUT") {
      const raw = await readBody(req);
      if (raw.length) {
        try {
          body = JSON.parse(raw.toString("utf8"));
        } catch {
          return sendJson(res, 400, { reason: "Operation Failed", detail: "[Invalid JSON in the request body]" });
        }
      } else {
        body = {};
      }
    }
    const ctx: Ctx = { req, method, path, params: match.params, query, body, correlationId: correlationId(req, url), user };
    try {
      const reply = await match.handler(ctx);
      sendJson(res, reply.status, reply.body, reply.headers);
    } catch (err) {
      if (err instanceof NotFound) return sendNotFound(res);
      if (err instanceof HttpFault) return sendJson(res, err.status, { reason: err.reason, detail: err.detail });
      throw err;
    }
  }
}

/** The plain-HTTP listener: only pki-resource (how clients bootstrap trust); everything else 404. */
export function createPlainHandler(pki: () => LabPki) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? "/", "http://lab.invalid");
    if (url.pathname === "/ovirt-engine/services/pki-resource") return handlePkiResource(res, url, pki);
    sendNotFound(res);
  };
}
