/**
 * `ferry cert fetch <engine-url> [--out FILE] [--json]`: download the engine CA from pki-resource
 * and print its fingerprint and expiry, so an operator can check it before trusting it.
 */
import { chmod, readFile, rename, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { PermanentError } from "../../contracts/errors.ts";
import { fetchEngineCa, type EngineCa } from "../../adapters/ovirt/mod.ts";
import { ExitCode, type Command, type CommandIO } from "../command.ts";

const usage = `Usage: ferry cert fetch <engine-url> [--out FILE] [--json]

Downloads the engine CA certificate from
  <engine-url>/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA
and prints its SHA-256 fingerprint, subject and expiry (notAfter).

Over https the answer cannot be verified before the CA is known: compare the fingerprint with the
one on the engine (openssl x509 -in /etc/pki/ovirt-engine/ca.pem -noout -fingerprint -sha256).

Options:
  --out FILE   also write the PEM to FILE (replaced atomically)
  --ca FILE    a CA already trusted for this engine: verify the https answer with it
  --json       print {engine, subject, fingerprint256, notBefore, notAfter, daysLeft, isCa, transport, out} as JSON
  -h, --help   this text
`;

function daysLeft(ca: EngineCa, now = Date.now()): number {
  return Math.floor((ca.notAfter.getTime() - now) / 86_400_000);
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  // The CA certificate is public; 0644 like /etc/pki/ovirt-engine/ca.pem.
  await writeFile(tmp, text, { mode: 0o644 });
  await chmod(tmp, 0o644); // whatever the umask
  await rename(tmp, path);
}

async function fetchCommand(args: string[], io: CommandIO): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { out: { type: "string" }, ca: { type: "string" }, json: { type: "boolean", default: false } },
    });
  } catch (err) {
    io.stderr.write(`ferry cert fetch: ${(err as Error).message}\n${usage}`);
    return ExitCode.usage;
  }
  const [engineUrl, ...extra] = parsed.positionals;
  if (!engineUrl || extra.length > 0) {
    io.stderr.write(`ferry cert fetch: expected exactly one <engine-url>\n${usage}`);
    return ExitCode.usage;
  }
  let caPem: string | undefined;
  if (parsed.values.ca) {
    try {
      caPem = await readFile(resolve(io.cwd, parsed.values.ca), "utf8");
    } catch (err) {
      io.stderr.write(`ferry cert fetch: cannot read --ca: ${(err as Error).message}\n`);
      return ExitCode.invalid;
    }
  }
  let ca: EngineCa;
  try {
    ca = await fetchEngineCa(engineUrl, { caPem, signal: io.signal });
  } catch (err) {
    io.stderr.write(`ferry cert fetch: ${(err as Error).message}\n`);
    const code = (err as { code?: string }).code;
    if (code === "ENGINE_CONFIG") return ExitCode.usage;
    return err instanceof PermanentError && /no PEM|does not parse|too large/.test((err as Error).message)
      ? ExitCode.invalid
      : ExitCode.unavailable;
  }
  const out = parsed.values.out ? resolve(io.cwd, parsed.values.out) : undefined;
  if (out) await writeAtomic(out, ca.pem);
  const left = daysLeft(ca);
  if (parsed.values.json) {
    io.stdout.write(
      `${JSON.stringify({
        engine: engineUrl,
        subject: ca.subject,
        fingerprint256: ca.fingerprint256,
        notBefore: ca.notBefore.toISOString(),
        notAfter: ca.notAfter.toISOString(),
        daysLeft: left,
        isCa: ca.isCa,
        transport: ca.transport,
        out: out ?? null,
      })}\n`,
    );
  } else {
    const lines = [
      `engine:      ${engineUrl}`,
      `subject:     ${ca.subject}`,
      `sha256:      ${ca.fingerprint256}`,
      `not before:  ${ca.notBefore.toISOString()}`,
      `not after:   ${ca.notAfter.toISOString()} (${left} days left)`,
      ...(out ? [`saved to:    ${out}`] : []),
    ];
    io.stdout.write(`${lines.join("\n")}\n`);
  }
  if (ca.transport === "https-unverified") {
    io.stderr.write("note: fetched over https without verification; compare the fingerprint with the engine's CA\n");
  }
  if (!ca.isCa) io.stderr.write("warning: the certificate is not a CA (basicConstraints CA:FALSE)\n");
  if (left < 0) io.stderr.write("warning: the CA certificate has expired\n");
  return ExitCode.ok;
}

const command: Command = {
  name: "cert",
  summary: "Engine CA certificates: fetch <engine-url> prints fingerprint and expiry",
  usage,
  async run(args, io) {
    const [sub, ...rest] = args;
    switch (sub) {
      case "fetch":
        return fetchCommand(rest, io);
      default:
        io.stderr.write(`ferry cert: ${sub ? `unknown subcommand '${sub}'` : "a subcommand is required"}\n${usage}`);
        return ExitCode.usage;
    }
  },
};

export default command;
