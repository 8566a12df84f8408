import { execFile } from "node:child_process";
import { randomBytes, X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * A lab engine's PKI: its own CA and a server certificate signed by it for 127.0.0.1/localhost,
 * made with the openssl CLI (node:crypto cannot issue certificates). RSA like a real engine, so
 * the OPENSSH-PUBKEY format of pki-resource has something real to encode.
 */
export interface LabPki {
  caPem: string;
  caKeyPem: string;
  certPem: string;
  keyPem: string;
  /** Files on disk (for `--ca FILE` and curl). */
  caFile: string;
  certFile: string;
  keyFile: string;
  fingerprint256: string;
  notAfter: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run("openssl", args, { cwd });
}

/**
 * Create (or replace, for a CA rotation) the CA and server certificate under `dir`.
 *
 * `renew` (a rotation that chains, as engine-setup renews the engine CA): the new CA certificate
 * keeps the previous generation's key and subject with a new validity and serial, so it is
 * signed by the key Ferry already trusts. Without it (a replacement) the CA gets a new key and a
 * new subject, and nothing signed by the old CA verifies with it, or the other way round.
 */
export async function createPki(dir: string, o: { name: string; days?: number; generation?: number; renew?: LabPki }): Promise<LabPki> {
  await mkdir(dir, { recursive: true });
  const gen = o.generation ?? 1;
  const days = String(o.days ?? 365);
  const caKey = join(dir, `ca-${gen}.key`);
  const caCert = join(dir, `ca-${gen}.pem`);
  const key = join(dir, `engine-${gen}.key`);
  const csr = join(dir, `engine-${gen}.csr`);
  const cert = join(dir, `engine-${gen}.pem`);
  const ext = join(dir, `engine-${gen}.ext`);
  const subject = o.renew ? opensslSubject(new X509Certificate(o.renew.caPem).subject) : `/C=US/O=ferry-lab/CN=${o.name}-ca-${gen}.lab`;
  if (o.renew) await writeFile(caKey, o.renew.caKeyPem, { mode: 0o600 });
  else await openssl(["genrsa", "-out", caKey, "2048"], dir);
  await openssl(
    ["req", "-x509", "-new", "-key", caKey, "-sha256", "-days", days, "-subj", subject, "-set_serial", `0x${randomBytes(8).toString("hex")}`, "-out", caCert],
    dir,
  );
  await openssl(["genrsa", "-out", key, "2048"], dir);
  await openssl(["req", "-new", "-key", key, "-subj", `/C=US/O=ferry-lab/CN=localhost`, "-out", csr], dir);
  await writeFile(
    ext,
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "",
    ].join("\n"),
  );
  await openssl(
    ["x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-CAcreateserial", "-sha256", "-days", days, "-extfile", ext, "-out", cert],
    dir,
  );
  const pki = await loadPki(caCert, caKey, cert, key);
  // Stable names point at the current generation (what `ferry lab up` prints).
  await writeFile(join(dir, "ca.pem"), pki.caPem);
  await writeFile(join(dir, "current.json"), JSON.stringify({ generation: gen }));
  return { ...pki, caFile: join(dir, "ca.pem") };
}

/**
 * The PKI a restarted engine had (same CA, same certificates), else a new one: a restart keeps
 * what clients already trust. `pki/current.json` names the generation in use (rotateCa moves it).
 */
export async function loadOrCreatePki(dir: string, o: { name: string; days?: number }): Promise<{ pki: LabPki; generation: number }> {
  const current = join(dir, "current.json");
  if (existsSync(current)) {
    const { generation } = JSON.parse(await readFile(current, "utf8")) as { generation: number };
    const pki = await loadPki(join(dir, `ca-${generation}.pem`), join(dir, `ca-${generation}.key`), join(dir, `engine-${generation}.pem`), join(dir, `engine-${generation}.key`));
    return { pki: { ...pki, caFile: join(dir, "ca.pem") }, generation };
  }
  const pki = await createPki(dir, { name: o.name, generation: 1, ...(o.days ? { days: o.days } : {}) });
  return { pki, generation: 1 };
}

/** `C=US\nO=ferry-lab\nCN=x` (X509Certificate.subject) → `/C=US/O=ferry-lab/CN=x` (openssl -subj). */
function opensslSubject(subject: string): string {
  return `/${subject.split("\n").join("/")}`;
}

async function loadPki(caFile: string, caKeyFile: string, certFile: string, keyFile: string): Promise<LabPki> {
  const [caPem, caKeyPem, certPem, keyPem] = await Promise.all([
    readFile(caFile, "utf8"),
    readFile(caKeyFile, "utf8"),
    readFile(certFile, "utf8"),
    readFile(keyFile, "utf8"),
  ]);
  const x = new X509Certificate(certPem);
  return { caPem, caKeyPem, certPem, keyPem, caFile, certFile, keyFile, fingerprint256: x.fingerprint256, notAfter: x.validTo };
}

/** `ssh-rsa AAAA...` of a certificate's RSA public key (pki-resource format=OPENSSH-PUBKEY). */
export function opensshPublicKey(certPem: string, comment = ""): string {
  const jwk = new X509Certificate(certPem).publicKey.export({ format: "jwk" }) as { n?: string; e?: string };
  if (!jwk.n || !jwk.e) throw new Error("not an RSA key");
  const mpint = (b64url: string) => {
    let b = Buffer.from(b64url, "base64url");
    if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
    return b;
  };
  const str = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const blob = Buffer.concat([str(Buffer.from("ssh-rsa")), str(mpint(jwk.e)), str(mpint(jwk.n))]);
  return `ssh-rsa ${blob.toString("base64")}${comment ? ` ${comment}` : ""}\n`;
}
