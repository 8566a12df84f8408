/**
 * `ferry doctor` against a lab engine, a real nats-server and real `ferry run` processes, with the
 * CLI run as the operator runs it (node cli/ferry.mjs). Every hint the doctor prints here is then
 * run as printed, and must do what it says: a refused login names the engine (exit 3), a wrong CA
 * is fixed by the `ferry cert fetch <engine> --accept <fp>` it prints, a function without a worker
 * by the `ferry run <function>` it prints.
 */
import { execFile, execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLab, type Lab, type LabEngine } from "../lab/mod.ts";
import { spawnFerry, type FerryProcess } from "./harness/ferry-process.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { waitFor } from "./harness/wait-for.ts";

const ferryBin = fileURLToPath(new URL("../cli/ferry.mjs", import.meta.url));

let dir: string;
let lab: Lab;
let prd: LabEngine;
let nats: NatsServer;
let goodConfig: string;
let wrongCaConfig: string;
const running: FerryProcess[] = [];

/** `ferry <args>` as a child process in `dir`, with the engine password in the environment. */
function ferry(args: readonly string[], password = prd.password): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { PATH: process.env.PATH ?? "", HOME: dir, FERRY_PRD_PASSWORD: password };
  return new Promise((resolve) => {
    execFile(process.execPath, [ferryBin, ...args], { cwd: dir, env, timeout: 180_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The `ferry ...` command in a hint line ("-> ...: ferry cert fetch prd --accept AB:.. --config f"). */
function hintCommand(fix: string): string[] {
  const m = /\bferry((?: [^\s;()]+)+)/.exec(fix);
  if (!m) throw new Error(`no ferry command in the hint: ${fix}`);
  return m[1]!.trim().split(" ");
}

type Check = { name: string; status: string; detail: string; fix?: string };
async function doctor(args: string[], password?: string): Promise<{ code: number; checks: Check[]; stdout: string }> {
  const r = await ferry(["doctor", ...args, "--json"], password);
  return { code: r.code, checks: (JSON.parse(r.stdout) as { checks: Check[] }).checks, stdout: r.stdout };
}

function writeConfig(name: string, caFile: string): string {
  const file = path.join(dir, name);
  writeFileSync(
    file,
    JSON.stringify({
      nats: { servers: [nats.url] },
      store: { path: path.join(dir, "store") },
      engines: { prd: { url: prd.url, user: prd.user, passwordEnv: "FERRY_PRD_PASSWORD", caFile } },
    }),
  );
  return file;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "ferry-doctor-engines-"));
  mkdirSync(path.join(dir, "store"));
  [lab, nats] = await Promise.all([startLab({ dataDir: path.join(dir, "lab"), engines: ["prd"] }), startNatsServer()]);
  prd = lab.engines.prd!;
  // A CA that did not sign the engine's certificate (an engine whose CA was replaced).
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "other.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=another CA"], { cwd: dir, stdio: "ignore" });
  goodConfig = writeConfig("good.json", prd.caFile);
  wrongCaConfig = writeConfig("wrong-ca.json", path.join(dir, "other-ca.pem"));
}, 120_000);

afterAll(async () => {
  await Promise.all(running.map((p) => p.kill("SIGKILL")));
  await Promise.all([lab?.stop(), nats?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("ferry doctor (lab engine, real CLI)", () => {
  it("doctor - a wrong engine password exits 3 naming the engine; the hint, run as printed with the right password, passes", async () => {
    const wrong = await ferry(["doctor", "--config", goodConfig, "--check", "engines"], "not-the-password");
    expect(wrong.code).toBe(3);
    expect(wrong.stdout).toContain(`FAIL  wrong user or password for engine prd: ${prd.url} refused the login of admin@internal\n`);
    expect(wrong.stdout).toContain(`correct engines.prd.user or the password in $FERRY_PRD_PASSWORD (environment, or ferry.env beside the config), then check again: ferry doctor --check engines --config ${goodConfig}`);
    expect(`${wrong.stdout}${wrong.stderr}`).not.toContain("not-the-password");
    const fix = await ferry(hintCommand(wrong.stdout.split("-> ")[1]!));
    expect(fix.stdout).toContain(`OK    engine prd (${prd.url}) is reachable and admin@internal logged in, TLS verified with ca.pem`);
    expect(fix.code, fix.stdout).toBe(0);
  });

  it("doctor - a CA that does not verify the engine: the hint is the cert fetch --accept of what it serves, and running it fixes the check", async () => {
    const served = new X509Certificate(prd.caPem).fingerprint256;
    const before = await doctor(["--config", wrongCaConfig, "--check", "engines"]);
    expect(before.code).toBe(3);
    const check = before.checks.find((c) => c.name === "engine:prd")!;
    expect(check).toMatchObject({ status: "fail", detail: `engine prd (${prd.url}): certificate not trusted: it is not signed by the CA in ${path.join(dir, "other-ca.pem")} (the engine CA may have changed)` });
    expect(check.fix).toContain(`if they match, trust it: ferry cert fetch prd --accept ${served} --config ${wrongCaConfig}`);
    const accepted = await ferry(hintCommand(check.fix!));
    expect(accepted.code, `${accepted.stdout}${accepted.stderr}`).toBe(0);
    const after = await doctor(["--config", wrongCaConfig, "--check", "engines,certs"]);
    expect(after.checks.filter((c) => c.status === "fail")).toEqual([]);
    expect(after.code).toBe(0);
  });

  it("doctor - a function whose consumer has no worker is a FAIL with 'ferry run <function>'; running the hint makes it pass", async () => {
    const fresh = await doctor(["--config", goodConfig, "--check", "workers"]);
    expect(fresh.checks).toEqual([expect.objectContaining({ name: "workers", status: "warn", fix: `start them: ferry run all --config ${goodConfig}` })]);
    expect(fresh.code).toBe(0);

    // Run the function once (its durable consumer is created), then stop it.
    const first = spawnFerry(["run", "backup-requested", "--config", goodConfig], { FERRY_PRD_PASSWORD: prd.password });
    running.push(first);
    await first.waitForLog((l) => l.msg === "functions running", 120_000);
    await first.kill("SIGTERM");

    const missing = await doctor(["--config", goodConfig, "--check", "workers"]);
    expect(missing.code).toBe(3);
    const check = missing.checks.find((c) => c.name === "workers:backup-requested")!;
    expect(check.status).toBe("fail");
    expect(check.detail).toMatch(/^function backup-requested has no running worker: nothing consumes FERRY_COMMANDS\/backup-requested/);
    expect(check.fix).toContain(`start it: ferry run backup-requested --config ${goodConfig}`);

    const hinted = spawnFerry(hintCommand(check.fix!), { FERRY_PRD_PASSWORD: prd.password });
    running.push(hinted);
    await hinted.waitForLog((l) => l.msg === "functions running", 120_000);
    const ok = await waitFor(async () => {
      const r = await doctor(["--config", goodConfig, "--check", "workers"]);
      return r.code === 0 ? r : undefined;
    }, { what: "doctor to see the worker", timeoutMs: 60_000 });
    expect(ok.checks.find((c) => c.name === "workers:backup-requested")).toMatchObject({ status: "ok", detail: expect.stringMatching(/^function backup-requested: 1 running worker /) });
    await hinted.kill("SIGTERM");
  });
});
