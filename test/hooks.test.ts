/**
 * `ferry hooks serve` as operators run it (the CLI process, a real nats-server): what it answers
 * to bad posts (401, 404, 405, 413, 415, 400 with reasons), that a valid post is stored exactly
 * once even when sent twice, that the sample VDSM hook script (infra/hooks/ferry-vdsm-hook) run
 * with sh and VDSM's environment reaches the bus (also over TLS), that it never blocks (exit 0)
 * when it cannot report, the answers when NATS is gone, a clean stop on SIGTERM, and that the
 * token is never in what the server printed.
 */
import { spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { provisionInfra } from "../adapters/nats/mod.ts";
import { contractFor } from "../contracts/mod.ts";
import { makeCertSet, type CertSet } from "./cert-pki.ts";
import { spawnFerry, type FerryProcess } from "./harness/ferry-process.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { waitFor } from "./harness/wait-for.ts";

const HOOK_SCRIPT = fileURLToPath(new URL("../infra/hooks/ferry-vdsm-hook", import.meta.url));
const TOKEN = "hooks-test-token-4f1c2a9e7b3d";
const VM_ID = "5ad2b4f1-9c31-4a4e-8c57-7d1d4c0b9e01";
// The child must not inherit a token, a NATS URL or a config from the shell that runs the tests.
const CLEAN_ENV = { FERRY_HOOKS_TOKEN: "", NATS_URL: "", FERRY_NATS_URL: "", FERRY_CONFIG: "" };

let server: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
let dir: string;
let hooks: FerryProcess;
let base: string;
let certs: CertSet;

async function writeConfig(name: string, hooksSection: Record<string, unknown>): Promise<string> {
  const file = join(dir, name);
  // An engine whose password is not in this environment: the endpoint needs none and must start anyway.
  await writeFile(file, JSON.stringify({ nats: { servers: [server.url] }, engines: { prd: { url: "https://engine.example.com", passwordEnv: "FERRY_TEST_UNSET_PASSWORD" } }, hooks: hooksSection }));
  return file;
}

async function startHooks(config: string): Promise<{ p: FerryProcess; url: string }> {
  const p = spawnFerry(["hooks", "serve", "--config", config], CLEAN_ENV);
  const line = await p.waitForLog((l) => l.msg === "hooks listening", 60_000);
  return { p, url: String(line.url) };
}

/** POST with fetch; the answer's status, headers and JSON body. */
async function post(path: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, { method: "POST", body, headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}`, ...headers } });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

/** How many messages JetStream holds on `subject`. */
async function stored(subject: string): Promise<number> {
  const stream = subject === "ovirt.event" ? "FERRY_EVENTS" : "FERRY_COMMANDS";
  const info = await jsm.streams.info(stream, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

async function lastOn(subject: string): Promise<Record<string, any>> {
  const m = await jsm.streams.getMessage(subject === "ovirt.event" ? "FERRY_EVENTS" : "FERRY_COMMANDS", { last_by_subj: subject });
  if (!m) throw new Error(`nothing stored on ${subject}`);
  return m.json<Record<string, any>>();
}

/** Run the hook script as VDSM would: installed under <hook>/50_ferry, vmId and _hook_domxml set. */
async function runHook(hook: string, o: { conf: string; vmId?: string; domxml?: string }): Promise<{ code: number | null; stderr: string; ms: number }> {
  const hookDir = join(dir, "vdsm-hooks", hook);
  await mkdir(hookDir, { recursive: true });
  const installed = join(hookDir, "50_ferry");
  await copyFile(HOOK_SCRIPT, installed);
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", FERRY_HOOK_CONF: o.conf };
  if (o.vmId) env.vmId = o.vmId;
  if (o.domxml !== undefined) {
    const file = join(dir, `domxml-${hook}-${Date.now()}`);
    await writeFile(file, o.domxml);
    env._hook_domxml = file;
  }
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn("sh", [installed], { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, stderr, ms: Date.now() - started }));
  });
}

async function hookConf(name: string, vars: Record<string, string>): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, Object.entries(vars).map(([k, v]) => `${k}='${v}'\n`).join(""));
  return file;
}

const domxml = (name: string) => `<domain type='kvm' id='3'>\n  <name>${name}</name>\n  <uuid>${VM_ID}</uuid>\n  <devices><disk><driver name='qemu' type='qcow2'/></disk></devices>\n</domain>\n`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-hooks-"));
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  jsm = await jetstreamManager(nc);
  await provisionInfra(nc, jsm);
  await writeFile(join(dir, "hooks-token"), `${TOKEN}\n`, { mode: 0o600 });
  certs = await makeCertSet();
  await writeFile(join(dir, "tls.crt"), certs.serverA.cert);
  await writeFile(join(dir, "tls.key"), certs.serverA.key, { mode: 0o600 });
  await writeFile(join(dir, "ca.pem"), certs.caA);
  const started = await startHooks(await writeConfig("ferry.json", { listen: "127.0.0.1:0", tokenFile: "hooks-token" }));
  hooks = started.p;
  base = started.url;
});

afterAll(async () => {
  await hooks?.kill("SIGKILL");
  await nc?.close().catch(() => undefined);
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("ferry hooks serve", () => {
  it("health - GET /healthz answers without a token while NATS is connected", async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, nats: "connected" });
  });

  it("401 - no token, a wrong token or another scheme: refused with WWW-Authenticate, nothing published", async () => {
    const before = await stored("backup.requested");
    const none = await fetch(`${base}/v1/backup`, { method: "POST", body: '{"vm":"web01"}', headers: { "content-type": "application/json" } });
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toBe('Bearer realm="ferry-hooks"');
    expect(await none.json()).toEqual({ error: "unauthorized", reason: "send Authorization: Bearer <token>" });
    expect((await post("/v1/backup", '{"vm":"web01"}', { authorization: `Bearer ${TOKEN}x` })).status).toBe(401);
    expect((await post("/v1/backup", '{"vm":"web01"}', { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString("base64")}` })).status).toBe(401);
    expect(await stored("backup.requested")).toBe(before);
  });

  it("404 / 405 / 415 - unknown route, wrong method (with Allow), a body that is not JSON", async () => {
    const missing = await post("/v1/backups", '{"vm":"web01"}');
    expect(missing.status).toBe(404);
    expect(missing.body.routes).toEqual(["/v1/backup", "/v1/restore", "/v1/event", "/healthz"]);
    const get = await fetch(`${base}/v1/backup`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    const form = await post("/v1/backup", "vm=web01", { "content-type": "application/x-www-form-urlencoded" });
    expect(form).toMatchObject({ status: 415, body: { reason: "send Content-Type: application/json" } });
  });

  it("413 - a body over the limit, announced (Content-Length) or streamed (chunked), is refused and not published", async () => {
    const before = await stored("backup.requested");
    const big = JSON.stringify({ vm: "web01", reason: "x".repeat(70 * 1024) });
    const announced = await post("/v1/backup", big);
    expect(announced).toMatchObject({ status: 413, body: { error: "body too large", limit: 65536 } });
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = request(`${base}/v1/backup`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", "transfer-encoding": "chunked" } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      for (let i = 0; i < 70; i++) req.write("x".repeat(1024));
      req.end();
    });
    expect(chunked).toBe(413);
    expect(await stored("backup.requested")).toBe(before);
  });

  it("400 - bad JSON, a missing vm, an unknown kind, a bad Idempotency-Key: readable reasons, nothing published", async () => {
    const before = [await stored("backup.requested"), await stored("ovirt.event")];
    const badJson = await post("/v1/backup", "{vm: web01");
    expect(badJson.status).toBe(400);
    expect(badJson.body.reason).toMatch(/^not valid JSON/);
    expect(await post("/v1/backup", '{"mode":"full"}')).toMatchObject({ status: 400, body: { error: "invalid", subject: "backup.requested", reason: "vm: required", errors: [{ path: "vm", message: "required" }] } });
    const kind = await post("/v1/event", JSON.stringify({ kind: "reboot", vm: { name: "web01" }, description: "x" }));
    expect(kind.status).toBe(400);
    expect(kind.body.reason).toMatch(/^kind: must be one of: "snapshot-restored", /);
    expect((await post("/v1/event", JSON.stringify({ kind: "vm-stopped", description: "x" }))).body.reason).toBe("vm: required");
    expect((await post("/v1/backup", '{"vm":"web01"}', { "idempotency-key": "has spaces in it" })).body.reason).toMatch(/^Idempotency-Key: must be/);
    expect([await stored("backup.requested"), await stored("ovirt.event")]).toEqual(before);
  });

  it("202 - a valid backup post sent twice with one Idempotency-Key is stored once; the answer carries the id", async () => {
    const before = await stored("backup.requested");
    const first = await post("/v1/backup", '{"vm":"web01","mode":"full"}', { "idempotency-key": "hooks-test-1" });
    expect(first).toMatchObject({ status: 202, body: { id: "hook-hooks-test-1", subject: "backup.requested", stream: "FERRY_COMMANDS", duplicate: false } });
    const again = await post("/v1/backup", '{"vm":"web01","mode":"full"}', { "idempotency-key": "hooks-test-1" });
    expect(again).toMatchObject({ status: 202, body: { id: "hook-hooks-test-1", duplicate: true, seq: first.body.seq } });
    expect(await stored("backup.requested")).toBe(before + 1);
    const msg = await lastOn("backup.requested");
    expect(msg).toMatchObject({ id: "hook-hooks-test-1", correlationId: "hook-hooks-test-1", vm: "web01", mode: "full" });
    expect(contractFor("backup.requested")!.validateOutbound(msg).ok).toBe(true);
  });

  it("202 - without a key, the same body twice is one message (content hash); another body is another", async () => {
    const before = await stored("backup.requested");
    const a = await post("/v1/backup", '{"vm":"web02"}');
    const b = await post("/v1/backup", '{ "vm" : "web02" }');
    expect([a.status, b.status, b.body.duplicate, b.body.id]).toEqual([202, 202, true, a.body.id]);
    expect(a.body.id).toMatch(/^hook-[0-9a-f]{32}$/);
    expect((await post("/v1/backup", '{"vm":"web03"}')).body.duplicate).toBe(false);
    expect(await stored("backup.requested")).toBe(before + 2);
  });

  it("202 - a restore post becomes restore.requested", async () => {
    const res = await post("/v1/restore", '{"vm":"web01","checkpoint":3}', { "x-request-id": "restore-req-7" });
    expect(res).toMatchObject({ status: 202, body: { id: "hook-restore-req-7", subject: "restore.requested" } });
    expect(await lastOn("restore.requested")).toMatchObject({ id: "hook-restore-req-7", vm: "web01", checkpoint: 3 });
  });

  it("VDSM hook script - before_vm_migrate_source, after_vm_destroy and after_disk_hotplug reach the bus as ovirt.event from source hook", async () => {
    const conf = await hookConf("vdsm-hook.conf", { FERRY_HOOKS_URL: base, FERRY_ENGINE: "prd", FERRY_HOOKS_TOKEN_FILE: join(dir, "hooks-token") });
    const cases: [string, string][] = [["before_vm_migrate_source", "vm-migrating"], ["after_vm_destroy", "vm-stopped"], ["after_disk_hotplug", "disk-added"]];
    for (const [hook, kind] of cases) {
      const before = await stored("ovirt.event");
      const r = await runHook(hook, { conf, vmId: VM_ID, domxml: domxml("web01") });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`reported ${kind} for VM web01`);
      expect(await stored("ovirt.event")).toBe(before + 1);
      const event = await lastOn("ovirt.event");
      expect(event).toMatchObject({ engine: "prd", source: "hook", kind, vm: { id: VM_ID, name: "web01" } });
      expect(event.engineEvent.description).toMatch(new RegExp(`^${hook} on host `));
      expect(contractFor("ovirt.event")!.validateOutbound(event).ok).toBe(true);
    }
  });

  it("VDSM hook script - over HTTPS with the CA in the conf; a VM name the contract refuses is left out, the id still sent", async () => {
    const tls = await startHooks(await writeConfig("tls.json", { listen: "127.0.0.1:0", tokenFile: "hooks-token", tlsCertFile: "tls.crt", tlsKeyFile: "tls.key" }));
    try {
      expect(tls.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const conf = await hookConf("vdsm-hook-tls.conf", { FERRY_HOOKS_URL: tls.url, FERRY_HOOKS_TOKEN_FILE: join(dir, "hooks-token"), FERRY_HOOKS_CACERT: join(dir, "ca.pem") });
      const before = await stored("ovirt.event");
      const r = await runHook("after_vm_destroy", { conf, vmId: VM_ID, domxml: domxml("web 01 (old)") });
      expect(r.code, r.stderr).toBe(0);
      expect(await stored("ovirt.event")).toBe(before + 1);
      expect((await lastOn("ovirt.event")).vm).toEqual({ id: VM_ID });
      // Without the CA, curl does not trust the server: reported on stderr, exit 0, nothing stored.
      const noCa = await hookConf("vdsm-hook-noca.conf", { FERRY_HOOKS_URL: tls.url, FERRY_HOOKS_TOKEN_FILE: join(dir, "hooks-token") });
      const refused = await runHook("after_vm_destroy", { conf: noCa, vmId: VM_ID, domxml: domxml("web01") });
      expect(refused.code).toBe(0);
      expect(refused.stderr).toMatch(/could not report vm-stopped .*curl: \(60\)/);
      expect(await stored("ovirt.event")).toBe(before + 1);
    } finally {
      await tls.p.kill("SIGTERM");
    }
  });

  it("VDSM hook script - never blocks the VM operation: wrong token, no server, no token file, an unknown hook point all exit 0", async () => {
    const before = await stored("ovirt.event");
    await writeFile(join(dir, "wrong-token"), "not-the-right-token-at-all\n", { mode: 0o600 });
    const wrong = await runHook("after_vm_destroy", { conf: await hookConf("wrong.conf", { FERRY_HOOKS_URL: base, FERRY_HOOKS_TOKEN_FILE: join(dir, "wrong-token") }), vmId: VM_ID, domxml: domxml("web01") });
    expect(wrong.code).toBe(0);
    expect(wrong.stderr).toMatch(/could not report vm-stopped .*401/);
    const down = await runHook("after_vm_destroy", { conf: await hookConf("down.conf", { FERRY_HOOKS_URL: "http://127.0.0.1:9", FERRY_HOOKS_TOKEN_FILE: join(dir, "hooks-token") }), vmId: VM_ID });
    expect(down.code).toBe(0);
    expect(down.stderr).toMatch(/could not report vm-stopped for VM 5ad2b4f1/);
    const noFile = await runHook("after_vm_destroy", { conf: await hookConf("nofile.conf", { FERRY_HOOKS_URL: base, FERRY_HOOKS_TOKEN_FILE: join(dir, "nope") }), vmId: VM_ID });
    expect([noFile.code, noFile.stderr]).toEqual([0, expect.stringContaining("cannot read the token file")]);
    const other = await runHook("before_vm_start", { conf: await hookConf("other.conf", { FERRY_HOOKS_URL: base }), vmId: VM_ID });
    expect([other.code, other.stderr]).toEqual([0, expect.stringContaining("not a hook point it reports")]);
    expect(await stored("ovirt.event")).toBe(before);
  });

  it("CLI - no token configured: exit 3 with what to set; a bad --listen: exit 2; a certificate without its key: exit 4; an invalid config: exit 4 before connecting", async () => {
    const noToken = spawnFerry(["hooks", "serve", "--config", await writeConfig("no-token.json", { listen: "127.0.0.1:0" })], CLEAN_ENV);
    expect((await noToken.exited).code).toBe(3);
    expect(noToken.stderr()).toContain("ferry hooks serve: no token: set $FERRY_HOOKS_TOKEN or hooks.tokenFile in the config");
    expect(noToken.stderr().trim().split("\n")).toHaveLength(1);
    const noTokenFile = spawnFerry(["hooks", "serve", "--config", await writeConfig("no-token-file.json", { listen: "127.0.0.1:0", tokenFile: "no-such-token" })], CLEAN_ENV);
    expect((await noTokenFile.exited).code).toBe(3);
    expect(noTokenFile.stderr()).toContain("no-such-token does not exist");
    const shortToken = spawnFerry(["hooks", "serve", "--config", await writeConfig("short-token.json", { listen: "127.0.0.1:0" })], { ...CLEAN_ENV, FERRY_HOOKS_TOKEN: "short" });
    expect((await shortToken.exited).code).toBe(4);
    expect(shortToken.stderr()).toContain("shorter than 16 characters");
    // The rest of the file is checked too, before NATS: the server in the config is down here.
    const invalidFile = join(dir, "invalid.json");
    await writeFile(invalidFile, JSON.stringify({ nats: { servers: ["nats://127.0.0.1:9"] }, hooks: { listen: "127.0.0.1:0", tokenFile: "hooks-token" }, store: { path: 5 } }));
    const invalid = spawnFerry(["hooks", "serve", "--config", invalidFile], CLEAN_ENV);
    expect((await invalid.exited).code).toBe(4);
    expect(invalid.stderr()).toContain(`${invalidFile} is not a valid Ferry config (1 problem):\n  store.path: must be a string`);
    expect(invalid.stderr()).not.toContain("NATS");
    const badListen = spawnFerry(["hooks", "serve", "--listen", "8441"], CLEAN_ENV);
    expect((await badListen.exited).code).toBe(2);
    expect(badListen.stderr()).toContain("--listen '8441' is not HOST:PORT");
    const halfTls = spawnFerry(["hooks", "serve", "--config", await writeConfig("half-tls.json", { tokenFile: "hooks-token", tlsCertFile: "tls.crt" })], CLEAN_ENV);
    expect((await halfTls.exited).code).toBe(4);
    expect(halfTls.stderr()).toContain("hooks.tlsKeyFile: set both tlsCertFile and tlsKeyFile, or neither");
    // A certificate the config names but that is not there: something needed is missing (3), named.
    const noCert = spawnFerry(["hooks", "serve", "--config", await writeConfig("no-cert.json", { tokenFile: "hooks-token", tlsCertFile: "absent.crt", tlsKeyFile: "tls.key" })], CLEAN_ENV);
    expect((await noCert.exited).code).toBe(3);
    expect(noCert.stderr()).toMatch(/hooks\.tlsCertFile \S*absent\.crt does not exist/);
  });

  it("no stream - on a NATS without Ferry's streams a post gets 503 saying what to start; nothing is acknowledged", async () => {
    await jsm.streams.delete("FERRY_COMMANDS");
    try {
      const res = await post("/v1/backup", '{"vm":"web08"}');
      expect(res).toMatchObject({ status: 503, body: { error: "unavailable", reason: "no JetStream stream stores backup.requested: start Ferry's functions (ferry run all), which create the streams" } });
      expect(res.headers.get("retry-after")).toBe("5");
    } finally {
      await provisionInfra(nc, jsm);
    }
    expect((await post("/v1/backup", '{"vm":"web08"}')).status).toBe(202);
  });

  it("NATS gone - posts get 503 with Retry-After (nothing acknowledged is lost), /healthz says so; SIGTERM stops it with exit 0; the token is in no output", async () => {
    await nc.close();
    await server.stop();
    await waitFor(async () => (await fetch(`${base}/healthz`)).status === 503, { what: "/healthz to report NATS down", timeoutMs: 30_000 });
    const res = await post("/v1/backup", '{"vm":"web09"}', { "idempotency-key": "while-down" });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    expect(res.body).toMatchObject({ error: "unavailable", id: "hook-while-down" });
    const exit = await hooks.kill("SIGTERM");
    expect(exit.code).toBe(0);
    expect(hooks.logs.some((l) => l.msg === "hooks stopped")).toBe(true);
    const accepted = hooks.logs.filter((l) => l.msg === "hook accepted");
    const refused = hooks.logs.filter((l) => l.msg === "hook refused");
    expect(accepted.length).toBeGreaterThanOrEqual(6);
    expect(refused.some((l) => l.status === 401) && refused.some((l) => l.status === 413) && refused.some((l) => l.status === 503)).toBe(true);
    const everything = JSON.stringify(hooks.logs) + hooks.stderr();
    expect(everything).not.toContain(TOKEN);
    expect(everything).not.toContain(TOKEN.slice(0, 12));
  });
});
