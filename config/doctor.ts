/**
 * `ferry doctor`: is this machine ready to run Ferry? Each check returns one result in plain
 * words with what to do about a failure. Checks never throw and never print; the command
 * formats. External tools are found through the PATH in `env` (so tests can hide them).
 */
import { randomBytes } from "node:crypto";
import { readFile, rm, stat, statfs, writeFile } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { Agent, request } from "undici";
import { connect, credsAuthenticator, type ConnectionOptions } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { buckets, streams } from "../infra/streams/mod.ts";
import { AuthError, createEngineClient, fetchEngineCa } from "../adapters/ovirt/mod.ts";
import { runningWorkers } from "../functions/runtime/workers.ts";
import { engineCertStatus, type EngineCertStatus } from "../pipeline/cert-status.ts";
import { caPathFor, certEnginesOf } from "../pipeline/trust.ts";
import { natsSettings, serverList } from "../adapters/nats/settings.ts";
import { redactText } from "../adapters/secrets.ts";
import { formatIssue, formatPath } from "./issues.ts";
import { ConfigError, ConfigNotFoundError, loadConfig, type LoadedConfig, type ResolvedEngine } from "./load.ts";
import { locateConfig } from "./locate.ts";

export type CheckStatus = "ok" | "warn" | "fail";

export interface CheckResult {
  /** Stable id: node, nats-server, nats, qemu-img, qemu-nbd, nbdkit, config, engine:<name>, cert:<name>, store. */
  name: string;
  status: CheckStatus;
  /** What was found, in plain words. */
  detail: string;
  /** What to do, for warn and fail. */
  fix?: string;
}

/** Groups selectable with `ferry doctor --check a,b`. */
export const CHECK_GROUPS = ["node", "nats-server", "nats", "qemu", "nbdkit", "config", "engines", "certs", "store", "workers"] as const;
export type CheckGroup = (typeof CHECK_GROUPS)[number];

export interface DoctorOptions {
  /** --config; else FERRY_CONFIG, ./ferry.json, /etc/ferry/ferry.json. */
  configFile?: string;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  signal?: AbortSignal;
  /** Only these groups (default: all). */
  only?: readonly CheckGroup[];
  /** Per network check. Default 5000 ms. */
  timeoutMs?: number;
  /** Node version to judge (default: this process). */
  nodeVersion?: string;
}

/**
 * A `ferry ...` command for a hint, carrying the config file when the doctor was given one with
 * --config, so the hint works pasted as it is (every other way of finding the config is the same
 * for both commands).
 */
function ferryHint(o: Pick<DoctorOptions, "configFile">, args: string): string {
  return `ferry ${args}${o.configFile !== undefined ? ` --config ${o.configFile}` : ""}`;
}

export const MIN_NODE_MAJOR = 24;
const SETUP_HINT = "run `bash infra/setup.sh` as root (it installs what is missing)";
const GIB = 1024 ** 3;

function ok(name: string, detail: string): CheckResult {
  return { name, status: "ok", detail };
}
function warn(name: string, detail: string, fix: string): CheckResult {
  return { name, status: "warn", detail, fix };
}
function fail(name: string, detail: string, fix: string): CheckResult {
  return { name, status: "fail", detail, fix };
}

export function checkNode(version: string): CheckResult {
  const major = Number(/^v?(\d+)/.exec(version)?.[1] ?? 0);
  if (major >= MIN_NODE_MAJOR) return ok("node", `Node.js ${version}`);
  return fail("node", `Node.js ${version} is too old (Ferry needs ${MIN_NODE_MAJOR} or newer)`, SETUP_HINT);
}

/** First line of `<tool> --version`, or undefined when the tool is not on PATH. */
async function toolVersion(
  tool: string,
  o: DoctorOptions,
): Promise<{ found: false } | { found: true; line: string; ok: boolean }> {
  const r = await execa(tool, ["--version"], {
    reject: false,
    timeout: 10_000,
    env: { ...o.env },
    extendEnv: false,
    ...(o.signal ? { cancelSignal: o.signal } : {}),
  });
  if (r.failed && (r.cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT") return { found: false };
  const line = `${r.stdout}\n${r.stderr}`.trim().split("\n")[0] ?? "";
  return { found: true, line, ok: !r.failed };
}

function isLoopbackServer(server: string): boolean {
  const host = server.replace(/^[a-z]+:\/\//, "").replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  return host === "localhost" || host.startsWith("127.") || host === "::1";
}

export async function checkNatsServerBinary(o: DoctorOptions, servers: readonly string[]): Promise<CheckResult> {
  const v = await toolVersion("nats-server", o);
  const local = servers.some(isLoopbackServer);
  if (!v.found) {
    const detail = "nats-server is not installed";
    return local
      ? fail("nats-server", detail, `the config uses a NATS server on this machine: ${SETUP_HINT}`)
      : warn("nats-server", `${detail} (not needed here: NATS runs at ${servers.join(", ")})`, "nothing to do unless NATS should run on this machine");
  }
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(v.line);
  if (!m) return warn("nats-server", `nats-server answered "${v.line}"`, "check the nats-server binary on PATH");
  const [major, minor] = [Number(m[1]), Number(m[2])];
  const version = `${m[1]}.${m[2]}.${m[3]}`;
  if (major > 2 || (major === 2 && minor >= 10)) return ok("nats-server", `nats-server ${version}`);
  if (major === 2 && minor === 9) {
    return warn("nats-server", `nats-server ${version} works, 2.10 or newer is recommended`, SETUP_HINT);
  }
  return fail("nats-server", `nats-server ${version} is too old (JetStream needs 2.9, Ferry wants 2.10+)`, SETUP_HINT);
}

async function checkTool(name: string, pkg: string, o: DoctorOptions, optional = false): Promise<CheckResult> {
  const v = await toolVersion(name, o);
  if (!v.found) {
    const fix = `apt-get install ${pkg}, or ${SETUP_HINT}`;
    return optional ? warn(name, `${name} is not installed (optional: the tests and the lab use it)`, fix) : fail(name, `${name} is not installed`, fix);
  }
  if (!v.ok) return fail(name, `${name} is installed but did not run: ${redactText(v.line)}`, `reinstall ${pkg}`);
  return ok(name, v.line.replace(/\s*\(.*\)$/, "").replace(/ version /, " "));
}

function describeNatsError(err: unknown): { detail: string; fix: string } {
  const e = err as { name?: string; code?: string; message?: string; cause?: { code?: string } };
  const code = e.cause?.code ?? e.code;
  const msg = redactText(e.message ?? String(err));
  if (e.name === "JetStreamNotEnabled" || /jetstream is not enabled/i.test(msg)) {
    return {
      detail: "is reachable but JetStream is not enabled",
      fix: "start nats-server with -js (or a `jetstream {}` block, see infra/nats/single.conf)",
    };
  }
  if (code === "ECONNREFUSED") {
    return {
      detail: "is not reachable (connection refused)",
      fix: "start nats-server (systemctl start nats-server, or nats-server -c infra/nats/single.conf), or fix nats.servers",
    };
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return { detail: "is not reachable (host name not found)", fix: "check nats.servers and DNS" };
  }
  if (/authoriz|authenticat|permission/i.test(msg)) {
    return { detail: `refused the login (${msg})`, fix: "check nats.user / nats.passwordEnv / nats.credsFile" };
  }
  if (/timeout/i.test(msg) || e.name === "TimeoutError") {
    return { detail: "did not answer in time", fix: "check that the address is a NATS server and a firewall lets it through" };
  }
  return { detail: `is not usable (${msg})`, fix: "check nats.servers and the nats-server log" };
}

/** The NATS part doctor checks: servers and credentials (from natsSettings, or a loaded config). */
export interface NatsTarget {
  readonly servers: readonly string[];
  readonly credsFile?: string | undefined;
  readonly user?: string | undefined;
  readonly password?: string | undefined;
  /** Not checked; allowed so a loaded config's `nats` section can be passed as it is. */
  readonly replicas?: number | undefined;
}

export async function checkNats(o: DoctorOptions, nats: NatsTarget): Promise<CheckResult> {
  const where = `NATS at ${nats.servers.join(", ")}`;
  const timeout = o.timeoutMs ?? 5000;
  let opts: ConnectionOptions = { servers: [...nats.servers], timeout, reconnect: false, name: "ferry-doctor" };
  try {
    if (nats.credsFile) opts = { ...opts, authenticator: credsAuthenticator(await readFile(nats.credsFile)) };
  } catch {
    return fail("nats", `credsFile ${nats.credsFile} cannot be read`, "check nats.credsFile");
  }
  if (nats.user) opts = { ...opts, user: nats.user, ...(nats.password ? { pass: nats.password } : {}) };
  let nc: Awaited<ReturnType<typeof connect>> | undefined;
  try {
    nc = await connect(opts);
    const version = nc.info?.version ?? "?";
    const jsm = await jetstreamManager(nc, { timeout });
    const info = await jsm.getAccountInfo();
    const [major, minor] = version.split(".").map(Number);
    if (major === undefined || minor === undefined || major < 2 || (major === 2 && minor < 10)) {
      return fail("nats", `${where} runs nats-server ${version}: Ferry needs 2.10 or newer (multi-subject consumers, consumer metadata)`, "upgrade nats-server on that machine (`bash infra/setup.sh` installs 2.10+ here)");
    }
    return ok(
      "nats",
      `${where} is reachable (nats-server ${version}), JetStream is enabled (${info.streams} streams, ${info.consumers} consumers)`,
    );
  } catch (err) {
    const { detail, fix } = describeNatsError(err);
    return fail("nats", `${where} ${detail}`, fix);
  } finally {
    await nc?.close().catch(() => undefined);
  }
}

const UNTRUSTED = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
]);

function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let i = 0; e && i < 5; i++, e = e.cause as typeof e) if (typeof e.code === "string") codes.push(e.code);
  return codes;
}

/** What a hint needs to name the fix for an engine: its trusted CA file and the ferry command form. */
export interface EngineHintContext {
  /** The file holding the CA Ferry trusts for the engine (pipeline/trust.ts caPathFor). */
  readonly caPath?: string | undefined;
  /** Whether that file was there and read (else the engine was checked against the system CAs). */
  readonly caRead?: boolean | undefined;
  /** The CA the engine serves (pki-resource), when it could be fetched. */
  readonly servedFingerprint?: string | undefined;
  /** `ferry <args>` as the operator should type it (with --config when the doctor had one). */
  readonly ferry?: (args: string) => string;
}

/** The hint for an engine whose certificate does not verify: the exact command that trusts what it serves. */
function trustHint(name: string, h: EngineHintContext): string {
  const ferry = h.ferry ?? ((a: string) => `ferry ${a}`);
  if (h.servedFingerprint) {
    return `compare sha256 ${h.servedFingerprint} with the engine's CA (on the engine: openssl x509 -in /etc/pki/ovirt-engine/ca.pem -noout -fingerprint -sha256); if they match, trust it: ${ferry(`cert fetch ${name} --accept ${h.servedFingerprint}`)}`;
  }
  return `the engine did not hand out its CA (pki-resource): copy /etc/pki/ovirt-engine/ca.pem from the engine to ${h.caPath ?? "the caFile"}, then check again: ${ferry("doctor --check engines")}`;
}

/** Plain words for why an HTTPS request to an engine failed. */
export function describeEngineError(name: string, engine: ResolvedEngine, err: unknown, h: EngineHintContext = {}): { detail: string; fix: string } {
  const codes = errorCodes(err);
  const has = (...c: string[]) => codes.some((x) => c.includes(x));
  const host = new URL(engine.url).host;
  const caPath = h.caPath ?? engine.caFile;
  if (codes.some((c) => UNTRUSTED.has(c))) {
    return (h.caPath !== undefined && h.caRead !== false) || (h.caPath === undefined && engine.caFile)
      ? { detail: `certificate not trusted: it is not signed by the CA in ${caPath} (the engine CA may have changed)`, fix: trustHint(name, h) }
      : { detail: "certificate not trusted: no CA file is set and the system does not trust the engine CA", fix: trustHint(name, h) };
  }
  const ferry = h.ferry ?? ((a: string) => `ferry ${a}`);
  if (has("CERT_HAS_EXPIRED")) return { detail: "the engine's certificate has expired", fix: `renew it on the engine (engine-setup), then check again: ${ferry("doctor --check engines")}` };
  if (has("CERT_NOT_YET_VALID")) return { detail: "the engine's certificate is not valid yet", fix: "check this machine's clock (timedatectl)" };
  if (has("ERR_TLS_CERT_ALTNAME_INVALID")) {
    return { detail: `the certificate is not issued for ${host}`, fix: "use the engine's name from its certificate (its FQDN) in url" };
  }
  if (has("ECONNREFUSED")) return { detail: `connection to ${host} refused`, fix: "check that ovirt-engine runs and the port in url is right" };
  if (has("ENOTFOUND", "EAI_AGAIN")) return { detail: `host name ${new URL(engine.url).hostname} not found`, fix: "check url and DNS" };
  if (has("UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "ETIMEDOUT", "ABORT_ERR", "UND_ERR_ABORTED")) {
    return { detail: `no answer from ${host} in time`, fix: "check the network path and firewall to the engine" };
  }
  if (has("EHOSTUNREACH", "ENETUNREACH")) return { detail: `${host} is unreachable from here`, fix: "check routing and firewall" };
  if (has("ECONNRESET", "EPROTO", "ERR_SSL_WRONG_VERSION_NUMBER")) {
    return { detail: `TLS handshake with ${host} failed`, fix: "check that url points at the engine's https port" };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { detail: `request failed: ${redactText(message)}`, fix: "check url, caFile and the network" };
}

/** Where the engine's password comes from, for the hint after a refused login (never the password). */
function passwordSource(name: string, engine: ResolvedEngine): string {
  if (engine.passwordEnv) return `$${engine.passwordEnv} (environment, or ferry.env beside the config)`;
  if (engine.passwordFile) return `the file ${engine.passwordFile}`;
  return `engines.${name}.password in the config`;
}

/** oAuth answers that mean the user or the password is wrong (the lab and oVirt's SSO use access_denied). */
const WRONG_CREDENTIALS = new Set(["access_denied", "invalid_grant", "http_401"]);

export async function checkEngine(name: string, engine: ResolvedEngine, o: DoctorOptions, caPath?: string): Promise<CheckResult> {
  const id = `engine:${name}`;
  const api = `${engine.url}/ovirt-engine/api`;
  const hint = (args: string) => ferryHint(o, args);
  let ca: string | undefined;
  // The CA Ferry trusts for the engine: caFile, else certs/<name>-ca.pem (the same file the functions read).
  const caFile = engine.insecure ? undefined : (caPath ?? engine.caFile);
  if (caFile) {
    try {
      ca = await readFile(caFile, "utf8");
    } catch {
      if (engine.caFile) return fail(id, `engine ${name}: caFile ${engine.caFile} cannot be read`, `${trustHint(name, { caPath: caFile, ferry: hint, servedFingerprint: await servedFingerprint(engine, o) })}; or fix caFile`);
    }
  }
  const timeout = o.timeoutMs ?? 5000;
  const agent = new Agent({
    connect: { ...(ca ? { ca } : {}), rejectUnauthorized: !engine.insecure, timeout },
    headersTimeout: timeout,
    bodyTimeout: timeout,
  });
  const trust = engine.insecure ? "TLS NOT verified (insecure: true)" : ca ? `TLS verified with ${path.basename(caFile!)}` : "TLS verified by the system CAs";
  try {
    const signal = o.signal ? AbortSignal.any([o.signal, AbortSignal.timeout(timeout)]) : AbortSignal.timeout(timeout);
    const res = await request(api, { dispatcher: agent, method: "GET", headers: { accept: "application/json" }, signal });
    await res.body.dump();
    const s = res.statusCode;
    if (s === 404) return fail(id, `engine ${name}: no oVirt API at ${api} (HTTP 404)`, "check url: it should be the engine address");
    if (s !== 200 && s !== 401 && s !== 403) {
      return fail(id, `engine ${name}: the API answered HTTP ${s}`, "check that ovirt-engine is running (systemctl status ovirt-engine on the engine)");
    }
  } catch (err) {
    const untrusted = errorCodes(err).some((c) => UNTRUSTED.has(c));
    const { detail, fix } = describeEngineError(name, engine, err, {
      caPath: caFile,
      caRead: ca !== undefined,
      ferry: hint,
      ...(untrusted ? { servedFingerprint: await servedFingerprint(engine, o) } : {}),
    });
    return fail(id, `engine ${name} (${engine.url}): ${detail}`, fix);
  } finally {
    await agent.close().catch(() => undefined);
  }
  // Reachable is not enough: an answer without login (HTTP 401) says nothing about the password.
  const client = createEngineClient({
    url: engine.url,
    user: engine.user,
    password: engine.password,
    caPem: ca,
    insecure: engine.insecure,
    connections: 1,
    connectTimeoutMs: timeout,
    requestTimeoutMs: timeout,
    getRetries: 0,
  });
  try {
    await client.login(o.signal ? { signal: o.signal } : {});
  } catch (err) {
    if (err instanceof AuthError && WRONG_CREDENTIALS.has(err.oauthError)) {
      return fail(
        id,
        `wrong user or password for engine ${name}: ${engine.url} refused the login of ${engine.user}`,
        `correct engines.${name}.user or the password in ${passwordSource(name, engine)}, then check again: ${hint("doctor --check engines")}`,
      );
    }
    if (err instanceof AuthError) {
      return fail(id, `engine ${name} refused the login of ${engine.user}: ${redactText(err.message)}`, `check the engine's SSO (ovirt-engine log), then: ${hint("doctor --check engines")}`);
    }
    const { detail, fix } = describeEngineError(name, engine, err, { caPath: caFile, caRead: ca !== undefined, ferry: hint });
    return fail(id, `engine ${name} (${engine.url}): login failed: ${detail}`, fix);
  } finally {
    await client.close().catch(() => undefined);
  }
  const result = ok(id, `engine ${name} (${engine.url}) is reachable and ${engine.user} logged in, ${trust}`);
  if (!engine.insecure) return result;
  return { ...result, status: "warn", fix: `${trustHint(name, { caPath: caPathFor(name, { caFile: engine.caFile }, o.configFile, o.cwd), ferry: hint, servedFingerprint: await servedFingerprint(engine, o) })}; then drop insecure` };
}

/** The SHA-256 fingerprint of the CA the engine hands out, or undefined when it does not answer. */
async function servedFingerprint(engine: ResolvedEngine, o: DoctorOptions): Promise<string | undefined> {
  try {
    return (await fetchEngineCa(engine.url, { timeoutMs: o.timeoutMs ?? 5000, ...(o.signal ? { signal: o.signal } : {}) })).fingerprint256;
  } catch {
    return undefined;
  }
}

const days = (n: number) => `${n} day${n === 1 ? "" : "s"}`;

/** One `cert:<name>` result from what `ferry cert list` shows for the engine. */
export function certCheckResult(s: EngineCertStatus, warnDays: number, ferry: (args: string) => string = (a) => `ferry ${a}`): CheckResult {
  const id = `cert:${s.engine}`;
  const accept = s.served ? ferry(`cert fetch ${s.engine} --accept ${s.served.fingerprint}`) : undefined;
  if (s.insecure) return warn(id, `engine ${s.engine}: TLS is not verified (insecure: true), no CA is checked`, accept ? `compare sha256 ${s.served!.fingerprint} with the engine's CA, trust it: ${accept}, then drop insecure` : `copy the engine's CA (/etc/pki/ovirt-engine/ca.pem) to ${s.caPath}, then drop insecure`);
  const parts: string[] = [];
  if (s.trusted) parts.push(`CA sha256 ${s.trusted.fingerprint.slice(0, 11)}… (${s.trusted.subject}) until ${s.trusted.notAfter.slice(0, 10)}, ${days(s.trusted.daysLeft)} left`);
  if (s.engineCert) parts.push(`engine certificate until ${s.engineCert.notAfter.slice(0, 10)}, ${days(s.engineCert.daysLeft)} left`);
  const live = s.hosts.filter((h) => h.live);
  if (live.length) {
    const soonest = live.reduce((a, b) => (a.daysLeft <= b.daysLeft ? a : b));
    parts.push(`${live.length} imageio host${live.length === 1 ? "" : "s"}, soonest ${soonest.host}:${soonest.port} until ${soonest.notAfter.slice(0, 10)}, ${days(soonest.daysLeft)} left`);
  }
  const seen = `engine ${s.engine}: ${parts.join("; ") || "nothing could be read"}`;
  if (!s.trusted) {
    const served = s.served ? `; it serves sha256 ${s.served.fingerprint}` : "";
    return warn(id, `engine ${s.engine}: ${s.trustedProblem ?? "no trusted CA"}${served}`, accept ? `compare sha256 ${s.served!.fingerprint} with the engine's CA (on the engine: openssl x509 -in /etc/pki/ovirt-engine/ca.pem -noout -fingerprint -sha256); if they match: ${accept}` : `copy the engine's CA (/etc/pki/ovirt-engine/ca.pem) to ${s.caPath}, then: ${ferry("doctor --check certs")}`);
  }
  if (s.engineCert && !s.engineCert.verified) {
    const served = s.served && s.served.fingerprint !== s.trusted.fingerprint ? ` It serves another CA, sha256 ${s.served.fingerprint}${s.served.chains ? " (renews the trusted one)" : " (does not chain to the trusted one)"}.` : "";
    return fail(
      id,
      `engine ${s.engine}: its certificate does not verify with the trusted CA in ${s.caPath} (sha256 ${s.trusted.fingerprint}, ${s.engineCert.verifyError ?? "untrusted"}): backups cannot reach it.${served}`,
      accept ? `if sha256 ${s.served!.fingerprint} is the engine's new CA: ${accept} (running functions switch without a restart)` : `copy the engine's new CA (/etc/pki/ovirt-engine/ca.pem) to ${s.caPath} (running functions switch without a restart)`,
    );
  }
  const expired = [s.trusted, s.engineCert, ...live].filter((x): x is NonNullable<typeof x> => !!x && x.daysLeft < 0);
  if (expired.length) return fail(id, `${seen}: expired`, "renew the engine CA / certificates on the engine (engine-setup; hosts: Enroll Certificate)");
  if (s.due.length) {
    const renewal = s.served && s.served.fingerprint !== s.trusted.fingerprint && s.served.chains;
    return warn(
      id,
      `${seen}; due: ${s.due.join("; ")}`,
      renewal
        ? `the engine serves a renewed CA: ${ferry("cert check")} (the cert-expiring function stores it; no restart needed)`
        : `${ferry("cert check")} asks the cert-expiring function (it renews or alerts); certificates expiring within ${warnDays} days are renewed on the engine`,
    );
  }
  if (s.record && s.record.fingerprint !== s.trusted.fingerprint) {
    return warn(id, `${seen}; KV ferry-certs records another CA (sha256 ${s.record.fingerprint}, accepted by ${s.record.acceptedBy} at ${s.record.acceptedAt})`, `${ferry("cert list")} shows both; the newer one is taken on the next cert.renewed`);
  }
  return ok(id, seen);
}

/** The certificates of every engine: trusted CA, served CA, engine and imageio host certificates (KV ferry-certs when NATS is reachable). */
export async function checkCerts(config: LoadedConfig, o: DoctorOptions, nats: NatsTarget): Promise<CheckResult[]> {
  const engines = certEnginesOf(config, o.cwd);
  if (!Object.keys(engines).length) return [];
  const timeout = o.timeoutMs ?? 5000;
  let nc: Awaited<ReturnType<typeof connect>> | undefined;
  let kv: Awaited<ReturnType<Kvm["open"]>> | undefined;
  try {
    let opts: ConnectionOptions = { servers: [...nats.servers], timeout, reconnect: false, name: "ferry-doctor-certs" };
    if (nats.credsFile) opts = { ...opts, authenticator: credsAuthenticator(await readFile(nats.credsFile)) };
    if (nats.user) opts = { ...opts, user: nats.user, ...(nats.password ? { pass: nats.password } : {}) };
    nc = await connect(opts);
    kv = await new Kvm(nc).open(buckets.certs);
  } catch {
    // Without NATS (its own check says why) the imageio hosts and the KV record are not known.
  }
  try {
    return await Promise.all(
      Object.entries(engines).map(async ([name, e]) =>
        certCheckResult(await engineCertStatus(name, e, { warnDays: config.certs.warnDays, kv, timeoutMs: timeout, ...(o.signal ? { signal: o.signal } : {}) }), config.certs.warnDays, (args) => ferryHint(o, args)),
      ),
    );
  } finally {
    await nc?.close().catch(() => undefined);
  }
}

/**
 * Every function that has a durable consumer on this NATS (it ran here once) has at least one
 * running worker ($SRV discovery, functions/runtime/workers.ts); else its subject fills up and
 * nothing happens. Nothing is reported when NATS cannot be reached (the nats check says why).
 */
export async function checkWorkers(o: DoctorOptions, nats: NatsTarget): Promise<CheckResult[]> {
  const timeout = o.timeoutMs ?? 5000;
  let nc: Awaited<ReturnType<typeof connect>> | undefined;
  try {
    let opts: ConnectionOptions = { servers: [...nats.servers], timeout, reconnect: false, name: "ferry-doctor-workers" };
    if (nats.credsFile) opts = { ...opts, authenticator: credsAuthenticator(await readFile(nats.credsFile)) };
    if (nats.user) opts = { ...opts, user: nats.user, ...(nats.password ? { pass: nats.password } : {}) };
    nc = await connect(opts);
  } catch {
    return [];
  }
  try {
    const jsm = await jetstreamManager(nc, { timeout });
    const consumers: { name: string; stream: string; pending: number }[] = [];
    for (const stream of [streams.commands.name, streams.events.name]) {
      try {
        for await (const c of jsm.consumers.list(stream)) {
          if (c.config.durable_name) consumers.push({ name: c.config.durable_name, stream, pending: c.num_pending });
        }
      } catch {
        // The stream does not exist yet: no function ran here.
      }
    }
    if (!consumers.length) {
      return [warn("workers", "no Ferry function has run on this NATS yet (no durable consumers)", `start them: ${ferryHint(o, "run all")}`)];
    }
    const workers = await runningWorkers(nc, { timeoutMs: Math.min(timeout, 3000) });
    return consumers
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((c) => {
        const n = workers.get(c.name) ?? 0;
        const id = `workers:${c.name}`;
        if (n > 0) return ok(id, `function ${c.name}: ${n} running worker${n === 1 ? "" : "s"} (consumer ${c.stream}/${c.name}, ${c.pending} pending)`);
        return fail(
          id,
          `function ${c.name} has no running worker: nothing consumes ${c.stream}/${c.name} (${c.pending} message${c.pending === 1 ? "" : "s"} waiting)`,
          `start it: ${ferryHint(o, `run ${c.name}`)} (or ${ferryHint(o, "run all")}; systemd: systemctl start ferry@${c.name})`,
        );
      });
  } catch (err) {
    return [fail("workers", `the functions' consumers could not be listed: ${redactText((err as Error).message)}`, "see the nats check")];
  } finally {
    await nc.close().catch(() => undefined);
  }
}

function gib(bytes: number): string {
  return `${(bytes / GIB).toFixed(1)} GiB`;
}

export async function checkStore(storePath: string): Promise<CheckResult> {
  const mk = `mkdir -p ${storePath} && chmod 700 ${storePath} (as the user that runs Ferry)`;
  try {
    const s = await stat(storePath);
    if (!s.isDirectory()) return fail("store", `store ${storePath} is not a directory`, "point store.path at a directory");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return fail("store", `store ${storePath} does not exist`, `create it: ${mk}, or fix store.path`);
    return fail("store", `store ${storePath} cannot be read (${code})`, "check the permissions of the store and its parents");
  }
  const probe = path.join(storePath, `.ferry-doctor-${randomBytes(4).toString("hex")}`);
  try {
    await writeFile(probe, "ferry doctor write test\n", { flag: "wx", mode: 0o600 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EROFS" ? "is on a read-only file system" : code === "ENOSPC" ? "is full" : `is not writable (${code})`;
    return fail("store", `store ${storePath} ${why}`, "give the user that runs Ferry write access (chown -R ferry: the store), or fix store.path");
  } finally {
    await rm(probe, { force: true });
  }
  const fs = await statfs(storePath);
  const free = fs.bavail * fs.bsize;
  const total = fs.blocks * fs.bsize;
  const detail = `store ${storePath} is writable, ${gib(free)} free of ${gib(total)}`;
  if (free < GIB) return warn("store", `${detail}: almost full`, "free space or grow the backup volume before the next full backup");
  return ok("store", detail);
}

export interface DoctorReport {
  ok: boolean;
  checks: CheckResult[];
}

export async function runDoctor(o: DoctorOptions): Promise<DoctorReport> {
  const want = (g: CheckGroup) => !o.only || o.only.includes(g);
  const checks: CheckResult[] = [];

  // The config decides where NATS, the engines and the store are; without it NATS is checked at the default.
  let config: LoadedConfig | undefined;
  const configChecks: CheckResult[] = [];
  const where = locateConfig(o.configFile, o.env, o.cwd);
  if (!where.file) {
    configChecks.push(
      fail(
        "config",
        "no config file found (looked for --config, $FERRY_CONFIG, ./ferry.json, /etc/ferry/ferry.json)",
        "write one (docs/configuration.md, infra/ferry.example.json) or convert Airflow's: ferry config import variables.json",
      ),
    );
  } else {
    const warnings: string[] = [];
    try {
      config = await loadConfig(where.file, o.env, { envFile: true, onWarning: (w) => warnings.push(`${formatPath(w.path)}: ${w.message}`) });
      const n = Object.keys(config.engines).length;
      const v = Object.keys(config.vms).length;
      const detail = `config ${where.file} is valid (${n} engine${n === 1 ? "" : "s"}, ${v} VM${v === 1 ? "" : "s"})`;
      configChecks.push(warnings.length ? warn("config", `${detail}; ${warnings.join("; ")}`, "see the warnings") : ok("config", detail));
    } catch (err) {
      if (err instanceof ConfigNotFoundError) {
        configChecks.push(fail("config", `config ${where.file} (from ${where.via}) does not exist`, "create it, or run ferry config import variables.json"));
      } else if (err instanceof ConfigError) {
        configChecks.push(
          fail("config", `config ${where.file} is not valid: ${err.issues.map(formatIssue).join("; ")}`, "fix these keys (docs/configuration.md)"),
        );
      } else throw err;
    }
  }
  // The same reader as every command: NATS_URL, else the config's nats.servers, else the default.
  const settings = natsSettings({ env: o.env, config, name: "ferry-doctor" });
  const natsCfg: NatsTarget = { ...settings, servers: serverList(settings.servers) };
  if (!config && (want("engines") || want("store"))) {
    configChecks[0] = { ...configChecks[0]!, detail: `${configChecks[0]!.detail}. The engine and store checks need a valid config and were skipped` };
  }

  const pending: Promise<CheckResult>[] = [];
  if (want("node")) pending.push(Promise.resolve(checkNode(o.nodeVersion ?? process.version)));
  if (want("nats-server")) pending.push(checkNatsServerBinary(o, natsCfg.servers));
  if (want("nats")) {
    pending.push(
      checkNats(o, natsCfg).then((r) =>
        settings.warnings.length && r.status === "ok" ? warn(r.name, `${r.detail}; ${settings.warnings.join("; ")}`, "see the warning") : r,
      ),
    );
  }
  if (want("qemu")) pending.push(checkTool("qemu-img", "qemu-utils", o), checkTool("qemu-nbd", "qemu-utils", o));
  const workers = want("workers") ? checkWorkers(o, natsCfg) : Promise.resolve([]);
  if (want("nbdkit")) pending.push(checkTool("nbdkit", "nbdkit", o, true));
  checks.push(...(await Promise.all(pending)));
  if (want("config") || (!config && (want("engines") || want("store")))) checks.push(...configChecks);
  if (config) {
    const later: Promise<CheckResult>[] = [];
    if (want("engines")) {
      for (const [name, engine] of Object.entries(config.engines)) later.push(checkEngine(name, engine, o, caPathFor(name, engine, config.file, o.cwd)));
    }
    const certs = want("certs")
      ? checkCerts(config, o, natsCfg).catch((err: unknown) => [fail("certs", `certificates could not be checked: ${redactText((err as Error).message)}`, `see ${ferryHint(o, "cert list")}`)])
      : Promise.resolve([]);
    if (want("store")) later.push(checkStore(config.store.path));
    const [rest, certResults] = await Promise.all([Promise.all(later), certs]);
    checks.push(...rest.filter((c) => c.name !== "store"), ...certResults, ...rest.filter((c) => c.name === "store"));
  }
  checks.push(...(await workers));
  return { ok: checks.every((c) => c.status !== "fail"), checks };
}
