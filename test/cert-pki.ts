/**
 * Test helper (not a test): throwaway engine PKIs made with the openssl CLI, for the certificate
 * tests. CA A, A renewed (same key and subject, new validity: what engine-setup does), and an
 * unrelated CA B; a server certificate for 127.0.0.1/localhost from each key.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";

export interface CertSet {
  readonly caA: string;
  /** A's key and subject, another serial and validity: chains to A. */
  readonly caA2: string;
  /** Another key: does not chain to A. */
  readonly caB: string;
  readonly serverA: { cert: string; key: string };
  readonly serverB: { cert: string; key: string };
}

export async function makeCertSet(o: { days?: number; renewedDays?: number } = {}): Promise<CertSet> {
  const dir = await mkdtemp(join(tmpdir(), "ferry-cert-pki-"));
  const ssl = (...args: string[]) => execa("openssl", args, { cwd: dir });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const caExt = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"];
  try {
    await ssl("req", "-x509", ...ec, "-keyout", "a.key", "-out", "a.pem", "-days", String(o.days ?? 365), "-subj", "/O=ferry-test/CN=engine-ca-a", ...caExt);
    await ssl("req", "-x509", "-new", "-key", "a.key", "-out", "a2.pem", "-days", String(o.renewedDays ?? 3650), "-subj", "/O=ferry-test/CN=engine-ca-a", "-set_serial", "0x1234567", ...caExt);
    await ssl("req", "-x509", ...ec, "-keyout", "b.key", "-out", "b.pem", "-days", "365", "-subj", "/O=ferry-test/CN=engine-ca-b", ...caExt);
    await writeFile(join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n");
    const server = async (ca: string) => {
      await ssl("req", "-new", ...ec, "-keyout", `srv-${ca}.key`, "-out", `srv-${ca}.csr`, "-subj", "/CN=localhost");
      await ssl("x509", "-req", "-in", `srv-${ca}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-out", `srv-${ca}.pem`, "-days", "365", "-extfile", "server.ext");
      return { cert: await readFile(join(dir, `srv-${ca}.pem`), "utf8"), key: await readFile(join(dir, `srv-${ca}.key`), "utf8") };
    };
    const [caA, caA2, caB] = await Promise.all(["a.pem", "a2.pem", "b.pem"].map((f) => readFile(join(dir, f), "utf8")));
    return { caA: caA!, caA2: caA2!, caB: caB!, serverA: await server("a"), serverB: await server("b") };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
