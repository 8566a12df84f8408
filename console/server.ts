/**
 * The console's HTTP app (fastify): login and sessions, the pages, the live stream and the
 * actions. Rules enforced here, for every route:
 * - every page but /login, /assets and /healthz needs a session (cookie: random id, HttpOnly,
 *   SameSite=Strict, Secure under HTTPS);
 * - every POST must come from this origin (Origin, else Referer) and carry the session's CSRF
 *   token (login: a double-submit token); only operators act, a viewer's action is refused
 *   (403) and audit-logged;
 * - GETs change nothing; every action is audit-logged with the user;
 * - nothing secret is rendered: pages are built from named fields, every value escaped.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import cookie from "@fastify/cookie";
import formbody from "@fastify/formbody";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Actions, RestoreForm } from "./actions.ts";
import { ActionInputError } from "./actions.ts";
import type { AuditLog } from "./audit.ts";
import type { BusFeed, FeedChange } from "./bus-feed.ts";
import type { ConsoleFacts } from "./facts.ts";
import { timesIn } from "./format.ts";
import { html, type SafeHtml } from "./html.ts";
import { confirmBackupPage, confirmVerifyPage, refusedPage, restoreFormPage, restorePlanPage, verifyResultPage } from "./pages/actions.ts";
import { EVENT_KINDS, eventsPage, type EventKind } from "./pages/events.ts";
import { page, type Nav } from "./pages/layout.ts";
import { loginPage } from "./pages/login.ts";
import { overviewPage } from "./pages/overview.ts";
import { isLive, runCard } from "./pages/run-card.ts";
import { runsPage } from "./pages/runs.ts";
import { vmPage } from "./pages/vm.ts";
import { createLoginThrottle, type LoginThrottle } from "./login-throttle.ts";
import { csrfMatches, type Session, type Sessions } from "./sessions.ts";
import { SsoUnavailableError } from "./sso.ts";
import type { Authenticator } from "./users.ts";

export const SESSION_COOKIE = "ferry_session";
const LOGIN_COOKIE = "ferry_login";
const EVENTS_SHOWN = 300;

export interface ConsoleLog {
  info(o: object, m?: string): void;
  warn(o: object, m?: string): void;
  error(o: object, m?: string): void;
}

export interface ConsoleDeps {
  readonly facts: ConsoleFacts;
  readonly feed: BusFeed;
  readonly actions: Actions;
  readonly auth: Authenticator;
  readonly sessions: Sessions;
  readonly audit: AuditLog;
  /** Served over HTTPS: cookies get Secure. */
  readonly secure: boolean;
  readonly log: ConsoleLog;
  /** Configured VM names (the events filter's choices, besides VMs seen on the bus). */
  readonly vmNames: readonly string[];
  /** The config's timeZone: every page writes its times in it, naming it. */
  readonly timeZone: string;
  readonly clock?: () => Date;
  /** Heartbeat comment interval of /live. */
  readonly heartbeatMs?: number;
  /** Failed-login limits (default: 5 failures of a name in 15 min lock it for a minute). */
  readonly throttle?: LoginThrottle;
}

const ASSETS: Record<string, { file: URL; type: string }> = {
  "console.css": { file: new URL("./assets/console.css", import.meta.url), type: "text/css; charset=utf-8" },
  "live.js": { file: new URL("./assets/live.js", import.meta.url), type: "text/javascript; charset=utf-8" },
};

const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
  "x-frame-options": "DENY",
  "cache-control": "no-store",
};

type Body = Record<string, unknown>;
const field = (body: unknown, name: string): string => {
  const v = (body as Body | undefined)?.[name];
  return typeof v === "string" ? v : Array.isArray(v) && typeof v[0] === "string" ? v[0] : "";
};

/** A local path to go back to after login; anything else is "/". */
function localPath(p: string): string {
  return p.startsWith("/") && !p.startsWith("//") && !p.startsWith("/\\") ? p : "/";
}

declare module "fastify" {
  interface FastifyRequest {
    session?: Session;
  }
}

export async function buildConsoleApp(d: ConsoleDeps, https?: { cert: string; key: string }): Promise<FastifyInstance> {
  const clock = d.clock ?? (() => new Date());
  const times = timesIn(d.timeZone);
  const app = Fastify({ logger: false, forceCloseConnections: true, ...(https ? { https } : {}), trustProxy: false }) as unknown as FastifyInstance;
  await app.register(cookie);
  await app.register(formbody, { bodyLimit: 64 * 1024 });

  const throttle = d.throttle ?? createLoginThrottle();
  const cookieOptions = { path: "/", httpOnly: true, sameSite: "strict" as const, secure: d.secure };
  const send = (reply: FastifyReply, o: { title: string; nav: Nav; body: SafeHtml; session?: Session | undefined; status?: number; live?: boolean }) =>
    reply.code(o.status ?? 200).type("text/html; charset=utf-8").send(page({ title: o.title, nav: o.nav, body: o.body, session: o.session, live: o.live ?? false }));
  const from = (req: FastifyRequest) => req.ip;

  app.addHook("onSend", async (_req, reply, payload) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) if (!reply.hasHeader(k)) reply.header(k, v);
    if (d.secure) reply.header("strict-transport-security", "max-age=31536000");
    return payload;
  });

  // Sessions for everything but the open routes.
  const OPEN = new Set(["/login", "/healthz", "/favicon.ico"]);
  app.addHook("onRequest", async (req, reply) => {
    const path = req.url.split("?")[0]!;
    if (OPEN.has(path) || path.startsWith("/assets/")) return;
    const session = d.sessions.get(req.cookies[SESSION_COOKIE]);
    if (!session) {
      if (req.method === "GET") return reply.redirect(`/login?next=${encodeURIComponent(req.url)}`, 303);
      return reply.code(401).type("text/plain").send("not logged in\n");
    }
    req.session = session;
  });

  // Every POST: same origin, and (when logged in) the session's CSRF token.
  app.addHook("preHandler", async (req, reply) => {
    if (req.method !== "POST") return;
    const origin = req.headers.origin ?? (req.headers.referer ? new URL(req.headers.referer).origin : undefined);
    const own = `${d.secure ? "https" : "http"}://${req.headers.host ?? ""}`;
    if (origin !== own) {
      d.log.warn({ origin, path: req.url }, "console: POST from another origin refused");
      return reply.code(403).type("text/plain").send("refused: this form was not sent from the console's own pages\n");
    }
    if (req.session && !csrfMatches(req.session, field(req.body, "_csrf"))) {
      void d.audit.record({ user: req.session.user, role: req.session.role, action: "csrf", result: "refused", message: `POST ${req.url.split("?")[0]} without a valid CSRF token`, from: from(req) });
      return reply.code(403).type("text/plain").send("refused: the form's security token is missing or stale; reload the page and try again\n");
    }
  });

  app.setErrorHandler(async (err, req, reply) => {
    const s = req.session;
    if (err instanceof ActionInputError) return send(reply, { title: "Refused", nav: "none", session: s, status: 400, body: html`<h1>Refused</h1><p class="flash" role="alert">${err.message}</p><p>Nothing was changed.</p>` });
    d.log.error({ err: { name: (err as Error).name, message: (err as Error).message }, path: req.url.split("?")[0] }, "console: request failed");
    return send(reply, { title: "Error", nav: "none", session: s, status: 500, body: html`<h1>Something went wrong</h1><p class="flash">${(err as Error).name}: ${(err as Error).message.split("\n")[0]}</p>` });
  });

  app.get("/healthz", async (_req, reply) => reply.type("text/plain").send("ok\n"));
  app.get("/favicon.ico", async (_req, reply) => reply.code(204).send());

  app.get<{ Params: { name: string } }>("/assets/:name", async (req, reply) => {
    const a = ASSETS[req.params.name];
    if (!a) return reply.code(404).type("text/plain").send("not found\n");
    return reply.type(a.type).header("cache-control", "no-cache").send(await readFile(a.file, "utf8"));
  });

  // --- Login ------------------------------------------------------------------------------
  // One token per browser while it has one: a second tab (or any GET that lands here) must not
  // invalidate the form already shown.
  const loginForm = (req: FastifyRequest, reply: FastifyReply, o: { user?: string; problem?: string; next?: string; status?: number }) => {
    const had = req.cookies[LOGIN_COOKIE];
    const token = had && /^[A-Za-z0-9_-]{32}$/.test(had) ? had : randomBytes(24).toString("base64url");
    reply.setCookie(LOGIN_COOKIE, token, { ...cookieOptions, maxAge: 3600 });
    return send(reply, { title: "Log in", nav: "none", status: o.status ?? 200, body: loginPage({ token, ...o }) });
  };
  app.get<{ Querystring: { next?: string } }>("/login", async (req, reply) => loginForm(req, reply, { next: localPath(req.query.next ?? "/") }));
  app.post("/login", async (req, reply) => {
    const user = field(req.body, "user");
    const next = localPath(field(req.body, "next") || "/");
    const token = req.cookies[LOGIN_COOKIE];
    if (!token || token !== field(req.body, "_login")) return loginForm(req, reply, { user, next, status: 403, problem: "The login form expired; try again." });
    const wait = throttle.waitSeconds(user);
    if (wait > 0) {
      await d.audit.record({ user: user.slice(0, 130), action: "login", result: "throttled", from: from(req) });
      return loginForm(req, reply, { user, next, status: 429, problem: `Too many failed logins for this user; try again in ${wait} s.` });
    }
    let who;
    try {
      who = await d.auth.authenticate(user, field(req.body, "password"));
    } catch (err) {
      const problem = err instanceof SsoUnavailableError ? err.message : "The user list could not be read; see the console's log.";
      d.log.error({ err: { name: (err as Error).name, message: (err as Error).message } }, "console: login could not be checked");
      return loginForm(req, reply, { user, next, status: 503, problem });
    }
    if (!who) {
      throttle.failed(user);
      await d.audit.record({ user: user.slice(0, 130), action: "login", result: "refused", from: from(req) });
      return loginForm(req, reply, { user, next, status: 401, problem: "Unknown user or wrong password." });
    }
    throttle.succeeded(user);
    const s = d.sessions.create(who);
    await d.audit.record({ user: s.user, role: s.role, action: "login", result: "ok", from: from(req) });
    reply.clearCookie(LOGIN_COOKIE, { path: "/" });
    reply.setCookie(SESSION_COOKIE, s.id, cookieOptions);
    return reply.redirect(next, 303);
  });
  app.post("/logout", async (req, reply) => {
    const s = req.session!;
    d.sessions.destroy(s.id);
    await d.audit.record({ user: s.user, role: s.role, action: "logout", result: "ok", from: from(req) });
    reply.clearCookie(SESSION_COOKIE, { path: "/" });
    return reply.redirect("/login", 303);
  });

  // --- Pages ------------------------------------------------------------------------------
  app.get("/", async (req, reply) => {
    const [facts, runs] = [await d.facts.overview(), d.feed.runs()];
    return send(reply, { title: "Overview", nav: "overview", session: req.session, live: true, body: overviewPage(facts, runs.filter(isLive), runs, clock(), times) });
  });
  app.get<{ Params: { vm: string } }>("/vm/:vm", async (req, reply) => {
    const f = await d.facts.vm(req.params.vm);
    if (!f.status && f.points.length === 0 && f.runs.length === 0) return send(reply, { title: "Unknown VM", nav: "vm", session: req.session, status: 404, body: html`<h1>Unknown VM</h1><p>Ferry knows no VM named <b>${req.params.vm}</b>.</p>` });
    return send(reply, { title: req.params.vm, nav: "vm", session: req.session, body: vmPage(req.params.vm, f, req.session!, clock(), times) });
  });
  app.get("/runs", async (req, reply) => send(reply, { title: "Runs", nav: "runs", session: req.session, live: true, body: runsPage(d.feed.runs(), times) }));
  app.get<{ Querystring: { vm?: string; kind?: string } }>("/events", async (req, reply) => {
    const kind = (req.query.kind && req.query.kind in EVENT_KINDS ? req.query.kind : "all") as EventKind;
    const events = d.feed.events();
    const vms = [...new Set([...d.vmNames, ...events.map((e) => e.vm).filter((v): v is string => !!v)])].sort();
    return send(reply, { title: "Events", nav: "events", session: req.session, body: eventsPage(events, vms, { vm: req.query.vm ?? "", kind }, EVENTS_SHOWN, times) });
  });

  // Server-sent events: every run change, as its rendered card.
  app.get("/live", (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: "keep-alive", "x-content-type-options": "nosniff" });
    const write = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    res.write("retry: 3000\n\n");
    for (const r of d.feed.runs().filter(isLive)) write("run", { key: r.key, html: runCard(r, times).text });
    const off = d.feed.subscribe((c: FeedChange) => {
      if (c.type === "run") write("run", { key: c.run.key, html: runCard(c.run, times).text });
    });
    const beat = setInterval(() => res.write(": ping\n\n"), d.heartbeatMs ?? 15_000);
    req.raw.on("close", () => {
      off();
      clearInterval(beat);
    });
  });

  // --- Actions ------------------------------------------------------------------------------
  /** The operator check of every action; a viewer gets a 403 page and an audit line. */
  const operator = async (req: FastifyRequest, reply: FastifyReply, what: string, vm: string): Promise<Session | undefined> => {
    const s = req.session!;
    if (s.role === "operator") return s;
    await d.audit.record({ user: s.user, role: s.role, action: what, vm, result: "refused", message: "needs the operator role", from: from(req) });
    await send(reply, { title: "Not allowed", nav: "none", session: s, status: 403, body: refusedPage(s, what) });
    return undefined;
  };
  const mode = (v: string): "auto" | "full" => (v === "full" ? "full" : v === "auto" || v === "" ? "auto" : (() => { throw new ActionInputError(`mode must be auto or full, not '${v.slice(0, 20)}'`); })());

  app.get<{ Params: { vm: string }; Querystring: { mode?: string } }>("/vm/:vm/backup", async (req, reply) => {
    const s = await operator(req, reply, "backup", req.params.vm);
    if (s) return send(reply, { title: "Back up", nav: "vm", session: s, body: confirmBackupPage(s, req.params.vm, mode(req.query.mode ?? "")) });
  });
  app.post<{ Params: { vm: string } }>("/vm/:vm/backup", async (req, reply) => {
    const s = await operator(req, reply, "backup", req.params.vm);
    if (!s) return;
    const m = mode(field(req.body, "mode"));
    const sent = await d.actions.backup(req.params.vm, m);
    await d.audit.record({ user: s.user, role: s.role, action: "backup", vm: sent.vm, detail: { mode: m }, result: "published", id: sent.id, from: from(req) });
    return reply.redirect(`/runs?run=${encodeURIComponent(sent.id!)}`, 303);
  });

  app.get<{ Params: { vm: string }; Querystring: { point?: string } }>("/vm/:vm/verify", async (req, reply) => {
    const s = await operator(req, reply, "verify", req.params.vm);
    if (s) return send(reply, { title: "Verify", nav: "vm", session: s, body: confirmVerifyPage(s, req.params.vm, req.query.point ?? "latest") });
  });
  app.post<{ Params: { vm: string } }>("/vm/:vm/verify", async (req, reply) => {
    const s = await operator(req, reply, "verify", req.params.vm);
    if (!s) return;
    const point = field(req.body, "point") || "latest";
    const report = await d.actions.verify(req.params.vm, point);
    await d.audit.record({ user: s.user, role: s.role, action: "verify", vm: req.params.vm, detail: { point: report.point.id, number: report.point.number }, result: report.ok ? "ok" : "failed", from: from(req) });
    return send(reply, { title: "Verified", nav: "vm", session: s, body: verifyResultPage(req.params.vm, report) });
  });

  const restoreForm = (vm: string, body: unknown): RestoreForm => ({
    vm,
    point: field(body, "point") || "latest",
    target: field(body, "target") || (d.actions.targets.includes("dr") ? "dr" : (d.actions.targets[0] ?? "dr")),
    name: field(body, "name"),
    start: field(body, "start") === "1",
    networks: field(body, "networks"),
    storageDomain: field(body, "storageDomain"),
    cluster: field(body, "cluster"),
    test: field(body, "test") === "1",
  });
  app.get<{ Params: { vm: string }; Querystring: Record<string, string> }>("/vm/:vm/restore", async (req, reply) => {
    const s = await operator(req, reply, "restore", req.params.vm);
    if (s) return send(reply, { title: "Restore", nav: "vm", session: s, body: restoreFormPage(s, restoreForm(req.params.vm, req.query), d.actions.targets) });
  });
  app.post<{ Params: { vm: string } }>("/vm/:vm/restore/plan", async (req, reply) => {
    const s = await operator(req, reply, "restore", req.params.vm);
    if (!s) return;
    const f = restoreForm(req.params.vm, req.body);
    let result;
    try {
      result = await d.actions.plan(f);
    } catch (err) {
      if (!(err instanceof ActionInputError)) throw err;
      return send(reply, { title: "Restore", nav: "vm", session: s, status: 400, body: restoreFormPage(s, f, d.actions.targets, err.message) });
    }
    return send(reply, { title: "Restore plan", nav: "vm", session: s, body: restorePlanPage(s, f, result, d.actions.targets, times) });
  });
  app.post<{ Params: { vm: string } }>("/vm/:vm/restore", async (req, reply) => {
    const f = restoreForm(req.params.vm, req.body);
    const what = f.test ? "restore-test" : "restore";
    const s = await operator(req, reply, what, req.params.vm);
    if (!s) return;
    const sent = await d.actions.restore(f);
    await d.audit.record({
      user: s.user, role: s.role, action: what, vm: sent.vm, result: "published", id: sent.id, from: from(req),
      detail: { point: sent.restorePoint ?? sent.checkpoint ?? "latest", target: sent.target, ...(sent.name ? { name: sent.name } : {}), ...(sent.start ? { start: true } : {}), ...(sent.mappings ? { mappings: sent.mappings } : {}) },
    });
    return reply.redirect(`/runs?run=${encodeURIComponent(sent.id!)}`, 303);
  });

  return app;
}
