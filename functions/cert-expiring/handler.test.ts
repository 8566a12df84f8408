import { beforeAll, describe, expect, it } from "vitest";
import { X509Certificate } from "node:crypto";
import { TransientError } from "../../contracts/errors.ts";
import { certFailed, certRenewed } from "../../contracts/mod.ts";
import { CaNotVerifiedError, CaUnreachableError, parseCaPem, type EngineCa } from "../../adapters/ovirt/mod.ts";
import type { EngineCertStatus } from "../../pipeline/cert-status.ts";
import { pemCertificates } from "../../adapters/ovirt/mod.ts";
import { alertEngineFor, type CaRecord, type TrustedCa } from "../../pipeline/trust.ts";
import { emitEvent } from "../runtime/envelope.ts";
import type { HandlerContext } from "../runtime/mod.ts";
import { makeCertSet, type CertSet } from "../../test/cert-pki.ts";
import { certExpiringFunction } from "./definition.ts";
import { createCertExpiringHandler, type CertEngine, type CertExpiringDeps } from "./handler.ts";

let pki: CertSet;
beforeAll(async () => {
  pki = await makeCertSet();
});

const ca = (pem: string): EngineCa => parseCaPem(pem, "test", "https-verified");
const trustedOf = (pem: string): TrustedCa => ({ pem, certificates: [new X509Certificate(pem)], mtimeMs: 0 });
const fp = (pem: string) => new X509Certificate(pem).fingerprint256;
const event = { id: "cert-check:prd:2025-01-31:abc", time: "2025-01-31T04:00:00Z", correlationId: "cert-check:prd:2025-01-31:abc", engine: "prd" };

function ctx(): HandlerContext {
  const log = { info() {}, warn() {}, error() {}, debug() {}, child: () => log };
  return {
    log: log as never,
    signal: new AbortController().signal,
    delivery: { fn: "cert-expiring", subject: "cert.expiring", stream: "FERRY_COMMANDS", seq: 1, deliveryCount: 1, maxDeliver: 6 },
    working() {},
    emit: (contract, body, opts) => emitEvent(event, contract, body as Record<string, unknown>, { ...opts, now: new Date("2025-01-31T04:00:01Z") }),
    publish: async () => ({ stream: "", seq: 0, duplicate: false }),
  };
}

interface World {
  trusted?: string;
  /** What pki-resource serves. */
  served: string;
  /** The engine's TLS certificate verifies with this CA's key only. */
  tlsKeyOf: string;
  pinned?: string;
  warnDays?: number;
  due?: string[];
  unreachable?: boolean;
  engines?: Record<string, CertEngine>;
}

function setup(w: World) {
  const stored: { acceptedBy: string; keepPrevious: boolean; fingerprint: string }[] = [];
  const engines: Record<string, CertEngine> = w.engines ?? {
    prd: { url: "https://prd.example", caPath: "/certs/prd-ca.pem", ...(w.pinned ? { pinned: w.pinned } : {}) },
    dr: { url: "https://dr.example", caPath: "/certs/dr-ca.pem" },
  };
  const deps: CertExpiringDeps = {
    engine: (n) => engines[n],
    alertEngine: (n, reachable) => alertEngineFor(engines, n, reachable),
    readTrusted: async () => (w.trusted ? trustedOf(w.trusted) : undefined),
    async fetchCa(_url, caPem) {
      if (w.unreachable) throw new CaUnreachableError("prd", "ECONNREFUSED");
      // Verified with caPem: only when the engine's TLS certificate comes from that CA's key.
      if (caPem && !pemCertificates(caPem).some((c) => c.publicKey.export({ type: "spki", format: "der" }).equals(new X509Certificate(w.tlsKeyOf).publicKey.export({ type: "spki", format: "der" })))) {
        throw new CaNotVerifiedError("prd", "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
      }
      return ca(w.served);
    },
    async store(o) {
      stored.push({ acceptedBy: o.acceptedBy, keepPrevious: o.keepPrevious, fingerprint: o.ca.fingerprint256 });
      const rec: CaRecord = {
        engine: o.engine, fingerprint: o.ca.fingerprint256, subject: o.ca.subject, notBefore: o.ca.notBefore.toISOString(), notAfter: o.ca.notAfter.toISOString(),
        file: o.path, acceptedBy: o.acceptedBy, acceptedAt: "2025-01-31T04:00:01.000Z", ...(o.previous ? { previous: o.previous.certificates[0]!.fingerprint256 } : {}), pem: o.ca.pem,
      };
      return rec;
    },
    status: async (name) => ({ engine: name, url: "", insecure: false, caPath: "", hosts: [], due: w.due ?? [], stateKey: "x" }) as EngineCertStatus,
    warnDays: w.warnDays ?? 30,
    clock: () => new Date(),
  };
  return { handle: createCertExpiringHandler(deps), stored, deps };
}

const run = async (w: World, e: Record<string, unknown> = event) => {
  const s = setup(w);
  const out = await s.handle(e as never, ctx());
  return { out, stored: s.stored, deps: s.deps };
};

describe("cert-expiring handler", () => {
  it("cert-expiring - first contact without consent: refused, with subject, fingerprint, expiry and the accept command; the alert goes to the other engine", async () => {
    const { out, stored } = await run({ served: pki.caA, tlsKeyOf: pki.caA });
    expect(stored).toEqual([]);
    expect(out).toHaveLength(1);
    expect(out[0]!.subject).toBe("cert.failed");
    expect(certFailed.validateOutbound(out[0]!.event).ok).toBe(true);
    expect(out[0]!.event).toMatchObject({ vm: "prd", certEngine: "prd", engine: "dr", code: "CA_NOT_TRUSTED", servedFingerprint: fp(pki.caA), step: "cert.expiring" });
    const msg = String(out[0]!.event.message);
    expect(msg).toContain("no trusted CA yet (/certs/prd-ca.pem does not exist)");
    expect(msg).toContain("CN=engine-ca-a");
    expect(msg).toContain(`ferry cert fetch prd --accept ${fp(pki.caA)}`);
  });

  it("cert-expiring - first contact with the fingerprint pinned in the config: stored, cert.renewed (acceptedBy config)", async () => {
    const { out, stored } = await run({ served: pki.caA, tlsKeyOf: pki.caA, pinned: `sha256:${fp(pki.caA).toLowerCase()}` });
    expect(stored).toEqual([{ acceptedBy: "config", keepPrevious: false, fingerprint: fp(pki.caA) }]);
    expect(out[0]!.subject).toBe("cert.renewed");
    expect(certRenewed.validateOutbound(out[0]!.event).ok).toBe(true);
    expect(out[0]!.event).toMatchObject({ engine: "prd", fingerprint: fp(pki.caA), changed: true, acceptedBy: "config" });
  });

  it("cert-expiring - a renewal (same key, fetched over TLS verified with the trusted CA) is stored without asking, the old CA named as previous", async () => {
    const { out, stored } = await run({ trusted: pki.caA, served: pki.caA2, tlsKeyOf: pki.caA2 });
    expect(stored).toEqual([{ acceptedBy: "renewal", keepPrevious: true, fingerprint: fp(pki.caA2) }]);
    expect(out[0]!.event).toMatchObject({ id: `${event.id}:cert.renewed`, engine: "prd", fingerprint: fp(pki.caA2), previous: fp(pki.caA), changed: true, acceptedBy: "renewal" });
  });

  it("cert-expiring - a new CA over verified TLS that does not chain to the trusted one: CA_CHANGED, refused, alert on the engine itself", async () => {
    // The engine still presents a certificate from A, but pki-resource serves B.
    const { out, stored } = await run({ trusted: pki.caA, served: pki.caB, tlsKeyOf: pki.caA });
    expect(stored).toEqual([]);
    expect(out[0]!.event).toMatchObject({ code: "CA_CHANGED", engine: "prd", servedFingerprint: fp(pki.caB), trustedFingerprint: fp(pki.caA) });
    expect(String(out[0]!.event.message)).toMatch(/does not chain to the trusted one .*refused\. check it on the engine, then trust it with: ferry cert fetch prd --accept /);
  });

  it("cert-expiring - a replaced CA (TLS no longer verifies): CA_NOT_TRUSTED with what it serves now, alert on another engine; a pinned fingerprint takes it", async () => {
    const refused = await run({ trusted: pki.caA, served: pki.caB, tlsKeyOf: pki.caB });
    expect(refused.stored).toEqual([]);
    expect(refused.out[0]!.event).toMatchObject({ code: "CA_NOT_TRUSTED", engine: "dr", certEngine: "prd", servedFingerprint: fp(pki.caB), trustedFingerprint: fp(pki.caA) });
    expect(String(refused.out[0]!.event.message)).toMatch(/its TLS certificate does not verify with the trusted CA \(sha256 [0-9A-F:]+; UNABLE_TO_VERIFY_LEAF_SIGNATURE\): the engine CA was replaced/);
    const pinned = await run({ trusted: pki.caA, served: pki.caB, tlsKeyOf: pki.caB, pinned: fp(pki.caB) });
    expect(pinned.stored).toEqual([{ acceptedBy: "config", keepPrevious: false, fingerprint: fp(pki.caB) }]);
    expect(pinned.out[0]!.event).toMatchObject({ changed: true, previous: fp(pki.caA) });
  });

  it("cert-expiring - the engine still serves the trusted CA: expiring → CA_EXPIRING; an engine/host certificate due → CERT_EXPIRING; else cert.renewed unchanged", async () => {
    const ca = await run({ trusted: pki.caA, served: pki.caA, tlsKeyOf: pki.caA, warnDays: 400 });
    expect(ca.out[0]!.event).toMatchObject({ code: "CA_EXPIRING", engine: "prd" });
    expect(String(ca.out[0]!.event.message)).toMatch(/the CA \(sha256 [0-9A-F:]+\) expires in 36\d days \(\d{4}-\d\d-\d\d\) and the engine still serves it/);
    const host = await run({ trusted: pki.caA, served: pki.caA, tlsKeyOf: pki.caA, due: ["the imageio certificate of 10.0.0.5:54322 expires in 3 days (2025-02-03)", "the trusted CA expires …"] });
    expect(host.out[0]!.event).toMatchObject({ code: "CERT_EXPIRING" });
    expect(String(host.out[0]!.event.message)).toContain("the imageio certificate of 10.0.0.5:54322 expires in 3 days");
    expect(String(host.out[0]!.event.message)).not.toContain("the trusted CA expires");
    const fine = await run({ trusted: pki.caA, served: pki.caA, tlsKeyOf: pki.caA });
    expect(fine.stored).toEqual([]);
    expect(fine.out[0]!.subject).toBe("cert.renewed");
    expect(fine.out[0]!.event).toMatchObject({ fingerprint: fp(pki.caA), changed: false });
    expect(fine.out[0]!.event).not.toHaveProperty("acceptedBy");
  });

  it("cert-expiring - an unreachable engine is transient; an unknown engine is answered; an insecure one is left alone", async () => {
    await expect(run({ trusted: pki.caA, served: pki.caA, tlsKeyOf: pki.caA, unreachable: true })).rejects.toBeInstanceOf(TransientError);
    const unknown = await run({ served: pki.caA, tlsKeyOf: pki.caA }, { ...event, engine: "qa" });
    expect(unknown.out[0]!.event).toMatchObject({ code: "UNKNOWN_ENGINE", vm: "qa", certEngine: "qa", engine: "prd" });
    const insecure = await run({ served: pki.caA, tlsKeyOf: pki.caA, engines: { prd: { url: "https://prd.example", caPath: "/x", insecure: true } } });
    expect(insecure.out).toEqual([]);
  });

  it("cert-expiring - a failure the handler did not answer becomes one valid cert.failed, alerting on another engine", () => {
    const { deps } = setup({ served: pki.caA, tlsKeyOf: pki.caA });
    const def = certExpiringFunction(deps);
    expect(def).toMatchObject({ name: "cert-expiring", subject: "cert.expiring", maxDeliver: 6, concurrency: 1 });
    const out = def.onFailure!(event as never, { code: "ENGINE_UNREACHABLE", message: "engine CA from https://prd.example: unreachable (ECONNREFUSED)", attempts: 6 }, ctx());
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ subject: "cert.failed", event: { vm: "prd", certEngine: "prd", engine: "dr", code: "ENGINE_UNREACHABLE", attempts: 6 } });
  });

  it("alertEngineFor - itself when reachable, else another trusted engine (the default first), else itself", () => {
    const engines = { prd: {}, dr: {}, lab: { insecure: true } };
    expect(alertEngineFor(engines, "prd", true)).toBe("prd");
    expect(alertEngineFor(engines, "prd", false)).toBe("dr");
    expect(alertEngineFor(engines, "dr", false)).toBe("prd");
    expect(alertEngineFor({ prd: {} }, "prd", false)).toBe("prd");
  });
});
