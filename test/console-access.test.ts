/**
 * The console's doors, against a real nats-server (Ferry's streams provisioned), a lab engine
 * (its SSO) and real TLS: who gets in (local users with scrypt hashes, engine SSO users), what a
 * request needs (session cookie, same origin, CSRF token), that plain HTTP stays on loopback,
 * HTTPS cookies are Secure, bad input changes nothing, and what the bus says is shown escaped.
 * Also `ferry console adduser` as a process, reading the password from stdin.
 */
import { spawn, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { Agent, fetch, type Response } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats, provisionInfra } from "../adapters/nats/mod.ts";
import { ActionInputError, createActions } from "../console/actions.ts";
import { createBusFeed } from "../console/bus-feed.ts";
import { checkListen, ConsoleSetupError, startConsole, type ConsoleOptions, type RunningConsole } from "../console/start.ts";
import { createAuthenticator, putUser, readUsers, verifyPassword } from "../console/users.ts";
import { escapeHtml, html } from "../console/html.ts";
import { startLab } from "../lab/mod.ts";
import { makeCertSet, type CertSet } from "./cert-pki.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";

const FERRY = fileURLToPath(new URL("../cli/ferry.mjs", import.meta.url));
let dir: string;
let nats: NatsServer;
let nc: NatsConnection;
let lab: Awaited<ReturnType<typeof startLab>>;
let certs: CertSet;
let usersFile: string;
let auditFile: string;
let plain: RunningConsole;
const quiet = { info() {}, warn() {}, error() {} };

function options(o: Partial<ConsoleOptions> = {}): ConsoleOptions {
  const e = lab.engines.prd!;
  return {
    nc, listen: "127.0.0.1:0", usersFile, auditFile, sessionMinutes: 30, ssoEngine: "prd",
    policies: { web01: { enabled: true, schedule: { days: "1111111", time: "02:00" } } }, timeZone: "UTC", storeRoot: join(dir, "store"),
    engines: { prd: { url: e.url, user: e.user, password: e.password, caPem: e.caPem } },
    restore: { nameSuffix: "_restored", replicaSuffix: "_dr", start: false, replaceExisting: false, bootTimeoutMs: 60_000 },
    replicates: () => false, engineOf: () => undefined, caFiles: { prd: join(dir, "prd-ca.pem") }, warnDays: 30, log: quiet, ...o,
  };
}

function cookiesOf(r: Response): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of r.headers.getSetCookie()) {
    const [pair] = c.split(";");
    const eq = pair!.indexOf("=");
    out[pair!.slice(0, eq)] = pair!.slice(eq + 1);
  }
  return out;
}

/** Log in like a browser: the form (its token and cookie), then the POST from the console's own origin. */
async function login(base: string, user: string, password: string, o: { dispatcher?: Agent; origin?: string } = {}) {
  const form = await fetch(`${base}/login`, { dispatcher: o.dispatcher });
  const token = /name="_login" value="([^"]+)"/.exec(await form.text())![1]!;
  const r = await fetch(`${base}/login`, {
    method: "POST", redirect: "manual", dispatcher: o.dispatcher,
    headers: { "content-type": "application/x-www-form-urlencoded", origin: o.origin ?? base, cookie: `ferry_login=${cookiesOf(form).ferry_login}` },
    body: new URLSearchParams({ _login: token, user, password, next: "/" }).toString(),
  });
  return { status: r.status, setCookies: r.headers.getSetCookie(), session: cookiesOf(r).ferry_session, body: r.status === 303 ? "" : await r.text() };
}

async function audit(): Promise<Record<string, unknown>[]> {
  const text = await readFile(auditFile, "utf8").catch(() => "");
  return text.trim() ? text.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>) : [];
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-console-access-"));
  nats = await startNatsServer();
  nc = await connectNats({ servers: nats.url, name: "console-access-test" });
  await provisionInfra(nc, await jetstreamManager(nc), { replicas: 1 });
  lab = await startLab({ dataDir: join(dir, "lab"), engines: ["prd"] });
  certs = await makeCertSet({ days: 10 });
  // The trusted CA of prd expires in 10 days: the overview warns (certs.warnDays 30).
  await writeFile(join(dir, "prd-ca.pem"), certs.caA);
  usersFile = join(dir, "users.json");
  auditFile = join(dir, "audit.jsonl");
  await putUser(usersFile, "olga", "operator", "olga-password-1");
  await putUser(usersFile, "victor", "viewer", "victor-password-1");
  await putUser(usersFile, "admin@internal", "operator", undefined);
  await putUser(usersFile, "tess", "viewer", "tess-password-1");
  plain = await startConsole(options());
}, 120_000);

afterAll(async () => {
  await plain?.close();
  await nc?.close();
  await lab?.stop();
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("console access", () => {
  it("console users - scrypt hashes in a 0600 file; short passwords, bad names and password-less local users are refused and change nothing", async () => {
    const users = await readUsers(usersFile);
    expect(users.olga!.password).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(JSON.stringify(users)).not.toContain("olga-password-1");
    expect(await verifyPassword("olga-password-1", users.olga!.password!)).toBe(true);
    expect(await verifyPassword("olga-password-2", users.olga!.password!)).toBe(false);
    expect(users["admin@internal"]).toEqual({ role: "operator", sso: true });
    expect((await stat(usersFile)).mode & 0o777).toBe(0o600);
    const before = await readFile(usersFile, "utf8");
    await expect(putUser(usersFile, "bob", "operator", "short")).rejects.toThrow(/at least 8 characters/);
    await expect(putUser(usersFile, "bob<x>", "operator", "long-enough-1")).rejects.toThrow(/not a user name/);
    await expect(putUser(usersFile, "bob", "operator", undefined)).rejects.toThrow(/a local user needs a password/);
    await expect(putUser(usersFile, "bob", "admin" as never, "long-enough-1")).rejects.toThrow(/role must be viewer or operator/);
    expect(await readFile(usersFile, "utf8")).toBe(before);
    // An SSO user is never let in by a local check without an engine to ask.
    expect(await createAuthenticator({ usersFile }).authenticate("admin@internal", "anything-at-all")).toBeUndefined();
  });

  it("ferry console adduser - reads the password from stdin (never argv), writes the user, refuses a short one with exit 4", () => {
    const file = join(dir, "cli-users.json");
    const ok = spawnSync(process.execPath, [FERRY, "console", "adduser", "carol", "--role", "viewer", "--users-file", file], { input: "carol-password-9\n", encoding: "utf8", timeout: 60_000 });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`user carol (viewer) written to ${file}`);
    expect(ok.stdout + ok.stderr).not.toContain("carol-password-9");
    const bad = spawnSync(process.execPath, [FERRY, "console", "adduser", "dave", "--role", "operator", "--users-file", file], { input: "short\n", encoding: "utf8", timeout: 60_000 });
    expect(bad.status).toBe(4);
    expect(bad.stderr).toMatch(/at least 8 characters/);
    const noRole = spawnSync(process.execPath, [FERRY, "console", "adduser", "dave", "--users-file", file], { input: "long-enough-1\n", encoding: "utf8", timeout: 60_000 });
    expect(noRole.status).toBe(2);
    return readUsers(file).then((u) => expect(Object.keys(u)).toEqual(["carol"]));
  });

  it("ferry console - the process starts from a config, serves, and stops cleanly on SIGTERM; plain HTTP off loopback is refused with exit 4", async () => {
    const config = join(dir, "ferry-console.json");
    const e = lab.engines.prd!;
    await writeFile(config, JSON.stringify({ engines: { prd: { url: e.url, user: e.user, passwordEnv: "FERRY_PRD_PASSWORD", caFile: e.caFile } }, store: { path: "./store" }, vms: { web01: {} }, console: { usersFile: "./users.json", auditFile: "./audit-process.jsonl" } }));
    const env = { ...process.env, NATS_URL: nats.url, FERRY_PRD_PASSWORD: e.password };
    const refused = spawnSync(process.execPath, [FERRY, "console", "--config", config, "--listen", "0.0.0.0:0"], { env, encoding: "utf8", timeout: 60_000 });
    expect(refused.status).toBe(4);
    expect(refused.stderr).toMatch(/plain HTTP is served on loopback only/);
    const child = spawn(process.execPath, [FERRY, "console", "--config", config, "--listen", "127.0.0.1:0"], { env, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (b) => (err += String(b)));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    try {
      const deadline = Date.now() + 60_000;
      while (!/listening on (http:\/\/\S+)/.test(err) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const url = /listening on (http:\/\/\S+)/.exec(err)?.[1];
      expect(url, err).toBeDefined();
      expect(await (await fetch(`${url}/healthz`)).text()).toBe("ok\n");
      const anon = await fetch(`${url}/`, { redirect: "manual" });
      expect(anon.status).toBe(303);
      expect((await login(url!, "olga", "olga-password-1")).status).toBe(303); // the config's usersFile, relative to the config
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });

  it("console listen - plain HTTP only on loopback; anything else needs TLS", () => {
    expect(checkListen("127.0.0.1:8440", false)).toEqual({ host: "127.0.0.1", port: 8440 });
    expect(checkListen("[::1]:8440", false)).toEqual({ host: "::1", port: 8440 });
    expect(checkListen("localhost:0", false)).toEqual({ host: "localhost", port: 0 });
    expect(() => checkListen("0.0.0.0:8440", false)).toThrow(ConsoleSetupError);
    expect(() => checkListen("10.1.2.3:8440", false)).toThrow(/plain HTTP is served on loopback only/);
    expect(checkListen("0.0.0.0:8440", true)).toEqual({ host: "0.0.0.0", port: 8440 });
    expect(() => checkListen("nohost", false)).toThrow(/not host:port/);
  });

  it("console login - a wrong password is refused and audit-logged (no password in the log); a right one gets an HttpOnly SameSite=Strict session cookie, not Secure over HTTP", async () => {
    const bad = await login(plain.url, "olga", "not-her-password");
    expect(bad.status).toBe(401);
    expect(bad.body).toContain("Unknown user or wrong password.");
    expect(bad.session).toBeUndefined();
    const good = await login(plain.url, "olga", "olga-password-1");
    expect(good.status).toBe(303);
    const cookie = good.setCookies.find((c) => c.startsWith("ferry_session="))!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).not.toMatch(/Secure/);
    expect(good.session).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const lines = await audit();
    expect(lines).toContainEqual(expect.objectContaining({ user: "olga", action: "login", result: "refused" }));
    expect(lines).toContainEqual(expect.objectContaining({ user: "olga", role: "operator", action: "login", result: "ok" }));
    const text = await readFile(auditFile, "utf8");
    expect(text).not.toContain("not-her-password");
    expect(text).not.toContain("olga-password-1");
    expect(text).not.toContain(good.session!);
  });

  it("console login - after 5 failed logins a name is locked for a while: even the right password is refused (429) without being checked", async () => {
    for (let i = 0; i < 5; i++) expect((await login(plain.url, "tess", `guess-${i}-xxxx`)).status).toBe(401);
    const locked = await login(plain.url, "tess", "tess-password-1");
    expect(locked.status).toBe(429);
    expect(locked.body).toMatch(/Too many failed logins for this user; try again in \d+ s/);
    expect(locked.session).toBeUndefined();
    expect(await audit()).toContainEqual(expect.objectContaining({ user: "tess", action: "login", result: "throttled" }));
    // Other names are not affected.
    expect((await login(plain.url, "victor", "victor-password-1")).status).toBe(303);
  });

  it("console login - a login POST from another origin is refused before any password is checked", async () => {
    const before = (await audit()).length;
    const r = await login(plain.url, "olga", "olga-password-1", { origin: "http://evil.example" });
    expect(r.status).toBe(403);
    expect(r.session).toBeUndefined();
    expect((await audit()).length).toBe(before);
  });

  it("console SSO - admin@internal logs in with the engine's password through the lab engine's SSO; a wrong one is refused", async () => {
    expect((await login(plain.url, "admin@internal", `${lab.engines.prd!.password}-wrong`)).status).toBe(401);
    const ok = await login(plain.url, "admin@internal", lab.engines.prd!.password);
    expect(ok.status).toBe(303);
    const page = await fetch(`${plain.url}/`, { headers: { cookie: `ferry_session=${ok.session}` } });
    const text = await page.text();
    expect(text).toContain("admin@internal");
    expect(text).not.toContain(lab.engines.prd!.password);
  });

  it("console requests - no session: pages redirect to the login, POSTs get 401; with a session a POST needs the same origin and the CSRF token, and nothing is published without them", async () => {
    const anon = await fetch(`${plain.url}/vm/web01`, { redirect: "manual" });
    expect(anon.status).toBe(303);
    expect(anon.headers.get("location")).toBe("/login?next=%2Fvm%2Fweb01");
    expect((await fetch(`${plain.url}/vm/web01/backup`, { method: "POST", redirect: "manual", headers: { origin: plain.url } })).status).toBe(401);

    const { session } = await login(plain.url, "olga", "olga-password-1");
    const cookie = `ferry_session=${session}`;
    const confirm = await (await fetch(`${plain.url}/vm/web01/backup?mode=full`, { headers: { cookie } })).text();
    const csrf = /name="_csrf" value="([^"]+)"/.exec(confirm)![1]!;
    const info = async () => (await (await jetstreamManager(nc)).streams.info("FERRY_COMMANDS")).state.messages;
    const commands = await info();
    const post = (headers: Record<string, string>, body: Record<string, string>) =>
      fetch(`${plain.url}/vm/web01/backup`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", cookie, ...headers }, body: new URLSearchParams(body).toString() });
    expect((await post({ origin: "http://evil.example" }, { _csrf: csrf, mode: "full" })).status).toBe(403);
    expect((await post({}, { _csrf: csrf, mode: "full" })).status).toBe(403); // no Origin, no Referer
    expect((await post({ origin: plain.url }, { _csrf: "x".repeat(csrf.length), mode: "full" })).status).toBe(403);
    expect((await post({ origin: plain.url }, { _csrf: csrf, mode: "sideways" })).status).toBe(400);
    expect(await info()).toBe(commands);
    // With everything right the command is published: the same backup.requested the CLI sends.
    const ok = await post({ origin: plain.url }, { _csrf: csrf, mode: "full" });
    expect(ok.status).toBe(303);
    expect(await info()).toBe(commands + 1);
    const id = decodeURIComponent(ok.headers.get("location")!.split("run=")[1]!);
    const msg = await (await jetstreamManager(nc)).streams.getMessage("FERRY_COMMANDS", { last_by_subj: "backup.requested" });
    expect(msg!.json()).toEqual({ id, time: expect.any(String), correlationId: id, vm: "web01", mode: "full" });
    expect(msg!.header.get("Nats-Msg-Id")).toBe(id);
  });

  it("console scrape - without a session every page, the live stream and every action answer a redirect to the login or 401, and nothing an anonymous client can fetch holds a password, a session, a CSRF token or a ticket", async () => {
    // A logged-in operator exists meanwhile: their session and form token must not leak to anyone else.
    const { session } = await login(plain.url, "olga", "olga-password-1");
    const csrf = /name="_csrf" value="([^"]+)"/.exec(await (await fetch(`${plain.url}/vm/web01/backup?mode=full`, { headers: { cookie: `ferry_session=${session}` } })).text())![1]!;
    const secrets = [lab.engines.prd!.password, "olga-password-1", "victor-password-1", "tess-password-1", session!, csrf];
    const seen: string[] = [];
    const pages = ["/", "/vm/web01", "/vm/nosuchvm", "/runs", "/events?vm=web01&kind=all", "/live", "/vm/web01/backup?mode=full", "/vm/web01/verify?point=1", "/vm/web01/restore?point=1", "/vm/web01/restore?point=1&test=1", "/nothing-here"];
    for (const path of pages) {
      const r = await fetch(`${plain.url}${path}`, { redirect: "manual" });
      expect(r.status, path).toBe(303);
      expect(r.headers.get("location"), path).toBe(`/login?next=${encodeURIComponent(path)}`);
      seen.push(await r.text(), JSON.stringify([...r.headers]));
    }
    for (const path of ["/vm/web01/backup", "/vm/web01/verify", "/vm/web01/restore/plan", "/vm/web01/restore", "/logout"]) {
      const r = await fetch(`${plain.url}${path}`, { method: "POST", redirect: "manual", headers: { origin: plain.url, "content-type": "application/x-www-form-urlencoded" }, body: `_csrf=${encodeURIComponent(csrf)}&mode=full&point=1&target=prd` });
      expect(r.status, path).toBe(401);
      seen.push(await r.text(), JSON.stringify([...r.headers]));
    }
    // What is open: the login form, health, the assets.
    for (const path of ["/login", "/healthz", "/assets/console.css", "/assets/live.js"]) {
      const r = await fetch(`${plain.url}${path}`);
      expect(r.status, path).toBe(200);
      seen.push(await r.text(), JSON.stringify([...r.headers]));
    }
    const all = seen.join("\n");
    for (const secret of secrets) expect(all.includes(secret)).toBe(false);
    // No imageio ticket or transfer URL, no engine token of any shape.
    expect(all).not.toMatch(/\/images\/|ticket|access_token|Bearer /i);
  });

  it("console actions - a restore test is restore.requested mode test (no name, no start); bad input is refused before anything is published", async () => {
    const feed = createBusFeed({ nc, sinceMs: 1000 });
    try {
      const o = options();
      const actions = createActions({ nc, feed, storeRoot: o.storeRoot, engines: o.engines, restore: o.restore, engineOf: () => undefined });
      const t = actions.restoreCommand({ vm: "web01", point: "2", target: "prd", name: "ignored", start: true, test: true, networks: "lan=lan-dr\nstorage = iscsi" });
      expect(t).toEqual({ id: t.id, time: expect.any(String), correlationId: t.id, vm: "web01", checkpoint: 2, target: "prd", mode: "test", mappings: { vnicProfiles: { lan: "lan-dr", storage: "iscsi" } } });
      expect(actions.restoreCommand({ vm: "web01", point: "latest", target: "prd", name: "web01-copy", start: true })).toMatchObject({ name: "web01-copy", start: true, target: "prd" });
      expect(() => actions.restoreCommand({ vm: "web01", point: "1", target: "dr" })).toThrow(/engine 'dr' is not in the config/);
      expect(() => actions.restoreCommand({ vm: "web01", point: "1", target: "prd", networks: "no-equals-sign" })).toThrow(ActionInputError);
      expect(() => actions.restoreCommand({ vm: "../etc", point: "1", target: "prd" })).toThrow(/not a valid VM name/);
      await expect(actions.backup("web01", "sideways" as never)).rejects.toThrow(ActionInputError);
      // The preflight names what is missing (no restore point of web01 in this store) and changes nothing.
      const plan = await actions.plan({ vm: "web01", point: "1", target: "prd" });
      expect(plan.ok).toBe(false);
    } finally {
      await feed.stop();
    }
  });

  it("console overview - the bus's words are escaped (a failure message with markup), and a CA expiring within warnDays is a warning", async () => {
    await jetstream(nc).publish("backup.failed", JSON.stringify({ id: "f-1", time: new Date().toISOString(), correlationId: "f-1", vm: "web01", code: "ENGINE_REFUSED", message: "<script>alert('x')</script> & more", step: "backup-requested" }));
    const { session } = await login(plain.url, "victor", "victor-password-1");
    let text = "";
    for (let i = 0; i < 50 && !text.includes("ENGINE_REFUSED"); i++) {
      text = await (await fetch(`${plain.url}/`, { headers: { cookie: `ferry_session=${session}` } })).text();
      if (!text.includes("ENGINE_REFUSED")) await new Promise((r) => setTimeout(r, 200));
    }
    expect(text).toContain("ENGINE_REFUSED");
    expect(text).not.toContain("<script>alert");
    expect(text).toContain(escapeHtml("<script>alert('x')</script> & more"));
    // The warning names the day in the console's zone (the test's config: UTC), computed from the CA itself.
    const end = new X509Certificate(certs.caA).validTo;
    expect(text).toContain(`<b>prd</b>: the trusted CA expires in ${Math.floor((Date.parse(end) - Date.now()) / 86_400_000)} days (${new Date(end).toISOString().slice(0, 16).replace("T", " ")} UTC)`);
    expect(html`<a title="${'"><x'}">${"<b>"}</a>`.text).toBe('<a title="&quot;&gt;&lt;x">&lt;b&gt;</a>');
  });

  it("console HTTPS - with a certificate the console serves TLS, its cookies are Secure and it sends HSTS", async () => {
    await writeFile(join(dir, "console.crt"), certs.serverA.cert);
    await writeFile(join(dir, "console.key"), certs.serverA.key, { mode: 0o600 });
    const tls = await startConsole(options({ tls: { certFile: join(dir, "console.crt"), keyFile: join(dir, "console.key") } }));
    const dispatcher = new Agent({ connect: { ca: certs.caA } });
    try {
      expect(tls.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const r = await login(tls.url, "olga", "olga-password-1", { dispatcher });
      expect(r.status).toBe(303);
      expect(r.setCookies.find((c) => c.startsWith("ferry_session="))).toMatch(/; Secure/);
      const page = await fetch(`${tls.url}/`, { dispatcher, headers: { cookie: `ferry_session=${r.session}` } });
      expect(page.headers.get("strict-transport-security")).toMatch(/max-age=/);
      expect(page.headers.get("content-security-policy")).toMatch(/script-src 'self'/);
    } finally {
      await tls.close();
      await dispatcher.close();
    }
  });
});
