/**
 * Fetch the engine CA from pki-resource (ovirt-api.md §3): no authentication, plain HTTP works,
 * which is how a client bootstraps trust. Over HTTPS the server cannot be verified before we
 * have its CA, unless a CA is already known (`caPem`, e.g. to check a rotation); the result says
 * which, and the operator compares the fingerprint.
 */
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { checkServerIdentity, connect as tlsConnect } from "node:tls";
import { Agent, request } from "undici";
import { EngineCaError } from "./errors.ts";
import { isTlsFailure, parseEngineUrl } from "./transport.ts";

/** The https answer did not verify with the CA already trusted (`caPem`): the engine's certificate is not signed by it. */
export class CaNotVerifiedError extends EngineCaError {
  readonly tlsCode: string;
  constructor(engine: string, tlsCode: string) {
    super(engine, `TLS verification with the known CA failed (${tlsCode})`);
    this.tlsCode = tlsCode;
  }
}

/** The engine could not be reached (connection refused, timeout, DNS): worth trying again later. */
export class CaUnreachableError extends EngineCaError {
  constructor(engine: string, detail: string) {
    super(engine, `unreachable (${detail})`);
  }
}

export const PKI_RESOURCE_PATH = "/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA";

export interface EngineCa {
  /** The PEM text as served (all certificates in it), normalised to end with a newline. */
  readonly pem: string;
  /** The first certificate of the PEM: the engine CA. */
  readonly certificate: X509Certificate;
  /** SHA-256 fingerprint, colon-separated upper-case hex (as `openssl x509 -fingerprint -sha256`). */
  readonly fingerprint256: string;
  readonly subject: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** basicConstraints CA:TRUE. */
  readonly isCa: boolean;
  /** How the answer was protected: plain http, https verified with a known CA, or https not verified. */
  readonly transport: "http" | "https-verified" | "https-unverified";
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const MAX_BYTES = 256 * 1024;

/** Parses PEM text into an EngineCa (the first certificate is the CA). */
export function parseCaPem(pemText: string, engine: string, transport: EngineCa["transport"]): EngineCa {
  const blocks = pemText.match(PEM_BLOCK);
  if (!blocks?.length) throw new EngineCaError(engine, "the answer holds no PEM certificate");
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(blocks[0]!);
  } catch (err) {
    throw new EngineCaError(engine, `the certificate does not parse: ${(err as Error).message}`);
  }
  return {
    pem: `${blocks.join("\n")}\n`,
    certificate,
    fingerprint256: certificate.fingerprint256,
    subject: certificate.subject.replace(/\n/g, ", "),
    notBefore: new Date(certificate.validFrom),
    notAfter: new Date(certificate.validTo),
    isCa: certificate.ca,
    transport,
  };
}

export interface FetchEngineCaOptions {
  /** A CA already trusted for this engine: the HTTPS answer is then verified with it. */
  readonly caPem?: string | undefined;
  readonly timeoutMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** GET pki-resource (ca-certificate, X509-PEM-CA) from the engine at `engineUrl` (http:// or https://). */
export async function fetchEngineCa(engineUrl: string, o: FetchEngineCaOptions = {}): Promise<EngineCa> {
  const { origin, prefix, display } = parseEngineUrl(engineUrl);
  const https = origin.startsWith("https:");
  const timeout = o.timeoutMs ?? 30_000;
  const dispatcher = new Agent({
    connect: {
      timeout,
      // Trust on first use: without a CA there is nothing to verify against yet.
      rejectUnauthorized: https && o.caPem !== undefined,
      ...(o.caPem ? { ca: o.caPem } : {}),
    },
  });
  try {
    let text: string;
    try {
      const res = await request(`${origin}${prefix}${PKI_RESOURCE_PATH}`, {
        dispatcher,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        signal: o.signal ?? null,
      });
      const length = Number(res.headers["content-length"] ?? 0);
      if (length > MAX_BYTES) {
        await res.body.dump();
        throw new EngineCaError(display, `the answer is too large (${length} bytes)`);
      }
      text = await res.body.text();
      if (res.statusCode !== 200) {
        throw new EngineCaError(display, `HTTP ${res.statusCode}: ${text.slice(0, 200).trim()}`);
      }
    } catch (err) {
      if (o.signal?.aborted) throw o.signal.reason;
      if (err instanceof EngineCaError) throw err;
      const code = (err as { code?: unknown }).code;
      const detail = typeof code === "string" ? code : (err as Error).message;
      if (isTlsFailure(err)) throw new CaNotVerifiedError(display, detail);
      throw new CaUnreachableError(display, detail);
    }
    if (text.length > MAX_BYTES) throw new EngineCaError(display, "the answer is too large");
    return parseCaPem(text, display, !https ? "http" : o.caPem ? "https-verified" : "https-unverified");
  } finally {
    await dispatcher.close();
  }
}

/** Every certificate of a PEM bundle, in order (empty when there is none or one does not parse). */
export function pemCertificates(pemText: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const block of pemText.match(PEM_BLOCK) ?? []) {
    try {
      out.push(new X509Certificate(block));
    } catch {
      return [];
    }
  }
  return out;
}

/**
 * Does `candidate` chain to one of the `trusted` certificates: the same certificate, or one
 * signed with a trusted certificate's key (a CA renewed with its key kept, as engine-setup does,
 * or a new CA cross-signed by the old one)? A signature only the trusted key can make, so a
 * fingerprint that changed this way is a renewal, not a replacement.
 */
export function chainsTo(candidate: X509Certificate, trusted: readonly X509Certificate[]): boolean {
  return trusted.some((t) => {
    if (t.fingerprint256 === candidate.fingerprint256) return true;
    try {
      return candidate.verify(t.publicKey);
    } catch {
      return false;
    }
  });
}

/** A certificate as a TLS server presented it (ovirt-engine's, or an imageio daemon's). */
export interface PeerCertificate {
  readonly host: string;
  readonly port: number;
  readonly subject: string;
  readonly issuer: string;
  readonly fingerprint256: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The chain verifies with the CA given (and the name matches the host). */
  readonly verified: boolean;
  /** Why it does not verify (an OpenSSL code such as UNABLE_TO_VERIFY_LEAF_SIGNATURE), when it does not. */
  readonly verifyError?: string | undefined;
}

/**
 * Open a TLS connection to `url`'s host and port only to read the certificate it presents (no
 * HTTP request): its subject and expiry, and whether it verifies with `caPem`. A connection that
 * cannot be made throws CaUnreachableError; a certificate that does not verify is still returned.
 */
export async function peerCertificate(url: string, o: { caPem?: string | undefined; timeoutMs?: number | undefined; signal?: AbortSignal | undefined } = {}): Promise<PeerCertificate> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new EngineCaError(url, "not a URL");
  }
  if (u.protocol !== "https:") throw new EngineCaError(u.origin, "not an https URL");
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const port = Number(u.port || 443);
  const timeout = o.timeoutMs ?? 10_000;
  return await new Promise<PeerCertificate>((resolveP, rejectP) => {
    const socket = tlsConnect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: host }),
      ...(o.caPem ? { ca: o.caPem } : {}),
      rejectUnauthorized: false,
    });
    const done = (err: Error | undefined, value?: PeerCertificate) => {
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      if (err) rejectP(err);
      else resolveP(value!);
    };
    const onAbort = () => done(o.signal!.reason instanceof Error ? o.signal!.reason : new Error("aborted"));
    const timer = setTimeout(() => done(new CaUnreachableError(`${host}:${port}`, `no TLS handshake within ${timeout} ms`)), timeout);
    o.signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("error", (err: Error) => {
      const code = (err as { code?: unknown }).code;
      done(new CaUnreachableError(`${host}:${port}`, typeof code === "string" ? code : err.message));
    });
    socket.once("secureConnect", () => {
      const x = socket.getPeerX509Certificate();
      if (!x) return done(new EngineCaError(`${host}:${port}`, "the server presented no certificate"));
      const nameError = checkServerIdentity(host, x.toLegacyObject());
      const chainError = socket.authorized ? undefined : String(socket.authorizationError ?? "UNTRUSTED");
      const verifyError = chainError ?? (nameError ? ((nameError as { code?: string }).code ?? "ERR_TLS_CERT_ALTNAME_INVALID") : undefined);
      done(undefined, {
        host,
        port,
        subject: x.subject.replace(/\n/g, ", "),
        issuer: x.issuer.replace(/\n/g, ", "),
        fingerprint256: x.fingerprint256,
        notBefore: new Date(x.validFrom),
        notAfter: new Date(x.validTo),
        verified: verifyError === undefined,
        ...(verifyError ? { verifyError } : {}),
      });
    });
  });
}
