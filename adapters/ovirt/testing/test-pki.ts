/**
 * Throwaway PKI for unit tests of the TLS clients: a CA, a server certificate for 127.0.0.1 and
 * localhost signed by it, and an unrelated second CA (to test rejection). Made with the openssl
 * CLI (argv arrays) in a fresh temp dir that is removed afterwards.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";

export interface TestPki {
  readonly caPem: string;
  readonly otherCaPem: string;
  readonly cert: string;
  readonly key: string;
}

async function makeCa(dir: string, name: string): Promise<{ pem: string; keyPath: string; pemPath: string }> {
  const keyPath = join(dir, `${name}.key`);
  const pemPath = join(dir, `${name}.pem`);
  await execa("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyPath, "-out", pemPath, "-days", "2", "-subj", `/CN=${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return { pem: await readFile(pemPath, "utf8"), keyPath, pemPath };
}

export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), "ferry-pki-"));
  try {
    const ca = await makeCa(dir, "ferry-test-ca");
    const other = await makeCa(dir, "ferry-other-ca");
    const key = join(dir, "server.key");
    const csr = join(dir, "server.csr");
    const crt = join(dir, "server.crt");
    const ext = join(dir, "server.ext");
    await writeFile(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n");
    await execa("openssl", [
      "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1",
    ]);
    await execa("openssl", [
      "x509", "-req", "-in", csr, "-CA", ca.pemPath, "-CAkey", ca.keyPath, "-CAcreateserial",
      "-out", crt, "-days", "2", "-extfile", ext,
    ]);
    return { caPem: ca.pem, otherCaPem: other.pem, cert: await readFile(crt, "utf8"), key: await readFile(key, "utf8") };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
