/**
 * `ferry cert fetch|check|list`: the engine CAs Ferry trusts.
 *
 *   fetch <engine|url> [--accept FP]   show what the engine serves; trust it only with consent
 *   check                              for cron (and daily in `ferry schedule --daemon`): publish
 *                                      cert.expiring for every engine with something due
 *   list                               every engine's CA, engine certificate and imageio hosts
 *
 * Only the engines, certs and nats sections of the config are read (no engine passwords needed).
 */
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { hostname, userInfo } from "node:os";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { CaNotVerifiedError, CaUnreachableError, fetchEngineCa, type EngineCa } from "../../adapters/ovirt/mod.ts";
import { connectNats, ensureBucket, natsSettings, NatsUnavailableError, provisionInfra } from "../../adapters/nats/mod.ts";
import type { KvLike } from "../../adapters/nats/kv-record.ts";
import { CONFIG_DEFAULTS, normaliseEngineUrl, type FerryConfig } from "../../contracts/config.ts";
import { checkConfig, ConfigError, parseConfigText } from "../../config/load.ts";
import { PermanentError } from "../../contracts/errors.ts";
import { locateConfig } from "../../config/locate.ts";
import { bucketDefinitions, buckets } from "../../infra/streams/mod.ts";
import { certExpiringId, engineCertStatus, type EngineCertStatus } from "../../pipeline/cert-status.ts";
import { certEnginesOf, deleteHostRecord, readTrustedCa, renews, storeTrustedCa, TrustedCaError, type CertEngineConfig, type TrustedCa } from "../../pipeline/trust.ts";
import { createPublisher } from "../../functions/runtime/mod.ts";
import { ExitCode, NATS_OPTION_HELP, warnTo, type Command, type CommandIO } from "../command.ts";

const usage = `Usage: ferry cert fetch <engine|engine-url> [--accept FINGERPRINT] [options]
       ferry cert check [--engine NAME] [--dry-run] [--force] [options]
       ferry cert list [--json] [options]

fetch   Download the engine CA from
          <engine-url>/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA
        and show its subject, SHA-256 fingerprint and expiry. Over https the answer is verified
        with the CA Ferry already trusts for the engine, when there is one; a first CA cannot be
        verified: compare the fingerprint with the engine's own
          (openssl x509 -in /etc/pki/ovirt-engine/ca.pem -noout -fingerprint -sha256).
        It is stored only with --accept <that fingerprint> (or when the config pins it,
        engines.<name>.caFingerprint): in the engine's CA file (caFile, else certs/<name>-ca.pem
        beside the config) and in KV ferry-certs, then cert.renewed is published and every running
        function uses it from then on (no restart). A CA that renews the trusted one (signed with
        its key) is also taken by the cert-expiring function without asking.
check   For every engine whose CA is missing or no longer verifies the engine, or whose CA, engine
        certificate or imageio host certificate (seen in a TLS handshake) expires within
        certs.warnDays (default ${CONFIG_DEFAULTS.certWarnDays}): publish cert.expiring (the cert-expiring function renews
        it, or alerts). One state of an engine is published once a day (message id
        cert-check:<engine>:<day>:<state>); --force publishes again.
list    Per engine: the trusted CA, the CA the engine serves, the engine's certificate and the
        imageio hosts Ferry used, with fingerprint, expiry and days left.

Options:
  --accept FP    (fetch) trust the CA if its SHA-256 fingerprint is FP (AB:CD:..., as printed)
  --out FILE     (fetch) write the CA there instead of the engine's CA file (with a URL: required to store)
  --ca FILE      (fetch) verify the https answer with this CA instead of the trusted one
  --engine NAME  (check) only this engine
  --dry-run      (check) say what is due, publish nothing
  --force        (check) publish even when this state was published today
  --config FILE  config file (default: $FERRY_CONFIG, ./ferry.json, /etc/ferry/ferry.json)
  --nats URL     ${NATS_OPTION_HELP}
  --json         one JSON document (fetch, list) or one line per engine (check)
  -h, --help     this text

Exit: 0 done (fetch: stored, or already trusted), 1 not stored (no --accept) or a publish failed,
2 usage, 3 NATS or the engine unreachable, 4 refused (fingerprint mismatch, not a CA, bad config).
`;

class UsageProblem extends Error {}
class Refused extends Error {}

interface CertConfig {
  readonly file?: string | undefined;
  readonly engines: Record<string, CertEngineConfig>;
  readonly warnDays: number;
  readonly nats: { servers: string[]; credsFile?: string; user?: string; password?: string; replicas: number };
}

/** The config's engines (CA files resolved), certs and nats sections; no engine secrets needed. */
export async function loadCertConfig(flag: string | undefined, io: Pick<CommandIO, "env" | "cwd">): Promise<CertConfig> {
  const where = locateConfig(flag, io.env, io.cwd);
  if (!where.file) return { engines: {}, warnDays: CONFIG_DEFAULTS.certWarnDays, nats: { servers: [...CONFIG_DEFAULTS.natsServers], replicas: 1 } };
  let text: string;
  try {
    text = await readFile(where.file, "utf8");
  } catch (err) {
    // Not there or not readable: something needed is missing (exit 3).
    throw new Error(`cannot read ${where.file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  let cfg: FerryConfig;
  try {
    // The config loader's checks and wording, without resolving engine secrets.
    raw = parseConfigText(text, where.file);
    cfg = checkConfig(raw, { env: io.env, source: where.file });
  } catch (err) {
    if (err instanceof ConfigError) throw new Refused(err.message);
    throw err;
  }
  const base = dirname(resolve(where.file));
  const engines = Object.fromEntries(Object.entries(cfg.engines).map(([n, e]) => [n, { ...e, ...(e.caFile ? { caFile: resolve(base, e.caFile) } : {}) }]));
  const passwordEnv = (raw as { nats?: { passwordEnv?: string } }).nats?.passwordEnv;
  return {
    file: resolve(where.file),
    engines: certEnginesOf({ engines, file: resolve(where.file) }, io.cwd),
    warnDays: cfg.certs.warnDays,
    nats: {
      servers: [...cfg.nats.servers],
      ...(cfg.nats.credsFile ? { credsFile: resolve(base, cfg.nats.credsFile) } : {}),
      ...(cfg.nats.user ? { user: cfg.nats.user } : {}),
      ...(passwordEnv && io.env[passwordEnv] ? { password: io.env[passwordEnv] } : {}),
      replicas: cfg.nats.replicas,
    },
  };
}

interface Bus {
  readonly nc: NatsConnection;
  readonly kv: KvLike;
  publish(subject: string, event: Record<string, unknown> & { id: string }, msgId?: string): Promise<{ duplicate: boolean; seq: number }>;
  close(): Promise<void>;
}

/** NATS, the ferry-certs bucket (and the streams, provisioned when missing) and a contract-checked publisher. */
async function openBus(cfg: CertConfig, flag: string | undefined, io: CommandIO, o: { timeoutMs?: number } = {}): Promise<Bus> {
  const settings = natsSettings({ flag, env: io.env, config: { nats: cfg.nats }, name: "ferry-cert" });
  for (const w of settings.warnings) warnTo(io, "cert")(w);
  const nc = await connectNats({ ...settings, maxReconnectAttempts: 2, ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) });
  try {
    const jsm = await jetstreamManager(nc);
    if (!(await jsm.streams.info("FERRY_COMMANDS").then(() => true, () => false))) await provisionInfra(nc, jsm, { replicas: cfg.nats.replicas });
    else await ensureBucket(nc, jsm, bucketDefinitions.find((b) => b.name === buckets.certs)!, cfg.nats.replicas);
    const kv = await new Kvm(nc).open(buckets.certs);
    const pub = createPublisher(nc, jetstream(nc));
    return {
      nc,
      kv,
      async publish(subject, event, msgId) {
        const ack = await pub.publish({ subject, event, ...(msgId ? { msgId } : {}) });
        return { duplicate: ack.duplicate, seq: ack.seq };
      },
      close: () => nc.close().catch(() => undefined),
    };
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw err;
  }
}

function normalFp(fp: string): string {
  return fp.trim().replace(/^sha256:/i, "").toUpperCase();
}

const day10 = (d: Date | string) => new Date(d).toISOString().slice(0, 10);

// ---------------------------------------------------------------------------------------- fetch

/** Which engine the argument names: a configured engine by name, or by its URL; else a bare URL. */
function target(arg: string, cfg: CertConfig): { name?: string; engine?: CertEngineConfig; url: string } {
  const byName = cfg.engines[arg];
  if (byName) return { name: arg, engine: byName, url: byName.url };
  let origin: string;
  try {
    origin = normaliseEngineUrl(arg);
    if (!/^https?:\/\//.test(arg)) throw new Error("not a URL");
  } catch {
    const known = Object.keys(cfg.engines);
    throw new UsageProblem(`'${arg}' is neither an engine of the config${known.length ? ` (${known.join(", ")})` : cfg.file ? " (it has none)" : " (no config file found)"} nor an engine URL`);
  }
  const named = Object.entries(cfg.engines).find(([, e]) => normaliseEngineUrl(e.url) === origin);
  return named ? { name: named[0], engine: named[1], url: named[1].url } : { url: arg };
}

async function fetchCommand(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      accept: { type: "string" },
      out: { type: "string" },
      ca: { type: "string" },
      config: { type: "string" },
      nats: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  if (positionals.length !== 1) throw new UsageProblem("expected exactly one <engine> or <engine-url>");
  const cfg = await loadCertConfig(values.config, io);
  const t = target(positionals[0]!, cfg);
  const out = values.out ? resolve(io.cwd, values.out) : undefined;
  const caPath = out ?? t.engine?.caPath;

  let trusted: TrustedCa | undefined;
  if (t.engine) {
    try {
      trusted = await readTrustedCa(t.engine.caPath);
    } catch (err) {
      if (!(err instanceof TrustedCaError)) throw err;
      io.stderr.write(`ferry cert fetch: warning: ${err.message}; treating the engine as having no trusted CA\n`);
    }
  }
  let verifyWith = trusted?.pem;
  if (values.ca) {
    try {
      verifyWith = await readFile(resolve(io.cwd, values.ca), "utf8");
    } catch (err) {
      throw new Refused(`cannot read --ca: ${(err as Error).message}`);
    }
  }

  let ca: EngineCa;
  let notVerified: string | undefined;
  try {
    ca = await fetchEngineCa(t.url, { ...(verifyWith ? { caPem: verifyWith } : {}), signal: io.signal });
  } catch (err) {
    if (!(err instanceof CaNotVerifiedError)) throw err;
    notVerified = err.tlsCode;
    ca = await fetchEngineCa(t.url, { signal: io.signal });
  }
  const fp = ca.fingerprint256;
  const now = new Date();
  const left = Math.floor((ca.notAfter.getTime() - now.getTime()) / 86_400_000);
  const trustedFp = trusted?.certificates[0]?.fingerprint256;
  const relation = !trusted
    ? "no CA is trusted for this engine yet"
    : trustedFp === fp
      ? "this is the CA Ferry trusts"
      : renews(ca.certificate, trusted)
        ? "it renews the trusted CA (signed with its key)"
        : `it does NOT chain to the trusted CA (sha256 ${trustedFp})`;
  const transport =
    ca.transport === "https-verified"
      ? "fetched over TLS verified with the trusted CA"
      : notVerified
        ? `the engine's TLS certificate does NOT verify with the trusted CA (${notVerified}); fetched unverified`
        : ca.transport === "http"
          ? "fetched over plain http (not verified)"
          : "fetched over https, not verified (no CA to verify with yet)";

  const pinned = t.engine?.pinned ? normalFp(t.engine.pinned) : undefined;
  const accepted = values.accept !== undefined ? normalFp(values.accept) : undefined;
  const report = (stored: Record<string, unknown> | null, note: string) => {
    if (values.json) {
      io.stdout.write(
        `${JSON.stringify({
          engine: t.name ?? t.url,
          url: t.url,
          subject: ca.subject,
          fingerprint256: fp,
          notBefore: ca.notBefore.toISOString(),
          notAfter: ca.notAfter.toISOString(),
          daysLeft: left,
          isCa: ca.isCa,
          transport: ca.transport,
          verified: ca.transport === "https-verified",
          trusted: trustedFp ?? null,
          relation,
          stored,
          note,
        })}\n`,
      );
      return;
    }
    io.stdout.write(
      [
        `engine:      ${t.name ? `${t.name} (${t.url})` : t.url}`,
        `subject:     ${ca.subject}`,
        `sha256:      ${fp}`,
        `not before:  ${ca.notBefore.toISOString()}`,
        `not after:   ${ca.notAfter.toISOString()} (${left} days left)`,
        `checked:     ${transport}; ${relation}`,
        note,
        "",
      ].join("\n"),
    );
  };

  if (!ca.isCa) {
    report(null, "refused: the certificate is not a CA (basicConstraints CA:FALSE); nothing stored");
    return ExitCode.invalid;
  }
  if (ca.notAfter <= now || ca.notBefore > now) {
    report(null, `refused: the CA is not valid now (${day10(ca.notBefore)} .. ${day10(ca.notAfter)}); nothing stored`);
    return ExitCode.invalid;
  }
  if (accepted !== undefined && accepted !== fp) {
    report(null, `refused: --accept ${values.accept} is not this CA's fingerprint; nothing stored`);
    return ExitCode.invalid;
  }
  if (trustedFp === fp && !out) {
    report(null, `already trusted (${t.engine!.caPath}); nothing to do`);
    return ExitCode.ok;
  }
  if (ca.transport !== "https-verified") io.stderr.write("note: fetched without verification; compare the fingerprint with the engine's CA before accepting it\n");
  const consent = accepted === fp ? `operator ${userInfo().username}@${hostname()}` : pinned === fp ? "config" : undefined;
  if (!caPath) {
    // A URL that is no engine of the config and no --out: there is nowhere to store it; showing it is the job.
    report(null, `not stored (to trust it: ferry cert fetch <engine> --accept ${fp}, or --out FILE --accept ${fp})`);
    return ExitCode.ok;
  }
  if (!consent) {
    report(null, `not stored: check the fingerprint on the engine, then run: ferry cert fetch ${t.name ?? t.url}${out ? ` --out ${values.out}` : ""} --accept ${fp}`);
    return ExitCode.failed;
  }

  if (!t.name) {
    // A URL that is no engine of the config: the file only (no KV record, no event).
    await storeTrustedCa({ engine: "url", ca, path: caPath, acceptedBy: consent });
    report({ file: caPath }, `stored: ${caPath} (accepted by ${consent})`);
    return ExitCode.ok;
  }
  const bus = await openBus(cfg, values.nats, io);
  try {
    const record = await storeTrustedCa({ engine: t.name, ca, path: caPath, kv: bus.kv, acceptedBy: consent, previous: trusted });
    const id = `cert-accepted:${t.name}:${fp.replace(/:/g, "").slice(0, 16)}:${record.acceptedAt}`;
    await bus.publish("cert.renewed", {
      id,
      time: record.acceptedAt,
      correlationId: id,
      engine: t.name,
      fingerprint: record.fingerprint,
      notAfter: record.notAfter,
      changed: trustedFp !== fp,
      ...(record.previous ? { previous: record.previous } : {}),
      acceptedBy: record.acceptedBy,
    });
    report(
      { file: caPath, kv: `${buckets.certs} engine.${t.name}`, acceptedBy: record.acceptedBy, acceptedAt: record.acceptedAt },
      `stored: ${caPath} and KV ${buckets.certs} (accepted by ${consent}); cert.renewed published: running functions use it now`,
    );
    return ExitCode.ok;
  } finally {
    await bus.close();
  }
}

// ---------------------------------------------------------------------------------------- check

export interface CertCheckResult {
  readonly engine: string;
  readonly status: "ok" | "due" | "published" | "duplicate" | "skipped" | "failed";
  readonly due: readonly string[];
  readonly id?: string | undefined;
  readonly error?: string | undefined;
  readonly caNotAfter?: string | undefined;
}

/**
 * The expiry watch, once: publish cert.expiring for every engine with something due. Also drops
 * records of imageio hosts not reachable and not seen for 30 days. Used by `ferry cert check`
 * and `ferry schedule --daemon`.
 */
export async function runCertCheck(o: {
  readonly engines: Readonly<Record<string, CertEngineConfig>>;
  readonly warnDays: number;
  readonly kv?: KvLike | undefined;
  readonly publish?: Bus["publish"] | undefined;
  readonly now?: Date;
  readonly force?: boolean;
  readonly only?: string | undefined;
  readonly signal?: AbortSignal | undefined;
}): Promise<CertCheckResult[]> {
  const now = o.now ?? new Date();
  const results: CertCheckResult[] = [];
  for (const [name, e] of Object.entries(o.engines)) {
    if (o.only && name !== o.only) continue;
    if (e.insecure) {
      results.push({ engine: name, status: "skipped", due: ["insecure: TLS is not verified for this engine"] });
      continue;
    }
    let s: EngineCertStatus;
    try {
      s = await engineCertStatus(name, e, { warnDays: o.warnDays, kv: o.kv, now, signal: o.signal });
    } catch (err) {
      results.push({ engine: name, status: "failed", due: [], error: (err as Error).message });
      continue;
    }
    if (o.kv) {
      for (const h of s.hosts) {
        if (!h.live && now.getTime() - Date.parse(h.seenAt) > 30 * 86_400_000) await deleteHostRecord(o.kv, { engine: name, ...h }).catch(() => undefined);
      }
    }
    const caNotAfter = s.trusted?.notAfter;
    if (!s.due.length && s.engineProblem) {
      // Nothing could be judged: not "ok".
      results.push({ engine: name, status: "skipped", due: [`the engine could not be reached: ${s.engineProblem}`], ...(caNotAfter ? { caNotAfter } : {}) });
      continue;
    }
    if (!s.due.length) {
      results.push({ engine: name, status: "ok", due: [], ...(caNotAfter ? { caNotAfter } : {}) });
      continue;
    }
    if (!o.publish) {
      results.push({ engine: name, status: "due", due: s.due, ...(caNotAfter ? { caNotAfter } : {}) });
      continue;
    }
    const id = o.force ? `${certExpiringId(s, now)}:${randomUUID().slice(0, 8)}` : certExpiringId(s, now);
    try {
      const ack = await o.publish("cert.expiring", { id, time: now.toISOString(), correlationId: id, engine: name });
      results.push({ engine: name, status: ack.duplicate ? "duplicate" : "published", due: s.due, id, ...(caNotAfter ? { caNotAfter } : {}) });
    } catch (err) {
      results.push({ engine: name, status: "failed", due: s.due, id, error: (err as Error).message });
    }
  }
  return results;
}

export function formatCheckResult(r: CertCheckResult): string {
  const why = r.due.length ? `: ${r.due.join("; ")}` : "";
  switch (r.status) {
    case "ok":
      return `${r.engine}: ok${r.caNotAfter ? ` (CA valid until ${day10(r.caNotAfter)})` : ""}`;
    case "due":
      return `${r.engine}: due (dry run: not published)${why}`;
    case "published":
      return `${r.engine}: published cert.expiring ${r.id}${why}`;
    case "duplicate":
      return `${r.engine}: cert.expiring already published today for this state (${r.id})${why}`;
    case "skipped":
      return `${r.engine}: skipped${why}`;
    case "failed":
      return `${r.engine}: FAILED: ${r.error ?? ""}${why}`;
  }
}

async function checkCommand(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      engine: { type: "string" },
      "dry-run": { type: "boolean", default: false },
      force: { type: "boolean", default: false },
      config: { type: "string" },
      nats: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  if (positionals.length) throw new UsageProblem(`unexpected argument '${positionals[0]}'`);
  const cfg = await loadCertConfig(values.config, io);
  if (values.engine && !cfg.engines[values.engine]) throw new UsageProblem(`no engine '${values.engine}' in the config (${Object.keys(cfg.engines).join(", ") || "none"})`);
  if (!Object.keys(cfg.engines).length) {
    io.stdout.write("no engines in the config: nothing to check\n");
    return ExitCode.ok;
  }
  const bus = await openBus(cfg, values.nats, io);
  try {
    const results = await runCertCheck({
      engines: cfg.engines,
      warnDays: cfg.warnDays,
      kv: bus.kv,
      ...(values["dry-run"] ? {} : { publish: bus.publish }),
      force: values.force,
      only: values.engine,
      signal: io.signal,
    });
    for (const r of results) io.stdout.write(`${values.json ? JSON.stringify(r) : formatCheckResult(r)}\n`);
    return results.some((r) => r.status === "failed") ? ExitCode.failed : ExitCode.ok;
  } finally {
    await bus.close();
  }
}

// ----------------------------------------------------------------------------------------- list

function listLines(s: EngineCertStatus): string[] {
  const days = (n: number) => `${n} day${n === 1 ? "" : "s"} left`;
  const lines = [`${s.engine}  ${s.url}${s.insecure ? "  (insecure: TLS not verified)" : ""}`];
  if (s.trusted) {
    const rec = s.record && s.record.fingerprint === s.trusted.fingerprint ? `, accepted by ${s.record.acceptedBy} at ${s.record.acceptedAt}` : s.record ? `; KV ferry-certs says ${s.record.fingerprint}` : "";
    lines.push(`  CA (trusted)    ${s.trusted.subject}  sha256 ${s.trusted.fingerprint}  not after ${s.trusted.notAfter}  ${days(s.trusted.daysLeft)}  (${s.caPath}${rec})`);
  } else lines.push(`  CA (trusted)    none: ${s.trustedProblem ?? "?"}`);
  if (s.served) {
    const how = s.served.verified ? "verified" : "NOT verified";
    lines.push(
      s.trusted && s.served.fingerprint === s.trusted.fingerprint
        ? `  CA (served)     the trusted one (${how})`
        : `  CA (served)     ${s.served.subject}  sha256 ${s.served.fingerprint}  not after ${s.served.notAfter}  ${days(s.served.daysLeft)}  (${how}${s.trusted ? (s.served.chains ? ", renews the trusted CA" : ", does NOT chain to the trusted CA") : ""})`,
    );
  } else lines.push(`  CA (served)     ? ${s.servedProblem ?? ""}`);
  if (s.engineCert) {
    lines.push(`  engine          ${s.engineCert.subject}  sha256 ${s.engineCert.fingerprint}  not after ${s.engineCert.notAfter}  ${days(s.engineCert.daysLeft)}  ${s.engineCert.verified ? "verified" : `NOT verified (${s.engineCert.verifyError ?? "untrusted"})`}`);
  } else lines.push(`  engine          ? ${s.engineProblem ?? ""}`);
  for (const h of s.hosts) {
    const state = h.live ? (h.verified ? "verified" : "NOT verified") : `not reachable now (${h.problem ?? "?"}); last seen ${h.seenAt}`;
    lines.push(`  imageio ${h.host}:${h.port}  ${h.subject}  sha256 ${h.fingerprint}  not after ${h.notAfter}  ${days(h.daysLeft)}  ${state}`);
  }
  if (!s.hosts.length) lines.push("  imageio         no host seen yet (recorded when a transfer uses one)");
  if (s.due.length) lines.push(`  due: ${s.due.join("; ")}`);
  return lines;
}

async function listCommand(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { config: { type: "string" }, nats: { type: "string" }, json: { type: "boolean", default: false } },
  });
  if (positionals.length) throw new UsageProblem(`unexpected argument '${positionals[0]}'`);
  const cfg = await loadCertConfig(values.config, io);
  let bus: Bus | undefined;
  try {
    bus = await openBus(cfg, values.nats, io, { timeoutMs: 3000 });
  } catch (err) {
    io.stderr.write(`ferry cert list: NATS not reachable (${(err as Error).message}): imageio hosts and KV records are not shown\n`);
  }
  try {
    const all: EngineCertStatus[] = [];
    for (const [name, e] of Object.entries(cfg.engines)) all.push(await engineCertStatus(name, e, { warnDays: cfg.warnDays, kv: bus?.kv, signal: io.signal }));
    if (values.json) io.stdout.write(`${JSON.stringify({ warnDays: cfg.warnDays, engines: all })}\n`);
    else if (!all.length) io.stdout.write("no engines in the config\n");
    else io.stdout.write(`${all.map((s) => listLines(s).join("\n")).join("\n\n")}\n`);
    return ExitCode.ok;
  } finally {
    await bus?.close();
  }
}

const command: Command = {
  name: "cert",
  summary: "Engine CAs: fetch <engine> [--accept FP] trusts one, check publishes cert.expiring when due, list shows expiry",
  usage,
  async run(args, io) {
    const [sub, ...rest] = args;
    const run = { fetch: fetchCommand, check: checkCommand, list: listCommand }[sub as "fetch"];
    if (!run) {
      io.stderr.write(`ferry cert: ${sub ? `unknown subcommand '${sub}'` : "a subcommand is required"}\n${usage}`);
      return ExitCode.usage;
    }
    try {
      return await run(rest, io);
    } catch (err) {
      const msg = (err as Error).message;
      io.stderr.write(`ferry cert ${sub}: ${msg}\n`);
      if (err instanceof UsageProblem || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) return ExitCode.usage;
      if (err instanceof Refused) return ExitCode.invalid;
      if (err instanceof NatsUnavailableError || err instanceof CaUnreachableError) return ExitCode.unavailable;
      if ((err as { code?: string }).code === "ENGINE_CONFIG") return ExitCode.usage;
      if (err instanceof PermanentError && (err as { code?: string }).code === "ENGINE_CA") return ExitCode.invalid;
      return ExitCode.unavailable;
    }
  },
};

export default command;
