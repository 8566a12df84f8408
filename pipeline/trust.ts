/**
 * The engine CAs Ferry trusts, and trust that changes while Ferry runs.
 *
 * Where a CA lives: the engine's `caFile`, else `certs/<engine>-ca.pem` beside the config file
 * (`caPathFor`). The file is the trust anchor of this machine; KV `ferry-certs` keeps a record of
 * every accepted CA (`engine.<name>`: fingerprint, expiry, who accepted it and when, the PEM) and
 * of the imageio host certificates seen (`host.<engine>.<host>_<port>`).
 *
 * `storeTrustedCa` is the one way a CA becomes trusted (the cert-expiring function after a
 * verified renewal or a pinned fingerprint, `ferry cert fetch --accept`): the file is written
 * under a temporary name, the KV record follows, then the file is renamed into place, so a crash
 * leaves either the old trust or the new, never half of it.
 *
 * `createTrustStore` is what a running process holds: the current PEM per engine for its engine
 * clients and imageio transfers, re-read (a) when `cert.renewed` arrives (`follow`), (b) once when
 * a TLS handshake fails (`refresher` for adapters/ovirt's `refreshCa`, `imageio` for transfers),
 * so a renewed CA is used without a restart. A record in KV newer than the local file (another
 * machine accepted the CA) is written to the local file on the way.
 */
import { randomBytes, type X509Certificate } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { chainsTo, pemCertificates, peerCertificate, type EngineCa } from "../adapters/ovirt/mod.ts";
import { ImageioTlsError } from "../adapters/imageio/mod.ts";
import { casUpdate, readRecord, type KvLike } from "../adapters/nats/kv-record.ts";
import { PermanentError } from "../contracts/errors.ts";

/** Folder of the trusted CA files of engines without `caFile`, beside the config file. */
export const CERTS_DIR = "certs";

/** The file holding the CA Ferry trusts for `name`: `caFile`, else `certs/<name>-ca.pem` beside the config file (or in `cwd`). */
export function caPathFor(name: string, engine: { readonly caFile?: string | undefined }, configFile: string | undefined, cwd: string = process.cwd()): string {
  return engine.caFile ?? join(configFile ? dirname(configFile) : cwd, CERTS_DIR, `${name}-ca.pem`);
}

/** KV `ferry-certs` `engine.<name>`: the CA trusted for an engine, as accepted. */
export interface CaRecord {
  readonly engine: string;
  readonly fingerprint: string;
  readonly subject: string;
  readonly notBefore: string;
  readonly notAfter: string;
  /** The file it was written to (on the machine that accepted it). */
  readonly file: string;
  /** 'renewal', 'config' (pinned fingerprint) or `operator <user>@<host>`. */
  readonly acceptedBy: string;
  readonly acceptedAt: string;
  /** The fingerprint trusted before, when it changed. */
  readonly previous?: string | undefined;
  /** The PEM as stored (the CA first; a CA it renews may follow until it expires). */
  readonly pem: string;
}

/** KV `ferry-certs` `host.<engine>.<host>_<port>`: an imageio daemon's certificate, as seen in a TLS handshake. */
export interface HostRecord {
  readonly engine: string;
  readonly host: string;
  readonly port: number;
  readonly subject: string;
  readonly fingerprint: string;
  readonly notAfter: string;
  /** It verified with the engine's trusted CA at the time. */
  readonly verified: boolean;
  readonly seenAt: string;
}

export const caRecordKey = (engine: string): string => `engine.${engine}`;
export const hostRecordKey = (engine: string, host: string, port: number): string => `host.${engine}.${host.replace(/[^A-Za-z0-9-]/g, "_")}_${port}`;

/** The trusted CA file cannot be read or holds no certificate. */
export class TrustedCaError extends PermanentError {
  constructor(path: string, problem: string) {
    super("CA_FILE", `trusted CA file ${path}: ${problem}`, { path });
  }
}

export interface TrustedCa {
  readonly pem: string;
  /** Every certificate of the file; the first is the CA, a CA it renewed may follow. */
  readonly certificates: readonly X509Certificate[];
  readonly mtimeMs: number;
}

/** The trusted CA in `path`; undefined when there is no such file. Throws TrustedCaError when it is unusable. */
export async function readTrustedCa(path: string): Promise<TrustedCa | undefined> {
  let pem: string;
  let mtimeMs: number;
  try {
    [pem, mtimeMs] = await Promise.all([readFile(path, "utf8"), stat(path).then((s) => s.mtimeMs)]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new TrustedCaError(path, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const certificates = pemCertificates(pem);
  if (!certificates.length) throw new TrustedCaError(path, "holds no PEM certificate");
  return { pem, certificates, mtimeMs };
}

export async function readCaRecord(kv: KvLike, engine: string): Promise<CaRecord | undefined> {
  return (await readRecord<CaRecord>(kv, caRecordKey(engine)))?.value;
}

export async function readHostRecords(kv: KvLike, engine: string): Promise<HostRecord[]> {
  const out: HostRecord[] = [];
  for await (const key of await kv.keys(`host.${engine}.*`)) {
    if (!key.startsWith(`host.${engine}.`)) continue;
    const r = await readRecord<HostRecord>(kv, key).catch(() => undefined);
    if (r) out.push(r.value);
  }
  return out.sort((a, b) => `${a.host}:${a.port}`.localeCompare(`${b.host}:${b.port}`));
}

export async function deleteHostRecord(kv: KvLike, r: Pick<HostRecord, "engine" | "host" | "port">): Promise<void> {
  await kv.delete(hostRecordKey(r.engine, r.host, r.port));
}

const SAME_KEY = (a: X509Certificate, b: X509Certificate) =>
  a.publicKey.export({ type: "spki", format: "der" }).equals(b.publicKey.export({ type: "spki", format: "der" }));

/**
 * Trust `ca` for `engine` from now on: write `path` (0644, atomically) and the KV record. With
 * `previous` given and `keepPrevious`, the certificates of the old file that are still valid and
 * have another key stay in the file after the new CA (a renewal with a new key, cross-signed by
 * the old one: hosts not re-enrolled yet still verify).
 */
export async function storeTrustedCa(o: {
  readonly engine: string;
  readonly ca: EngineCa;
  readonly path: string;
  readonly kv?: KvLike | undefined;
  readonly acceptedBy: string;
  readonly previous?: TrustedCa | undefined;
  readonly keepPrevious?: boolean | undefined;
  readonly now?: Date | undefined;
}): Promise<CaRecord> {
  const now = o.now ?? new Date();
  const kept = o.keepPrevious
    ? (o.previous?.certificates ?? []).filter((c) => c.fingerprint256 !== o.ca.fingerprint256 && !SAME_KEY(c, o.ca.certificate) && new Date(c.validTo) > now)
    : [];
  const pem = `${o.ca.pem.trimEnd()}\n${kept.map((c) => c.toString().trimEnd()).join("\n")}${kept.length ? "\n" : ""}`;
  const previousFp = o.previous?.certificates[0]?.fingerprint256;
  const record: CaRecord = {
    engine: o.engine,
    fingerprint: o.ca.fingerprint256,
    subject: o.ca.subject,
    notBefore: o.ca.notBefore.toISOString(),
    notAfter: o.ca.notAfter.toISOString(),
    file: o.path,
    acceptedBy: o.acceptedBy,
    acceptedAt: now.toISOString(),
    ...(previousFp && previousFp !== o.ca.fingerprint256 ? { previous: previousFp } : {}),
    pem,
  };
  await writeFileAtomic(o.path, pem, async () => {
    if (o.kv) await casUpdate<CaRecord>(o.kv, caRecordKey(o.engine), () => record);
  });
  return record;
}

/** Write `text` to a temporary file beside `path`, run `beforeRename` (undo on failure), rename into place. */
async function writeFileAtomic(path: string, text: string, beforeRename: () => Promise<void> = async () => undefined): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    // A CA certificate is public: 0644 like /etc/pki/ovirt-engine/ca.pem, whatever the umask.
    await writeFile(tmp, text, { mode: 0o644, flush: true });
    await chmod(tmp, 0o644);
    await beforeRename();
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Does `candidate` (a CA the engine serves) chain to the trusted file's certificates? */
export function renews(candidate: X509Certificate, trusted: TrustedCa): boolean {
  return chainsTo(candidate, trusted.certificates);
}

type Log = { info(o: object, m?: string): void; warn(o: object, m?: string): void; debug?(o: object, m?: string): void };

export interface TrustEngine {
  /** The trusted CA file (see caPathFor). Without it the engine's CA is fixed to `caPem`. */
  readonly caPath?: string | undefined;
  /** A fixed CA (tests, or an engine configured without a file). */
  readonly caPem?: string | undefined;
  readonly insecure?: boolean | undefined;
}

export interface TrustStoreOptions {
  readonly engines: Readonly<Record<string, TrustEngine>>;
  /** KV ferry-certs: records of other machines' acceptances are adopted; imageio host certificates are recorded. */
  readonly kv?: KvLike | undefined;
  readonly log?: Log | undefined;
  /** Record an imageio host's certificate at most this often per host (default 6 h). */
  readonly hostNoteEveryMs?: number | undefined;
  readonly clock?: (() => Date) | undefined;
}

export interface TrustStore {
  /** The PEM TLS with `engine` is verified with now (undefined: none known, the system store). */
  pem(engine: string): string | undefined;
  /** Re-read the engine's CA (file, then a newer KV record). True when it changed; clients attached are switched. */
  reload(engine: string): Promise<boolean>;
  /** For adapters/ovirt `refreshCa`: re-read once, answer the current PEM. */
  refresher(engine: string): () => Promise<string | undefined>;
  /** `client.setCa(pem)` on every change of the engine's CA. */
  attach(engine: string, client: { setCa(pem: string | undefined): boolean }): void;
  onChange(listener: (engine: string, pem: string | undefined) => void): () => void;
  /**
   * Run an imageio transfer with `caPem` (the engine's, read by the caller); on a TLS failure
   * re-read that engine's CA once and, if it changed, run it again with the new one. After a
   * success the host's certificate is recorded (KV) for the expiry watch.
   */
  imageio<T>(transferUrl: string, caPem: string | undefined, run: (caPem: string | undefined) => Promise<T>): Promise<T>;
  /** Reload an engine's CA whenever `cert.renewed` names it (core subscription, every process gets it). */
  follow(nc: Pick<NatsConnection, "subscribe">): void;
  close(): void;
}

export async function createTrustStore(o: TrustStoreOptions): Promise<TrustStore> {
  const current = new Map<string, string | undefined>();
  // Every PEM an engine has had in this process → the engine(s): a transfer started with an older
  // one still finds its engine.
  const owners = new Map<string, Set<string>>();
  const listeners = new Set<(engine: string, pem: string | undefined) => void>();
  const inFlight = new Map<string, Promise<boolean>>();
  const noted = new Map<string, number>();
  const subs: { unsubscribe(): void }[] = [];
  const clock = o.clock ?? (() => new Date());
  const noteEvery = o.hostNoteEveryMs ?? 6 * 3600_000;

  const own = (engine: string, pem: string | undefined) => {
    if (pem === undefined) return;
    let s = owners.get(pem);
    if (!s) owners.set(pem, (s = new Set()));
    s.add(engine);
  };

  /** What the engine should trust now: the file, or a newer KV record (written to the file). */
  const read = async (engine: string, e: TrustEngine): Promise<string | undefined> => {
    if (!e.caPath) return e.caPem;
    const file = await readTrustedCa(e.caPath);
    const record = o.kv ? await readCaRecord(o.kv, engine).catch(() => undefined) : undefined;
    if (record && record.fingerprint !== file?.certificates[0]?.fingerprint256 && (!file || Date.parse(record.acceptedAt) > file.mtimeMs)) {
      const first = pemCertificates(record.pem)[0];
      if (first?.fingerprint256 === record.fingerprint) {
        await writeFileAtomic(e.caPath, record.pem);
        o.log?.info({ engine, fingerprint: record.fingerprint, file: e.caPath, acceptedBy: record.acceptedBy }, "trusted CA taken from KV ferry-certs (accepted on another machine)");
        return record.pem;
      }
    }
    return file?.pem ?? e.caPem;
  };

  const set = (engine: string, pem: string | undefined): boolean => {
    if (current.get(engine) === pem) return false;
    current.set(engine, pem);
    own(engine, pem);
    for (const l of listeners) l(engine, pem);
    return true;
  };

  for (const [name, e] of Object.entries(o.engines)) {
    const pem = e.insecure ? undefined : await read(name, e);
    current.set(name, pem);
    own(name, pem);
  }

  const store: TrustStore = {
    pem: (engine) => current.get(engine),

    reload(engine) {
      const e = o.engines[engine];
      if (!e || e.insecure || !e.caPath) return Promise.resolve(false);
      let p = inFlight.get(engine);
      if (!p) {
        p = read(engine, e)
          .then((pem) => {
            const before = current.get(engine);
            const changed = set(engine, pem);
            if (changed) {
              const fp = (x: string | undefined) => (x ? pemCertificates(x)[0]?.fingerprint256 : undefined);
              o.log?.info({ engine, fingerprint: fp(pem), previous: fp(before) }, "trusted CA reloaded");
            }
            return changed;
          })
          .catch((err: unknown) => {
            o.log?.warn({ engine, err }, "could not re-read the trusted CA; keeping the one in use");
            return false;
          })
          .finally(() => inFlight.delete(engine));
        inFlight.set(engine, p);
      }
      return p;
    },

    refresher: (engine) => async () => {
      await store.reload(engine);
      return current.get(engine);
    },

    attach(engine, client) {
      listeners.add((name, pem) => {
        if (name === engine) client.setCa(pem);
      });
    },

    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async imageio(transferUrl, caPem, run) {
      let used = caPem;
      let result: Awaited<ReturnType<typeof run>>;
      try {
        result = await run(used);
      } catch (err) {
        if (!(err instanceof ImageioTlsError) || caPem === undefined) throw err;
        const engines = [...(owners.get(caPem) ?? [])];
        for (const name of engines) await store.reload(name);
        const next = engines.map((n) => current.get(n)).find((p) => p !== undefined && p !== caPem);
        if (next === undefined) throw err;
        used = next;
        result = await run(used);
      }
      noteHost(transferUrl, used);
      return result;
    },

    follow(nc) {
      subs.push(
        nc.subscribe("cert.renewed", {
          callback: (err, msg) => {
            if (err) return;
            let engine: unknown;
            try {
              engine = (msg.json() as { engine?: unknown }).engine;
            } catch {
              return;
            }
            if (typeof engine === "string" && engine in o.engines) void store.reload(engine);
          },
        }),
      );
    },

    close() {
      for (const s of subs.splice(0)) s.unsubscribe();
      listeners.clear();
    },
  };

  /** Record the imageio host's certificate (at most every `noteEvery` per host), in the background. */
  function noteHost(transferUrl: string, caPem: string | undefined): void {
    const kv = o.kv;
    if (!kv || caPem === undefined) return;
    let url: URL;
    try {
      url = new URL(transferUrl);
    } catch {
      return;
    }
    const origin = url.origin;
    const t = clock().getTime();
    if ((noted.get(origin) ?? -Infinity) > t - noteEvery) return;
    noted.set(origin, t);
    const engines = [...(owners.get(caPem) ?? [])];
    void peerCertificate(origin, { caPem, timeoutMs: 5000 })
      .then(async (peer) => {
        for (const engine of engines) {
          const record: HostRecord = {
            engine,
            host: peer.host,
            port: peer.port,
            subject: peer.subject,
            fingerprint: peer.fingerprint256,
            notAfter: peer.notAfter.toISOString(),
            verified: peer.verified,
            seenAt: clock().toISOString(),
          };
          await casUpdate<HostRecord>(kv, hostRecordKey(engine, peer.host, peer.port), () => record);
        }
      })
      .catch((err: unknown) => {
        noted.delete(origin);
        o.log?.debug?.({ err }, "could not record the imageio host certificate");
      });
  }

  return store;
}

/** An engine as the certificate code needs it: where it is, where its trusted CA lives, what the config pins. */
export interface CertEngineConfig {
  readonly url: string;
  readonly caPath: string;
  readonly insecure: boolean;
  /** engines.<name>.caFingerprint */
  readonly pinned?: string | undefined;
}

/** The config's engines with their trusted CA files resolved (caPathFor). */
export function certEnginesOf(
  config: { readonly engines: Readonly<Record<string, { readonly url: string; readonly caFile?: string | undefined; readonly caFingerprint?: string | undefined; readonly insecure?: boolean | undefined }>>; readonly file?: string | undefined },
  cwd: string = process.cwd(),
): Record<string, CertEngineConfig> {
  return Object.fromEntries(
    Object.entries(config.engines).map(([name, e]) => [
      name,
      { url: e.url, caPath: caPathFor(name, e, config.file, cwd), insecure: e.insecure === true, ...(e.caFingerprint ? { pinned: e.caFingerprint } : {}) },
    ]),
  );
}

/**
 * Where an alert about `engine`'s certificates goes: the engine itself when its TLS can be
 * trusted, else another configured engine whose can (the default engine first), else itself
 * (the alert then waits until its CA is accepted).
 */
export function alertEngineFor(engines: Readonly<Record<string, { readonly insecure?: boolean | undefined }>>, engine: string, reachable: boolean, defaultEngine = "prd"): string {
  if (reachable && engine in engines) return engine;
  const others = Object.keys(engines).filter((n) => n !== engine && !engines[n]!.insecure);
  return others.find((n) => n === defaultEngine) ?? others.sort()[0] ?? (engine in engines ? engine : defaultEngine);
}

/** The config's engines as a TrustStore reads them (their CA files). */
export function trustEnginesOf(config: Parameters<typeof certEnginesOf>[0], cwd?: string): Record<string, TrustEngine> {
  return Object.fromEntries(Object.entries(certEnginesOf(config, cwd)).map(([name, e]) => [name, { caPath: e.caPath, insecure: e.insecure }]));
}
