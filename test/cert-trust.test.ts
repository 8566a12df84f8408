/**
 * The run-time trust pieces on their own (no NATS): chain checks, the TLS handshake probe, the
 * atomic store, the trust store's reload (file, a newer KV record), and an engine client that
 * re-reads its CA once when TLS fails — against a lab engine whose CA is replaced.
 */
import { X509Certificate } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngineClient, EngineTlsError, parseCaPem, peerCertificate, CaUnreachableError, chainsTo } from "../adapters/ovirt/mod.ts";
import { ImageioTlsError } from "../adapters/imageio/mod.ts";
import { memoryKv } from "../adapters/nats/testing/memory-kv.ts";
import { encodeRecord } from "../adapters/nats/kv-record.ts";
import { caPathFor, caRecordKey, createTrustStore, hostRecordKey, readTrustedCa, storeTrustedCa, type CaRecord, type HostRecord } from "../pipeline/trust.ts";
import { startTestLab, type TestLab } from "../lab/test-support.ts";
import { makeCertSet, type CertSet } from "./cert-pki.ts";
import { runCertCheck } from "../cli/commands/cert.ts";

let pki: CertSet;
let dir: string;
let lab: TestLab;
let server: Server;
let serverUrl: string;

beforeAll(async () => {
  pki = await makeCertSet();
  dir = await mkdtemp(join(tmpdir(), "ferry-cert-trust-"));
  lab = await startTestLab();
  server = createServer({ cert: pki.serverA.cert, key: pki.serverA.key }, (_q, r) => r.end("ok"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  serverUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const fp = (pem: string) => new X509Certificate(pem).fingerprint256;

describe("trust - pieces", () => {
  it("chainsTo - the same CA and a renewal with the same key chain; another key does not", () => {
    const a = new X509Certificate(pki.caA);
    expect(chainsTo(a, [a])).toBe(true);
    expect(chainsTo(new X509Certificate(pki.caA2), [a])).toBe(true);
    expect(chainsTo(new X509Certificate(pki.caB), [a])).toBe(false);
    expect(chainsTo(new X509Certificate(pki.caB), [a, new X509Certificate(pki.caB)])).toBe(true);
  });

  it("peerCertificate - reads the certificate in the handshake and says whether it verifies; an unreachable port is CaUnreachableError", async () => {
    const good = await peerCertificate(serverUrl, { caPem: pki.caA });
    expect(good).toMatchObject({ host: "127.0.0.1", verified: true, subject: "CN=localhost", fingerprint256: fp(pki.serverA.cert) });
    expect(good.notAfter.getTime()).toBeGreaterThan(Date.now());
    // The renewed A (same key and subject) verifies the certificate A issued.
    expect((await peerCertificate(serverUrl, { caPem: pki.caA2 })).verified).toBe(true);
    const bad = await peerCertificate(serverUrl, { caPem: pki.caB });
    expect(bad.verified).toBe(false);
    expect(bad.verifyError).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
    await expect(peerCertificate("https://127.0.0.1:1", { timeoutMs: 2000 })).rejects.toBeInstanceOf(CaUnreachableError);
  });

  it("storeTrustedCa - file 0644 and KV record together; a KV failure leaves the old file and no temporary file", async () => {
    const path = caPathFor("prd", {}, join(dir, "ferry.json"));
    expect(path).toBe(join(dir, "certs", "prd-ca.pem"));
    const kv = memoryKv();
    const rec = await storeTrustedCa({ engine: "prd", ca: parseCaPem(pki.caA, "t", "https-verified"), path, kv, acceptedBy: "operator t@h" });
    expect(rec).toMatchObject({ engine: "prd", fingerprint: fp(pki.caA), acceptedBy: "operator t@h", file: path });
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect(fp(await readFile(path, "utf8"))).toBe(fp(pki.caA));
    // A renewal with another key keeps the old CA after the new one; a same-key renewal does not.
    const previous = (await readTrustedCa(path))!;
    await storeTrustedCa({ engine: "prd", ca: parseCaPem(pki.caB, "t", "https-verified"), path, kv, acceptedBy: "renewal", previous, keepPrevious: true });
    expect((await readTrustedCa(path))!.certificates.map((c) => c.fingerprint256)).toEqual([fp(pki.caB), fp(pki.caA)]);
    await storeTrustedCa({ engine: "prd", ca: parseCaPem(pki.caA, "t", "https-verified"), path, kv, acceptedBy: "operator t@h" });
    const failing = { ...memoryKv(), create: async () => Promise.reject(new Error("nats down")) };
    await expect(storeTrustedCa({ engine: "prd", ca: parseCaPem(pki.caA2, "t", "https-verified"), path, kv: failing, acceptedBy: "renewal" })).rejects.toThrow(/nats down/);
    expect(fp(await readFile(path, "utf8"))).toBe(fp(pki.caA));
    expect((await readdir(join(dir, "certs"))).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("trust store - reload sees a new file and tells attached clients; a newer KV record (another machine) is written to the file", async () => {
    const path = join(dir, "kv", "dr-ca.pem");
    const kv = memoryKv();
    const trust = await createTrustStore({ engines: { dr: { caPath: path } }, kv });
    expect(trust.pem("dr")).toBeUndefined();
    const seen: (string | undefined)[] = [];
    trust.attach("dr", { setCa: (p) => (seen.push(p), true) });
    const record: CaRecord = { engine: "dr", fingerprint: fp(pki.caA), subject: "x", notBefore: "", notAfter: "", file: "/elsewhere", acceptedBy: "renewal", acceptedAt: new Date().toISOString(), pem: pki.caA };
    await kv.create(caRecordKey("dr"), encodeRecord(record));
    expect(await trust.reload("dr")).toBe(true);
    expect(fp(trust.pem("dr")!)).toBe(fp(pki.caA));
    expect(fp(await readFile(path, "utf8"))).toBe(fp(pki.caA));
    expect(seen.map((p) => p && fp(p))).toEqual([fp(pki.caA)]);
    // The file changed later by hand (newer than the record): the file wins.
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(path, pki.caB);
    expect(await trust.reload("dr")).toBe(true);
    expect(fp(trust.pem("dr")!)).toBe(fp(pki.caB));
    expect(await trust.reload("dr")).toBe(false);
    trust.close();
  });

  it("trust store - an imageio TLS failure with a CA that is no longer current re-reads it once and runs again with the new one", async () => {
    const path = join(dir, "io", "prd-ca.pem");
    await storeTrustedCa({ engine: "prd", ca: parseCaPem(pki.caA, "t", "https-verified"), path, acceptedBy: "t" });
    const trust = await createTrustStore({ engines: { prd: { caPath: path } } });
    await writeFile(path, pki.caB);
    const used: string[] = [];
    const tlsError = new ImageioTlsError({ method: "OPTIONS", url: "https://h:54322/images/***" }, Object.assign(new Error("x"), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" }));
    const result = await trust.imageio("https://h:54322/images/t", trust.pem("prd"), async (ca) => {
      used.push(fp(ca!));
      if (fp(ca!) !== fp(pki.caB)) throw tlsError;
      return "done";
    });
    expect(result).toBe("done");
    expect(used).toEqual([fp(pki.caA), fp(pki.caB)]);
    // Nothing new on disk: the TLS error stands after one re-read.
    await expect(trust.imageio("https://h:54322/images/t", pki.caA, async () => Promise.reject(tlsError))).rejects.toBe(tlsError);
  });
});

describe("trust - an engine client and a replaced lab CA", () => {
  it("engine client - after the engine CA is replaced, a TLS failure re-reads the trusted file once: the new CA is used without a new client; nothing new: ENGINE_TLS", async () => {
    const path = join(dir, "lab", "prd-ca.pem");
    await storeTrustedCa({ engine: "prd", ca: parseCaPem(lab.prd.caPem, "t", "https-verified"), path, acceptedBy: "t" });
    const trust = await createTrustStore({ engines: { prd: { caPath: path } } });
    const client = createEngineClient({ url: lab.prd.url, user: lab.prd.user, password: lab.prd.password, caPem: trust.pem("prd"), refreshCa: trust.refresher("prd"), retryDelayMs: 50 });
    trust.attach("prd", client);
    try {
      expect((await client.version()).major).toBe(4);
      await lab.prd.control.rotateCa();
      // The file is updated (as ferry cert fetch --accept does), nobody tells the client.
      await writeFile(path, lab.prd.caPem);
      expect((await client.version()).major).toBe(4);
      expect(fp(client.caPem!)).toBe(fp(lab.prd.caPem));
      // Replaced again, the file not updated: one re-read, then the TLS error.
      await lab.prd.control.rotateCa();
      const err = await client.vms.list().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EngineTlsError);
    } finally {
      await client.close();
      trust.close();
    }
  });
});

describe("expiry watch - ferry cert check's decisions (runCertCheck), against an https engine stand-in", () => {
  it("runCertCheck - cert.expiring for a missing CA, for an engine certificate due while its CA is not, for an imageio host certificate due; nothing for a current engine; once a day per state", async () => {
    // An engine: serverA's certificate (365 days) in the handshake, CA A (3650 days) at pki-resource.
    const long = await makeCertSet({ days: 3650 });
    const engine = createServer({ cert: long.serverA.cert, key: long.serverA.key }, (_q, r) => r.end(long.caA));
    await new Promise<void>((r) => engine.listen(0, "127.0.0.1", r));
    const port = (engine.address() as AddressInfo).port;
    const url = `https://127.0.0.1:${port}`;
    try {
      const trustedPath = join(dir, "watch", "trusted-ca.pem");
      await storeTrustedCa({ engine: "trusted", ca: parseCaPem(long.caA, "t", "https-verified"), path: trustedPath, acceptedBy: "t" });
      const engines = {
        missing: { url, caPath: join(dir, "watch", "missing-ca.pem"), insecure: false },
        trusted: { url, caPath: trustedPath, insecure: false },
      };
      const published: { subject: string; event: Record<string, unknown> & { id: string } }[] = [];
      const seenIds = new Set<string>();
      const publish = async (subject: string, event: Record<string, unknown> & { id: string }) => {
        published.push({ subject, event });
        const duplicate = seenIds.has(event.id);
        seenIds.add(event.id);
        return { duplicate, seq: published.length };
      };
      const now = new Date();

      // warnDays 30: the CA is missing for one engine; the other is current (certificate 364+ days, CA 3649+).
      const first = await runCertCheck({ engines, warnDays: 30, publish, now });
      expect(first.find((r) => r.engine === "missing")).toMatchObject({ status: "published", due: [expect.stringMatching(/^no trusted CA \(.*missing-ca\.pem does not exist\)$/)] });
      expect(first.find((r) => r.engine === "trusted")).toMatchObject({ status: "ok", due: [] });
      expect(published.map((x) => [x.subject, x.event.engine])).toEqual([["cert.expiring", "missing"]]);
      expect(published[0]!.event).toMatchObject({ id: expect.stringMatching(/^cert-check:missing:\d{4}-\d\d-\d\d:[0-9a-f]{12}$/), correlationId: published[0]!.event.id });

      // warnDays 400: the engine's 365-day certificate is due, its 3650-day CA is not.
      published.length = 0;
      const engineDue = await runCertCheck({ engines, warnDays: 400, publish, now, only: "trusted" });
      expect(engineDue).toEqual([expect.objectContaining({ engine: "trusted", status: "published", due: [expect.stringMatching(/^the engine's certificate expires in 36[45] days \(/)] })]);
      expect(published.map((x) => x.event.engine)).toEqual(["trusted"]);
      // The same state again the same day: the same message id, a JetStream duplicate.
      expect((await runCertCheck({ engines, warnDays: 400, publish, now, only: "trusted" }))[0]).toMatchObject({ status: "duplicate", id: engineDue[0]!.id });

      // An imageio host Ferry used (KV ferry-certs host record), reachable now: its certificate is looked at in a handshake.
      const kv = memoryKv();
      const host: HostRecord = { engine: "trusted", host: "127.0.0.1", port, subject: "CN=localhost", fingerprint: fp(long.serverA.cert), notAfter: new Date(Date.now() + 365 * 86_400_000).toISOString(), verified: true, seenAt: now.toISOString() };
      await kv.create(hostRecordKey("trusted", "127.0.0.1", port), encodeRecord(host));
      published.length = 0;
      const hostDue = await runCertCheck({ engines, warnDays: 400, publish, now, only: "trusted", kv });
      expect(hostDue[0]!.due).toEqual([expect.stringMatching(/^the engine's certificate expires in/), expect.stringMatching(new RegExp(`^the imageio certificate of 127\\.0\\.0\\.1:${port} expires in 36[45] days \\(`))]);
      expect(hostDue[0]!.status).toBe("published");
      expect(hostDue[0]!.id).not.toBe(engineDue[0]!.id);
    } finally {
      await new Promise<void>((r) => engine.close(() => r()));
    }
  });
});
