/**
 * `ferry cert fetch` against a lab engine: plain http bootstrap, https with and without a known CA,
 * --out (only with --accept of the fingerprint) and --json, and the exit codes for bad usage and
 * an unreachable engine. Engines of a config, KV and cert.renewed: test/cert-*.test.ts.
 */
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../cli/main.ts";
import { ExitCode } from "../cli/command.ts";
import { startLab, type Lab, type LabEngine } from "../lab/mod.ts";

let dir: string;
let lab: Lab;
let prd: LabEngine;

async function ferry(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (c: Buffer) => (out += c.toString()));
  stderr.on("data", (c: Buffer) => (err += c.toString()));
  const code = await main(args, { stdout, stderr, cwd: dir, env: {} });
  return { code, stdout: out, stderr: err };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-cert-cli-"));
  lab = await startLab({ dataDir: join(dir, "lab"), engines: ["prd"] });
  prd = lab.engines.prd!;
}, 60_000);

afterAll(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("ferry cert fetch", () => {
  it("ferry cert fetch - prints the fingerprint and notAfter; writes --out only with --accept of that fingerprint", async () => {
    const cert = new X509Certificate(prd.caPem);
    const shown = await ferry("cert", "fetch", prd.plainUrl, "--out", "engine-ca.pem");
    expect(shown.code).toBe(ExitCode.failed);
    expect(shown.stdout).toContain(`sha256:      ${cert.fingerprint256}`);
    expect(shown.stdout).toContain(`not stored: check the fingerprint on the engine, then run: ferry cert fetch ${prd.plainUrl} --out engine-ca.pem --accept ${cert.fingerprint256}`);
    await expect(stat(join(dir, "engine-ca.pem"))).rejects.toThrow();
    expect((await ferry("cert", "fetch", prd.plainUrl, "--out", "engine-ca.pem", "--accept", "AB:CD")).code).toBe(ExitCode.invalid);
    const r = await ferry("cert", "fetch", prd.plainUrl, "--out", "engine-ca.pem", "--accept", cert.fingerprint256.toLowerCase());
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(r.stdout).toContain(`not after:   ${new Date(cert.validTo).toISOString()}`);
    const saved = await readFile(join(dir, "engine-ca.pem"), "utf8");
    expect(new X509Certificate(saved).fingerprint256).toBe(cert.fingerprint256);
    expect((await stat(join(dir, "engine-ca.pem"))).mode & 0o777).toBe(0o644);
  });

  it("ferry cert fetch - --json over https says whether the answer was verified", async () => {
    const unverified = await ferry("cert", "fetch", prd.url, "--json");
    expect(unverified.code).toBe(ExitCode.ok);
    const j = JSON.parse(unverified.stdout) as { fingerprint256: string; transport: string; daysLeft: number; isCa: boolean };
    expect(j.transport).toBe("https-unverified");
    expect(j.isCa).toBe(true);
    expect(j.daysLeft).toBeGreaterThan(0);
    expect(unverified.stderr).toMatch(/without verification/);
    const verified = await ferry("cert", "fetch", prd.url, "--json", "--ca", prd.caFile);
    expect(JSON.parse(verified.stdout).transport).toBe("https-verified");
    expect(JSON.parse(verified.stdout).fingerprint256).toBe(j.fingerprint256);
  });

  it("ferry cert fetch - bad usage is exit 2, an unreachable engine exit 3", async () => {
    expect((await ferry("cert")).code).toBe(ExitCode.usage);
    expect((await ferry("cert", "fetch")).code).toBe(ExitCode.usage);
    expect((await ferry("cert", "fetch", "ftp://x")).code).toBe(ExitCode.usage);
    const down = await ferry("cert", "fetch", "http://127.0.0.1:1");
    expect(down.code).toBe(ExitCode.unavailable);
    expect(down.stderr).toMatch(/unreachable/);
  });
});
