/**
 * cert-expiring: settle one engine's CA. Fetch what the engine serves at pki-resource over TLS
 * verified with the CA Ferry trusts; a CA that renews the trusted one (signed with its key) is
 * stored; anything else needs the operator's consent (`ferry cert fetch <engine> --accept <fp>`)
 * or a fingerprint pinned in the config, and is refused with one `cert.failed` (one alert). A
 * CA that is still the trusted one is checked for expiry, and so are the engine's and the
 * imageio hosts' certificates: Ferry cannot renew those, so they end in `cert.failed` as well.
 *
 * A factory over its dependencies: the engine edge (fetchCa, status), the trust files and KV
 * (readTrusted, store) are ports; tests give fakes.
 */
import { TransientError } from "../../contracts/errors.ts";
import { certFailed, certRenewed, type CertExpiring } from "../../contracts/mod.ts";
import { CaNotVerifiedError, CaUnreachableError, type EngineCa } from "../../adapters/ovirt/mod.ts";
import type { EngineCertStatus } from "../../pipeline/cert-status.ts";
import { renews, TrustedCaError, type CaRecord, type TrustedCa } from "../../pipeline/trust.ts";
import type { HandlerContext, Outbound, Received } from "../runtime/mod.ts";

export interface CertEngine {
  readonly url: string;
  /** The trusted CA file (caFile, or certs/<name>-ca.pem beside the config). */
  readonly caPath: string;
  readonly insecure?: boolean | undefined;
  /** engines.<name>.caFingerprint: a CA with this fingerprint is trusted without asking. */
  readonly pinned?: string | undefined;
}

export interface CertExpiringDeps {
  readonly engine: (name: string) => CertEngine | undefined;
  /** Where the alert about `name` goes: `name` itself when its TLS can be trusted, else another configured engine. */
  readonly alertEngine: (name: string, reachable: boolean) => string;
  readonly readTrusted: (path: string) => Promise<TrustedCa | undefined>;
  /** pki-resource; verified with `caPem` when given (CaNotVerifiedError when it does not verify). */
  readonly fetchCa: (url: string, caPem?: string) => Promise<EngineCa>;
  readonly store: (o: { engine: string; ca: EngineCa; path: string; acceptedBy: string; previous?: TrustedCa | undefined; keepPrevious: boolean }) => Promise<CaRecord>;
  /** The engine's certificates as seen now (engine and imageio host certificates, expiry). */
  readonly status: (name: string) => Promise<EngineCertStatus>;
  readonly warnDays: number;
  readonly clock: () => Date;
}

/** `AB:CD:..` in one form: upper case, no `sha256:` prefix. */
export function normalFingerprint(fp: string): string {
  return fp.replace(/^sha256:/i, "").toUpperCase();
}

const DAY = 86_400_000;
const until = (d: Date) => d.toISOString().slice(0, 10);
const describe = (ca: EngineCa) => `sha256 ${ca.fingerprint256} (${ca.subject}, valid until ${until(ca.notAfter)})`;
const acceptHint = (engine: string, ca: EngineCa) => `check it on the engine, then trust it with: ferry cert fetch ${engine} --accept ${ca.fingerprint256}`;

/** A CA that may be trusted at all: a CA certificate, valid now. Undefined, or why not. */
function unusable(ca: EngineCa, now: Date): string | undefined {
  if (!ca.isCa) return "it is not a CA certificate (basicConstraints CA:FALSE)";
  if (ca.notBefore > now) return `it is not valid before ${ca.notBefore.toISOString()}`;
  if (ca.notAfter <= now) return `it expired on ${until(ca.notAfter)}`;
  return undefined;
}

export function createCertExpiringHandler(deps: CertExpiringDeps) {
  return async (event: Received<CertExpiring, Record<never, never>>, ctx: HandlerContext): Promise<Outbound[]> => {
    const name = event.engine;
    const now = deps.clock();
    const log = ctx.log.child({ engine: name });
    const failed = (code: string, message: string, o: { reachable: boolean; served?: EngineCa | undefined; trusted?: TrustedCa | undefined }): Outbound[] => {
      log.warn({ code, served: o.served?.fingerprint256 }, message);
      return [
        ctx.emit(certFailed, {
          vm: name,
          certEngine: name,
          engine: deps.alertEngine(name, o.reachable),
          code,
          message: `engine ${name}: ${message}`.slice(0, 2000),
          step: "cert.expiring",
          attempts: ctx.delivery.deliveryCount,
          ...(o.served ? { servedFingerprint: o.served.fingerprint256 } : {}),
          ...(o.trusted?.certificates[0] ? { trustedFingerprint: o.trusted.certificates[0].fingerprint256 } : {}),
        }),
      ];
    };
    const renewed = (record: CaRecord, changed: boolean): Outbound[] => [
      ctx.emit(certRenewed, {
        engine: name,
        fingerprint: record.fingerprint,
        notAfter: record.notAfter,
        changed,
        ...(changed && record.previous ? { previous: record.previous } : {}),
        ...(changed ? { acceptedBy: record.acceptedBy } : {}),
      }),
    ];
    /** pki-resource; an unreachable engine is worth another delivery. */
    const fetch = async (url: string, caPem?: string): Promise<EngineCa> => {
      try {
        return await deps.fetchCa(url, caPem);
      } catch (err) {
        if (err instanceof CaUnreachableError) throw new TransientError("ENGINE_UNREACHABLE", err.message, { engine: name });
        throw err;
      }
    };

    const e = deps.engine(name);
    if (!e) return failed("UNKNOWN_ENGINE", "not in the config: nothing to renew", { reachable: false });
    if (e.insecure) {
      log.warn({}, "engine is configured insecure (TLS not verified): no CA to renew");
      return [];
    }
    const pinned = e.pinned ? normalFingerprint(e.pinned) : undefined;
    const isPinned = (ca: EngineCa) => pinned !== undefined && normalFingerprint(ca.fingerprint256) === pinned;

    let trusted: TrustedCa | undefined;
    let brokenFile: string | undefined;
    try {
      trusted = await deps.readTrusted(e.caPath);
    } catch (err) {
      if (!(err instanceof TrustedCaError)) throw err;
      brokenFile = err.message;
    }

    // First contact (or a file that cannot be used): trust only with consent.
    if (!trusted) {
      const served = await fetch(e.url);
      const why = brokenFile ?? `no trusted CA yet (${e.caPath} does not exist)`;
      const bad = unusable(served, now);
      if (bad) return failed("CA_INVALID", `${why}; the CA it serves, ${describe(served)}, cannot be trusted: ${bad}`, { reachable: false, served });
      if (isPinned(served)) {
        const record = await deps.store({ engine: name, ca: served, path: e.caPath, acceptedBy: "config", keepPrevious: false });
        log.info({ fingerprint: record.fingerprint }, "engine CA stored (fingerprint pinned in the config)");
        return renewed(record, true);
      }
      const pinNote = pinned ? `; the config pins sha256 ${pinned}, which it is not` : "";
      return failed("CA_NOT_TRUSTED", `${why}. It serves ${describe(served)}${pinNote}: ${acceptHint(name, served)}`, { reachable: false, served });
    }

    const trustedFp = trusted.certificates[0]!.fingerprint256;
    let served: EngineCa;
    try {
      served = await fetch(e.url, trusted.pem);
    } catch (err) {
      if (!(err instanceof CaNotVerifiedError)) throw err;
      // The engine's TLS certificate is not signed by the trusted CA: its CA was replaced (or
      // something else answers). Say what it serves, unverified, so the operator can compare.
      const other = await fetch(e.url).catch(() => undefined);
      if (other && isPinned(other) && !unusable(other, now)) {
        const record = await deps.store({ engine: name, ca: other, path: e.caPath, acceptedBy: "config", previous: trusted, keepPrevious: false });
        log.info({ fingerprint: record.fingerprint, previous: trustedFp }, "engine CA replaced by the one pinned in the config");
        return renewed(record, true);
      }
      const now2 = other ? `It now serves ${describe(other)}, which is not trusted: ${acceptHint(name, other)}` : "What it serves now could not be read.";
      return failed("CA_NOT_TRUSTED", `its TLS certificate does not verify with the trusted CA (sha256 ${trustedFp}; ${err.tlsCode}): the engine CA was replaced, or this is not the engine. ${now2}`, {
        reachable: false,
        served: other,
        trusted,
      });
    }

    if (served.fingerprint256 !== trustedFp) {
      const bad = unusable(served, now);
      if (bad) return failed("CA_INVALID", `it serves a new CA, ${describe(served)}, that cannot be trusted: ${bad}`, { reachable: true, served, trusted });
      const chains = renews(served.certificate, trusted);
      if (!chains && !isPinned(served)) {
        return failed("CA_CHANGED", `it serves a new CA, ${describe(served)}, that does not chain to the trusted one (sha256 ${trustedFp}); refused. ${acceptHint(name, served)}`, {
          reachable: true,
          served,
          trusted,
        });
      }
      const record = await deps.store({ engine: name, ca: served, path: e.caPath, acceptedBy: chains ? "renewal" : "config", previous: trusted, keepPrevious: chains });
      log.info({ fingerprint: record.fingerprint, previous: trustedFp, acceptedBy: record.acceptedBy }, "engine CA renewed");
      return renewed(record, true);
    }

    // The engine still serves the trusted CA. Is anything about to expire that only the engine can renew?
    const reasons: string[] = [];
    const caDays = Math.floor((served.notAfter.getTime() - now.getTime()) / DAY);
    if (caDays < deps.warnDays) reasons.push(`the CA (sha256 ${trustedFp}) expires in ${caDays} days (${until(served.notAfter)}) and the engine still serves it`);
    const status = await deps.status(name);
    for (const r of status.due) if (!r.startsWith("the trusted CA ") && !r.startsWith("the engine serves another CA")) reasons.push(r);
    if (reasons.length) {
      return failed(
        caDays < deps.warnDays ? "CA_EXPIRING" : "CERT_EXPIRING",
        `${reasons.join("; ")}. Renew it on the engine (engine-setup; hosts: Enroll Certificate); Ferry takes a renewed CA that chains to the trusted one by itself`,
        { reachable: true, served, trusted },
      );
    }
    log.info({ fingerprint: trustedFp, daysLeft: caDays }, "engine CA checked: current");
    return renewed(
      {
        engine: name,
        fingerprint: trustedFp,
        subject: served.subject,
        notBefore: served.notBefore.toISOString(),
        notAfter: served.notAfter.toISOString(),
        file: e.caPath,
        acceptedBy: "unchanged",
        acceptedAt: now.toISOString(),
        pem: served.pem,
      },
      false,
    );
  };
}
