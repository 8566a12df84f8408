/**
 * `ferry doctor` against real things: a real nats-server (test/harness), one without JetStream,
 * https "engines" with their own CAs made by openssl, a real store dir, real qemu tools; tools
 * are hidden by handing the command a PATH without them.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer, type Server } from "node:https";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import doctorCommand from "../cli/commands/doctor.ts";
import { checkNatsServerBinary, checkNode, describeEngineError } from "../config/doctor.ts";
import type { ResolvedEngine } from "../config/load.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { runCommand } from "./config-cli-io.ts";

let dir: string;
let nats: NatsServer;
let plainNats: { url: string; stop(): Promise<void> };
let caA: { caFile: string; key: string; cert: string };
let caB: { caFile: string; key: string; cert: string };
const servers: Server[] = [];

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: "ignore" });
}

/** A CA and a server certificate for IP 127.0.0.1 signed by it. */
function makeCa(name: string): { caFile: string; key: string; cert: string } {
  const d = path.join(dir, name);
  mkdirSync(d);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", `/CN=${name} test CA`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d);
  openssl(["req", ...ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"], d);
  writeFileSync(path.join(d, "ext.cnf"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  openssl(["x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem",
    "-days", "2", "-extfile", "ext.cnf"], d);
  return { caFile: path.join(d, "ca.pem"), key: readFileSync(path.join(d, "srv.key"), "utf8"), cert: readFileSync(path.join(d, "srv.pem"), "utf8") };
}

/**
 * An https server that answers like an engine's API without credentials (401 at /ovirt-engine/api)
 * and like its SSO: password "pw" gets a token, anything else access_denied (HTTP 400, as oVirt).
 */
async function fakeEngine(tls: { key: string; cert: string }): Promise<string> {
  const server = createHttpsServer(tls, (req, res) => {
    if (req.method === "POST" && req.url === "/ovirt-engine/sso/oauth/token") {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        const ok = new URLSearchParams(body).get("password") === "pw";
        res.writeHead(ok ? 200 : 400, { "content-type": "application/json" });
        res.end(JSON.stringify(ok ? { access_token: "t0k", token_type: "bearer" } : { error_code: "access_denied", error: "Cannot authenticate user" }));
      });
    } else if (req.url === "/ovirt-engine/api") {
      res.writeHead(401, { "www-authenticate": 'Basic realm="RESTAPI"', "content-type": "text/html" });
      res.end("<html><body>Unauthorized</body></html>");
    } else {
      res.writeHead(404).end();
    }
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  if (!addr || typeof addr === "string") throw new Error("no address");
  return `https://127.0.0.1:${addr.port}`;
}

async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** nats-server without JetStream (the harness always enables it), on a port it picks itself. */
async function startPlainNats(): Promise<{ url: string; stop(): Promise<void> }> {
  const child: ChildProcess = spawn("nats-server", ["-a", "127.0.0.1", "-p", "-1"], { stdio: ["ignore", "ignore", "pipe"] });
  const port = await new Promise<number>((resolve, reject) => {
    let log = "";
    const timer = setTimeout(() => reject(new Error(`nats-server not ready: ${log}`)), 15_000);
    child.stderr!.on("data", (c: Buffer) => {
      log += c.toString();
      const m = /Listening for client connections on [^\s]+:(\d+)/.exec(log);
      if (m && log.includes("Server is ready")) {
        clearTimeout(timer);
        child.stderr!.resume();
        resolve(Number(m[1]));
      }
    });
    child.once("exit", (code) => reject(new Error(`nats-server exited ${code}: ${log}`)));
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

function writeConfig(name: string, doc: unknown): string {
  const file = path.join(dir, name);
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

const env = () => ({ PATH: process.env.PATH, FERRY_PRD_PASSWORD: "pw", FERRY_DR_PASSWORD: "pw" });

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "ferry-doctor-"));
  caA = makeCa("a");
  caB = makeCa("b");
  [nats, plainNats] = await Promise.all([startNatsServer(), startPlainNats()]);
});

afterAll(async () => {
  await Promise.all([nats?.stop(), plainNats?.stop(), ...servers.map((s) => new Promise((r) => s.close(r)))]);
  rmSync(dir, { recursive: true, force: true });
});

describe("ferry doctor", () => {
  it("doctor - an unreachable NATS and a missing store are explained in plain words, with what to do, and exit 3", async () => {
    const port = await freePort();
    const file = writeConfig("down.json", { nats: { servers: [`nats://127.0.0.1:${port}`] }, store: { path: "missing-store" } });
    const r = await runCommand(doctorCommand, ["--config", file, "--timeout", "3"], { cwd: dir, env: env() });
    expect(r.code).toBe(3);
    expect(r.stdout).toContain(`FAIL  NATS at nats://127.0.0.1:${port} is not reachable (connection refused)\n`);
    expect(r.stdout).toContain("      -> start nats-server (systemctl start nats-server, or nats-server -c infra/nats/single.conf), or fix nats.servers\n");
    expect(r.stdout).toContain(`FAIL  store ${path.join(dir, "missing-store")} does not exist\n`);
    expect(r.stdout).toContain(`      -> create it: mkdir -p ${path.join(dir, "missing-store")} && chmod 700`);
    expect(r.stdout).toMatch(/^OK {4}Node\.js v\d+/m);
    expect(r.stdout).toMatch(/^OK {4}config .*down\.json is valid \(0 engines, 0 VMs\)$/m);
    expect(r.stdout.trimEnd().split("\n").at(-1)).toBe("2 checks failed: nats, store.");
    // The store hint, run as printed (the shell part before the note), makes the store check pass.
    const mk = /-> create it: (mkdir -p \S+ && chmod 700 \S+) \(as the user that runs Ferry\), or fix store\.path$/m.exec(r.stdout);
    expect(mk, r.stdout).not.toBeNull();
    execFileSync("bash", ["-c", mk![1]!], { cwd: dir, stdio: "ignore" });
    const fixed = await runCommand(doctorCommand, ["--config", file, "--check", "store"], { cwd: dir, env: env() });
    expect(fixed.stdout).toMatch(new RegExp(`^OK {4}store ${path.join(dir, "missing-store")} is writable`, "m"));
    expect(fixed.code).toBe(0);
  });

  it("doctor - every check passes with a real nats-server, a writable store and an engine that answers 401 with its CA", async () => {
    const engine = await fakeEngine(caA);
    mkdirSync(path.join(dir, "store-ok"));
    const file = writeConfig("ok.json", {
      nats: { servers: [nats.url] },
      store: { path: "store-ok" },
      engines: { prd: { url: `${engine}/ovirt-engine/api`, passwordEnv: "FERRY_PRD_PASSWORD", caFile: caA.caFile } },
    });
    const r = await runCommand(doctorCommand, ["--config", file, "--timeout", "5"], { cwd: dir, env: env() });
    expect(r.stdout).not.toMatch(/^FAIL/m);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^OK {4}NATS at ${nats.url} is reachable \\(nats-server 2\\.\\d+\\.\\d+\\), JetStream is enabled \\(\\d+ streams, \\d+ consumers\\)$`, "m"));
    expect(r.stdout).toMatch(/^OK {4}nats-server 2\.\d+\.\d+$/m);
    expect(r.stdout).toMatch(/^OK {4}qemu-img \d+\.\d+/m);
    expect(r.stdout).toMatch(/^OK {4}qemu-nbd \d+\.\d+/m);
    expect(r.stdout).toContain(`OK    engine prd (${engine}) is reachable and admin@internal logged in, TLS verified with ca.pem\n`);
    expect(r.stdout).toMatch(new RegExp(`^OK {4}store ${path.join(dir, "store-ok")} is writable, [\\d.]+ GiB free of [\\d.]+ GiB$`, "m"));
    expect(r.stdout).toContain("Ready: every check passed.");
  });

  it("doctor - an engine certificate from another CA or without caFile is 'not trusted', with ferry cert fetch as the fix", async () => {
    const engine = await fakeEngine(caA);
    mkdirSync(path.join(dir, "store-tls"));
    const file = writeConfig("tls.json", {
      nats: { servers: [nats.url] },
      store: { path: "store-tls" },
      engines: {
        prd: { url: engine, passwordEnv: "FERRY_PRD_PASSWORD", caFile: caB.caFile },
        dr: { url: engine, passwordEnv: "FERRY_DR_PASSWORD" },
        lab: { url: engine, password: "pw", insecure: true },
      },
    });
    const r = await runCommand(doctorCommand, ["--config", file, "--check", "engines", "--json"], { cwd: dir, env: env() });
    expect(r.code).toBe(3);
    const report = JSON.parse(r.stdout) as { ok: boolean; checks: { name: string; status: string; detail: string; fix?: string }[] };
    const byName = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    expect(byName["engine:prd"]).toEqual({
      name: "engine:prd",
      status: "fail",
      detail: `engine prd (${engine}): certificate not trusted: it is not signed by the CA in ${caB.caFile} (the engine CA may have changed)`,
      // This engine hands out no CA (pki-resource 404): the hint says where to put it and how to check again.
      fix: `the engine did not hand out its CA (pki-resource): copy /etc/pki/ovirt-engine/ca.pem from the engine to ${caB.caFile}, then check again: ferry doctor --check engines --config ${file}`,
    });
    expect(byName["engine:dr"]).toMatchObject({
      status: "fail",
      detail: `engine dr (${engine}): certificate not trusted: no CA file is set and the system does not trust the engine CA`,
      fix: `the engine did not hand out its CA (pki-resource): copy /etc/pki/ovirt-engine/ca.pem from the engine to ${path.join(dir, "certs", "dr-ca.pem")}, then check again: ferry doctor --check engines --config ${file}`,
    });
    expect(byName["engine:lab"]).toMatchObject({ status: "warn", detail: expect.stringContaining("TLS NOT verified (insecure: true)") });
    // --check engines: once the config loads, only the engine checks run.
    expect(report.checks.map((c) => c.name).sort()).toEqual(["engine:dr", "engine:lab", "engine:prd"]);
  });

  it("doctor - NATS without JetStream is explained; a missing caFile names the file", async () => {
    mkdirSync(path.join(dir, "store-js"));
    const file = writeConfig("nojs.json", {
      nats: { servers: [plainNats.url] },
      store: { path: "store-js" },
      engines: { prd: { url: "https://127.0.0.1:9", passwordEnv: "FERRY_PRD_PASSWORD", caFile: "certs/none.pem" } },
    });
    const r = await runCommand(doctorCommand, ["--config", file, "--check", "nats,engines,store"], { cwd: dir, env: env() });
    expect(r.code).toBe(3);
    expect(r.stdout).toContain(`FAIL  NATS at ${plainNats.url} is reachable but JetStream is not enabled\n`);
    expect(r.stdout).toContain("      -> start nats-server with -js (or a `jetstream {}` block, see infra/nats/single.conf)\n");
    expect(r.stdout).toContain(`FAIL  engine prd: caFile ${path.join(dir, "certs/none.pem")} cannot be read\n`);
    expect(r.stdout).toMatch(/^OK {4}store /m);
  });

  it("doctor - missing tools: qemu-img/qemu-nbd fail with the apt hint, nbdkit only warns, nats-server fails for a local NATS", async () => {
    const bin = path.join(dir, "empty-bin");
    mkdirSync(bin);
    const r = await runCommand(doctorCommand, ["--config", "missing.json", "--check", "qemu,nbdkit,nats-server"], {
      cwd: dir,
      env: { PATH: bin },
    });
    expect(r.code).toBe(3);
    expect(r.stdout).toContain("FAIL  qemu-img is not installed\n      -> apt-get install qemu-utils, or run `bash infra/setup.sh` as root (it installs what is missing)\n");
    expect(r.stdout).toContain("FAIL  qemu-nbd is not installed\n");
    expect(r.stdout).toContain("WARN  nbdkit is not installed (optional: the tests and the lab use it)\n");
    expect(r.stdout).toContain("FAIL  nats-server is not installed\n      -> the config uses a NATS server on this machine");
    expect(r.stdout.trimEnd().split("\n").at(-1)).toBe("3 checks failed: nats-server, qemu-img, qemu-nbd.");
    // Remote NATS: a missing local binary is only a warning.
    const remote = await checkNatsServerBinary({ env: { PATH: bin }, cwd: dir }, ["nats://nats-1.example.com:4222"]);
    expect(remote.status).toBe("warn");
    expect(remote.detail).toBe("nats-server is not installed (not needed here: NATS runs at nats://nats-1.example.com:4222)");
    // An old nats-server found on PATH is judged by its version.
    const fake = path.join(dir, "old-bin");
    mkdirSync(fake);
    writeFileSync(path.join(fake, "nats-server"), "#!/bin/sh\necho 'nats-server: v2.9.11'\n", { mode: 0o755 });
    const old = await checkNatsServerBinary({ env: { PATH: fake }, cwd: dir }, ["nats://127.0.0.1:4222"]);
    expect(old).toMatchObject({ status: "warn", detail: "nats-server 2.9.11 works, 2.10 or newer is recommended" });
    symlinkSync(execFileSync("bash", ["-c", "command -v nats-server"], { encoding: "utf8" }).trim(), path.join(bin, "nats-server"));
    expect((await checkNatsServerBinary({ env: { PATH: bin }, cwd: dir }, ["nats://127.0.0.1:4222"])).status).toBe("ok");
  });

  it("doctor - a missing or invalid config is a FAIL that says what to do, and the store check is skipped", async () => {
    const missing = await runCommand(doctorCommand, ["--config", "nope.json", "--check", "config,store"], { cwd: dir, env: env() });
    expect(missing.code).toBe(3);
    expect(missing.stdout).toContain(
      `FAIL  config ${path.join(dir, "nope.json")} (from --config) does not exist. The engine and store checks need a valid config and were skipped\n      -> create it, or run ferry config import variables.json\n`,
    );
    const bad = writeConfig("bad.json", { vms: { a: { engine: "zz" } }, store: { path: 5 } });
    const invalid = await runCommand(doctorCommand, ["--config", bad, "--check", "config"], { cwd: dir, env: env() });
    expect(invalid.code).toBe(3);
    expect(invalid.stdout).toContain(`FAIL  config ${bad} is not valid: store.path: must be a string; vms.a.engine: engine "zz" is not defined under engines`);
  });

  it("doctor - Node below 24 fails; --check limits the checks; bad options exit 2", async () => {
    expect(checkNode("v20.11.1")).toMatchObject({ status: "fail", detail: "Node.js v20.11.1 is too old (Ferry needs 24 or newer)" });
    expect(checkNode("v24.0.0").status).toBe("ok");
    const r = await runCommand(doctorCommand, ["--check", "node", "--json"], { cwd: dir, env: env() });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, checks: [{ name: "node", status: "ok", detail: `Node.js ${process.version}` }] });
    const bad = await runCommand(doctorCommand, ["--check", "node,coffee"], { cwd: dir, env: env() });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("unknown check coffee");
    expect((await runCommand(doctorCommand, ["--timeout", "soon"], { cwd: dir, env: env() })).code).toBe(2);
    expect((await runCommand(doctorCommand, ["--frob"], { cwd: dir, env: env() })).code).toBe(2);
  });

  it("doctor - TLS and network error codes map to plain explanations", () => {
    const engine = { url: "https://engine.example.com", caFile: "/etc/ferry/certs/prd.pem" } as ResolvedEngine;
    const why = (err: unknown) => describeEngineError("prd", engine, err).detail;
    expect(why(Object.assign(new Error("x"), { code: "CERT_HAS_EXPIRED" }))).toBe("the engine's certificate has expired");
    expect(why({ cause: { code: "ERR_TLS_CERT_ALTNAME_INVALID" } })).toBe("the certificate is not issued for engine.example.com");
    expect(why({ code: "UND_ERR_CONNECT_TIMEOUT" })).toBe("no answer from engine.example.com in time");
    expect(why({ cause: { code: "ENOTFOUND" } })).toBe("host name engine.example.com not found");
    expect(why({ cause: { code: "CERT_NOT_YET_VALID" } })).toBe("the engine's certificate is not valid yet");
    expect(why(new Error("boom password=hunter2"))).toBe("request failed: boom password=***");
  });
});
