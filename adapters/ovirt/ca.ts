/**
 * Fetch the engine CA from pki-resource (ovirt-api.md §3): no authentication, plain HTTP works,
 * which is how a client bootstraps trust. Over HTTPS the server cannot be verified before we
 * have its CA, unless a CA is already known (`caPem`, e.g. to check a rotation); the result says
 * which, and the operator compares the fingerprint.
 */
import { X509Certificate } from "node:crypto";
import { Agent, request } from "undici";
import { EngineCaError } from "./errors.ts";
import { isTlsFailure, parseEngineUrl } from "./transport.ts";

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
      const why = isTlsFailure(err) ? "TLS verification with the known CA failed" : "unreachable";
      throw new EngineCaError(display, `${why} (${typeof code === "string" ? code : (err as Error).message})`);
    }
    if (text.length > MAX_BYTES) throw new EngineCaError(display, "the answer is too large");
    return parseCaPem(text, display, !https ? "http" : o.caPem ? "https-verified" : "https-unverified");
  } finally {
    await dispatcher.close();
  }
}
