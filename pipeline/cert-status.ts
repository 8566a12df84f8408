/**
 * What an engine's certificates look like from here, for the expiry watch (`ferry cert check`,
 * `ferry schedule --daemon`), `ferry cert list`, `ferry doctor` and the cert-expiring function:
 * the CA Ferry trusts (its file), the CA the engine serves (pki-resource, over TLS verified with
 * the trusted CA when it verifies), the engine's own certificate and the imageio hosts' (KV
 * records of the hosts transfers used, each checked again in a TLS handshake), with days left,
 * and the reasons, if any, to ask for a renewal (`due`).
 */
import { createHash } from "node:crypto";
import { CaNotVerifiedError, fetchEngineCa, peerCertificate, type EngineCa } from "../adapters/ovirt/mod.ts";
import type { KvLike } from "../adapters/nats/kv-record.ts";
import { readCaRecord, readHostRecords, readTrustedCa, renews, type CaRecord, type TrustedCa } from "./trust.ts";

const DAY = 86_400_000;

export interface CertView {
  readonly subject: string;
  readonly fingerprint: string;
  readonly notAfter: string;
  readonly daysLeft: number;
}

export interface HostCertView extends CertView {
  readonly host: string;
  readonly port: number;
  /** Verified with the trusted CA, in the handshake just made (or when last seen). */
  readonly verified: boolean;
  /** A handshake just now reached it; false: the recorded certificate of `seenAt`. */
  readonly live: boolean;
  readonly seenAt: string;
  readonly problem?: string | undefined;
}

export interface EngineCertStatus {
  readonly engine: string;
  readonly url: string;
  readonly insecure: boolean;
  /** The trusted CA's file (caFile, or certs/<engine>-ca.pem). */
  readonly caPath: string;
  readonly trusted?: (CertView & { readonly certificates: number }) | undefined;
  readonly trustedProblem?: string | undefined;
  /** The KV record of the accepted CA. */
  readonly record?: Pick<CaRecord, "fingerprint" | "acceptedBy" | "acceptedAt"> | undefined;
  /** What pki-resource serves now; `verified`: fetched over TLS verified with the trusted CA; `chains`: renews the trusted CA. */
  readonly served?: (CertView & { readonly verified: boolean; readonly chains: boolean }) | undefined;
  readonly servedProblem?: string | undefined;
  readonly engineCert?: (CertView & { readonly verified: boolean; readonly verifyError?: string | undefined }) | undefined;
  readonly engineProblem?: string | undefined;
  readonly hosts: readonly HostCertView[];
  /** Why a renewal is asked for (cert.expiring); empty: nothing to do. */
  readonly due: readonly string[];
  /** Short digest of what was seen (fingerprints, verification), so one state is asked about once. */
  readonly stateKey: string;
}

export interface StatusOptions {
  readonly warnDays: number;
  readonly kv?: KvLike | undefined;
  readonly now?: Date | undefined;
  readonly timeoutMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

export function daysLeft(notAfter: Date | string, now: Date): number {
  return Math.floor((new Date(notAfter).getTime() - now.getTime()) / DAY);
}

function view(x: { subject: string; fingerprint256: string; notAfter: Date }, now: Date): CertView {
  return { subject: x.subject, fingerprint: x.fingerprint256, notAfter: x.notAfter.toISOString(), daysLeft: daysLeft(x.notAfter, now) };
}

const when = (v: CertView) => `in ${v.daysLeft} day${v.daysLeft === 1 ? "" : "s"} (${v.notAfter.slice(0, 10)})`;
const expiring = (v: CertView, warnDays: number) => (v.daysLeft < 0 ? `expired on ${v.notAfter.slice(0, 10)}` : v.daysLeft < warnDays ? `expires ${when(v)}` : undefined);

/** The certificates of one engine as seen from here now, and whether to ask for a renewal. */
export async function engineCertStatus(
  engine: string,
  e: { readonly url: string; readonly caPath: string; readonly insecure?: boolean | undefined },
  o: StatusOptions,
): Promise<EngineCertStatus> {
  const now = o.now ?? new Date();
  const timeoutMs = o.timeoutMs ?? 10_000;
  const net = { timeoutMs, signal: o.signal };
  const due: string[] = [];

  let trusted: TrustedCa | undefined;
  let trustedProblem: string | undefined;
  try {
    trusted = await readTrustedCa(e.caPath);
    if (!trusted) trustedProblem = `no trusted CA (${e.caPath} does not exist)`;
  } catch (err) {
    trustedProblem = (err as Error).message;
  }
  const first = trusted?.certificates[0];
  const trustedView = first ? { ...view({ subject: first.subject.replace(/\n/g, ", "), fingerprint256: first.fingerprint256, notAfter: new Date(first.validTo) }, now), certificates: trusted!.certificates.length } : undefined;
  const record = o.kv ? await readCaRecord(o.kv, engine).catch(() => undefined) : undefined;

  let engineCert: EngineCertStatus["engineCert"];
  let engineProblem: string | undefined;
  try {
    const peer = await peerCertificate(e.url, { caPem: trusted?.pem, ...net });
    engineCert = { ...view(peer, now), verified: peer.verified, ...(peer.verifyError ? { verifyError: peer.verifyError } : {}) };
  } catch (err) {
    engineProblem = (err as Error).message;
  }

  let served: EngineCertStatus["served"];
  let servedProblem: string | undefined;
  let ca: EngineCa | undefined;
  try {
    // Verified with the trusted CA when there is one and the engine's certificate verifies; else
    // unverified, only to say what the engine serves (never trusted from here).
    const verify = trusted && engineCert?.verified;
    try {
      ca = await fetchEngineCa(e.url, { ...(verify ? { caPem: trusted!.pem } : {}), ...net });
    } catch (err) {
      if (!(err instanceof CaNotVerifiedError)) throw err;
      ca = await fetchEngineCa(e.url, net);
    }
    served = { ...view(ca, now), verified: ca.transport === "https-verified", chains: !!trusted && renews(ca.certificate, trusted) };
  } catch (err) {
    servedProblem = (err as Error).message;
  }

  const hosts: HostCertView[] = [];
  for (const h of o.kv ? await readHostRecords(o.kv, engine).catch(() => []) : []) {
    try {
      const peer = await peerCertificate(`https://${h.host.includes(":") ? `[${h.host}]` : h.host}:${h.port}`, { caPem: trusted?.pem, timeoutMs: Math.min(timeoutMs, 3000), signal: o.signal });
      hosts.push({ ...view(peer, now), host: h.host, port: h.port, verified: peer.verified, live: true, seenAt: now.toISOString() });
    } catch (err) {
      hosts.push({ subject: h.subject, fingerprint: h.fingerprint, notAfter: h.notAfter, daysLeft: daysLeft(h.notAfter, now), host: h.host, port: h.port, verified: h.verified, live: false, seenAt: h.seenAt, problem: (err as Error).message });
    }
  }

  if (!e.insecure) {
    if (!trusted) due.push(trustedProblem ?? "no trusted CA");
    if (trustedView) {
      const x = expiring(trustedView, o.warnDays);
      if (x) due.push(`the trusted CA ${x}`);
    }
    if (trusted && engineCert && !engineCert.verified) due.push(`the engine's certificate does not verify with the trusted CA (${engineCert.verifyError ?? "untrusted"})`);
    if (engineCert) {
      const x = expiring(engineCert, o.warnDays);
      if (x) due.push(`the engine's certificate ${x}`);
    }
    if (trustedView && served && served.fingerprint !== trustedView.fingerprint) due.push(`the engine serves another CA (sha256 ${served.fingerprint})`);
    // Only hosts reached now count: a host gone (or its old port) says nothing about today.
    for (const h of hosts.filter((x) => x.live)) {
      const x = expiring(h, o.warnDays);
      if (x) due.push(`the imageio certificate of ${h.host}:${h.port} ${x}`);
      if (trusted && !h.verified) due.push(`the imageio certificate of ${h.host}:${h.port} does not verify with the trusted CA`);
    }
  }

  const seen = [trustedView?.fingerprint, served?.fingerprint, engineCert?.fingerprint, engineCert?.verified, ...hosts.filter((h) => h.live).map((h) => `${h.fingerprint}:${h.verified}`)];
  const stateKey = createHash("sha256").update(JSON.stringify(seen)).digest("hex").slice(0, 12);
  return {
    engine,
    url: e.url,
    insecure: e.insecure === true,
    caPath: e.caPath,
    ...(trustedView ? { trusted: trustedView } : {}),
    ...(trustedProblem ? { trustedProblem } : {}),
    ...(record ? { record: { fingerprint: record.fingerprint, acceptedBy: record.acceptedBy, acceptedAt: record.acceptedAt } } : {}),
    ...(served ? { served } : {}),
    ...(servedProblem ? { servedProblem } : {}),
    ...(engineCert ? { engineCert } : {}),
    ...(engineProblem ? { engineProblem } : {}),
    hosts,
    due,
    stateKey,
  };
}

/** The message id of one day's cert.expiring for one engine in one state: the same state is asked about once a day. */
export function certExpiringId(s: Pick<EngineCertStatus, "engine" | "stateKey">, now: Date): string {
  return `cert-check:${s.engine}:${now.toISOString().slice(0, 10)}:${s.stateKey}`;
}
