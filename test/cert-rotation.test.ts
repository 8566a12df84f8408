/**
 * Engine CA trust end to end: a real nats-server, the lab's PRD and DR engines, the functions as
 * ONE real `ferry run all` process that is never restarted, and the `ferry cert` / `ferry doctor`
 * / `ferry schedule --daemon` commands.
 *
 *  1. First contact needs consent: `ferry cert fetch prd` shows the CA and stores nothing; a
 *     wrong --accept is refused; --accept <fingerprint> stores it (file + KV) and publishes
 *     cert.renewed, and the running functions back up with it.
 *  2. PRD's CA expires in 10 days: `ferry cert check` publishes cert.expiring; the engine still
 *     serves it, so cert.failed CA_EXPIRING (an alert on PRD). The lab renews the CA (same key):
 *     the next check → cert.renewed (acceptedBy renewal), the functions reload it, backups go on.
 *  3. The lab replaces the CA (new key): the check → cert.failed CA_NOT_TRUSTED with a clear
 *     message and exactly one alert (on DR: PRD cannot be trusted); doctor fails cert:prd; after
 *     `ferry cert fetch prd --accept <new>` backups work again. Same pid throughout.
 */
import { X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../adapters/nats/mod.ts";
import { main } from "../cli/main.ts";
import schedule from "../cli/commands/schedule.ts";
import { startEngine, type LabEngine } from "../lab/engine/mod.ts";
import { FAST_TIMINGS } from "../lab/test-support.ts";
import type { CaRecord } from "../pipeline/trust.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { spawnFerry, type FerryProcess } from "./harness/ferry-process.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1048576;
let dir: string;
let nats: NatsServer;
let prd: LabEngine;
let dr: LabEngine;
let nc: NatsConnection;
let cfg: string;
let fn: FerryProcess;
const seen: { subject: string; event: Record<string, unknown> }[] = [];
const env = () => ({ FERRY_PRD_PASSWORD: prd.password, FERRY_DR_PASSWORD: dr.password });

async function ferry(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (c: Buffer) => (out += c.toString()));
  stderr.on("data", (c: Buffer) => (err += c.toString()));
  const code = await main([...args, "--config", cfg], { stdout, stderr, cwd: dir, env: env() });
  return { code, stdout: out, stderr: err };
}

const caFp = (e: LabEngine) => new X509Certificate(e.caPem).fingerprint256;
const fileFp = async (path: string) => new X509Certificate(await readFile(path, "utf8")).fingerprint256;
const prdCaFile = () => join(dir, "certs", "prd-ca.pem");
const drCaFile = () => join(dir, "trust", "dr.pem");

/** Ferry's alerts in an engine's audit log (origin ferry, severity alert). */
function alerts(e: LabEngine): string[] {
  return (e.control.events() as { origin?: string; severity?: string; description: string }[]).filter((x) => x.origin === "ferry" && x.severity === "alert").map((x) => x.description);
}

async function backup(id: string): Promise<Record<string, unknown>> {
  await jetstream(nc).publish("backup.requested", JSON.stringify({ id, correlationId: id, vm: "web01" }), { msgID: id });
  const hit = await waitFor(() => seen.find((s) => (s.subject === "backup.completed" || s.subject === "backup.failed") && s.event.correlationId === id), { what: `the outcome of ${id}`, timeoutMs: 90_000 });
  return { subject: hit.subject, ...hit.event };
}

async function certOutcome(publishedId: string): Promise<{ subject: string; event: Record<string, unknown> }> {
  return waitFor(() => seen.find((s) => (s.subject === "cert.renewed" || s.subject === "cert.failed") && s.event.correlationId === publishedId), { what: `the answer to ${publishedId}`, timeoutMs: 60_000 });
}

/** `ferry cert check`: the id it published for prd (or undefined). */
async function certCheck(): Promise<{ id?: string; out: string }> {
  const r = await ferry("cert", "check", "--json");
  expect(r.code, r.stderr).toBe(0);
  const rows = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { engine: string; status: string; id?: string });
  const p = rows.find((x) => x.engine === "prd" && x.status === "published");
  return { ...(p?.id ? { id: p.id } : {}), out: r.stdout };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-cert-rotation-"));
  nats = await startNatsServer();
  prd = await startEngine({ name: "prd", dataDir: join(dir, "lab", "prd"), timings: FAST_TIMINGS, caDays: 10 });
  dr = await startEngine({ name: "dr", dataDir: join(dir, "lab", "dr"), timings: FAST_TIMINGS });
  await prd.control.createVm({ name: "web01", disks: [{ alias: "web01_d1", size: 8 * MiB }], status: "up" });
  cfg = join(dir, "ferry.json");
  // prd: no caFile (its trusted CA is certs/prd-ca.pem beside the config); dr: an explicit caFile.
  await writeFile(
    cfg,
    JSON.stringify({
      engines: {
        prd: { url: prd.url, user: prd.user, passwordEnv: "FERRY_PRD_PASSWORD" },
        dr: { url: dr.url, user: dr.user, passwordEnv: "FERRY_DR_PASSWORD", caFile: "trust/dr.pem" },
      },
      nats: { servers: [nats.url] },
      store: { path: "store" },
      vms: { web01: { engine: "prd" } },
    }),
  );
  nc = await connectNats({ servers: nats.url, name: "cert-rotation-test" });
  for (const s of ["cert.>", "backup.completed", "backup.failed"]) {
    nc.subscribe(s, { callback: (_e, m) => void seen.push({ subject: m.subject, event: m.json<Record<string, unknown>>() }) });
  }
  // The functions start before any CA is trusted: they must pick the first one up as well.
  fn = spawnFerry(["run", "all", "--config", cfg, "--grace", "2"], env());
  await fn.waitForLog((l) => l.msg === "functions running", 90_000);
}, 180_000);

afterAll(async () => {
  await fn?.kill("SIGTERM");
  await nc?.close().catch(() => undefined);
  await prd?.stop();
  await dr?.stop();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("engine CA trust - lab, nats-server, one functions process", () => {
  it("cert - first contact: shown and refused without --accept (and with a wrong one); stored with it; the running functions back up with it", async () => {
    const shown = await ferry("cert", "fetch", "prd");
    expect(shown.code).toBe(1);
    expect(shown.stdout).toContain(`sha256:      ${caFp(prd)}`);
    expect(shown.stdout).toMatch(/subject: {5}C=US, O=ferry-lab, CN=prd-ca-1\.lab/);
    expect(shown.stdout).toMatch(/not after: {3}\S+ \(9 days left\)|not after: {3}\S+ \(10 days left\)/);
    expect(shown.stdout).toContain(`not stored: check the fingerprint on the engine, then run: ferry cert fetch prd --accept ${caFp(prd)}`);
    expect(existsSync(prdCaFile())).toBe(false);
    const wrong = await ferry("cert", "fetch", "dr", "--accept", caFp(prd));
    expect(wrong.code).toBe(4);
    expect(wrong.stdout).toMatch(/refused: --accept .* is not this CA's fingerprint; nothing stored/);
    expect(existsSync(drCaFile())).toBe(false);

    for (const e of [prd, dr]) {
      const ok = await ferry("cert", "fetch", e.name, "--accept", caFp(e));
      expect(ok.code, ok.stderr + ok.stdout).toBe(0);
      expect(ok.stdout).toMatch(/stored: .* and KV ferry-certs \(accepted by operator .*\); cert\.renewed published/);
    }
    expect(await fileFp(prdCaFile())).toBe(caFp(prd));
    expect(await fileFp(drCaFile())).toBe(caFp(dr));
    const rec = JSON.parse(new TextDecoder().decode((await (await new Kvm(nc).open("ferry-certs")).get("engine.prd"))!.value)) as CaRecord;
    expect(rec).toMatchObject({ engine: "prd", fingerprint: caFp(prd), file: prdCaFile(), acceptedBy: expect.stringMatching(/^operator /) });
    expect((await ferry("cert", "fetch", "prd")).stdout).toContain("already trusted");

    await fn.waitForLog((l) => l.msg === "trusted CA reloaded" && l.engine === "prd", 20_000);
    const first = await backup("b-1");
    expect(first.subject, JSON.stringify(first)).toBe("backup.completed");
  }, 180_000);

  it("cert - a CA expiring in 10 days: check → cert.expiring → CA_EXPIRING alert; the lab renews it (same key) → check → cert.renewed, backups go on, no restart", async () => {
    const list = await ferry("cert", "list");
    expect(list.stdout).toMatch(/prd {2}https:\/\/127\.0\.0\.1:\d+\n {2}CA \(trusted\) {4}C=US, O=ferry-lab, CN=prd-ca-1\.lab {2}sha256 [0-9A-F:]+ {2}not after \S+ {2}(9|10) days left/);
    expect(list.stdout).toMatch(/ {2}imageio 127\.0\.0\.1:\d+ {2}C=US, O=ferry-lab, CN=localhost .* (9|10) days left {2}verified/);
    expect(list.stdout).toMatch(/due: the trusted CA expires in (9|10) days/);
    // ferry doctor checks CA expiry: a warning (exit 0), and its hint is the `ferry cert check` run just below.
    const due = await ferry("doctor", "--check", "certs", "--json");
    expect(due.code, due.stdout).toBe(0);
    const expiry = (JSON.parse(due.stdout) as { checks: { name: string; status: string; detail: string; fix?: string }[] }).checks.find((c) => c.name === "cert:prd");
    expect(expiry).toMatchObject({ status: "warn", detail: expect.stringMatching(/^engine prd: CA sha256 .*, (9|10) days left.*; due: the trusted CA expires in (9|10) days/) });
    expect(expiry!.fix).toContain(`ferry cert check --config ${cfg} asks the cert-expiring function`);

    const first = await certCheck();
    expect(first.id, first.out).toMatch(/^cert-check:prd:\d{4}-\d\d-\d\d:[0-9a-f]{12}$/);
    expect(first.out).toMatch(/"engine":"dr","status":"ok"/);
    const expiring = await certOutcome(first.id!);
    // The check published cert.expiring itself; the answer carries its id as correlationId.
    expect(seen.filter((s) => s.subject === "cert.expiring" && s.event.id === first.id)).toEqual([{ subject: "cert.expiring", event: expect.objectContaining({ engine: "prd" }) }]);
    expect(expiring.subject).toBe("cert.failed");
    expect(expiring.event).toMatchObject({ code: "CA_EXPIRING", certEngine: "prd", engine: "prd", vm: "prd" });
    expect(String(expiring.event.message)).toMatch(/^engine prd: the CA \(sha256 [0-9A-F:]+\) expires in (9|10) days \(\S+\) and the engine still serves it/);
    await waitFor(() => alerts(prd).some((a) => a.includes("CA_EXPIRING")), { what: "the CA_EXPIRING alert on prd", timeoutMs: 30_000 });
    // The same state again the same day: already published, nothing new.
    expect((await certCheck()).out).toMatch(/"engine":"prd","status":"duplicate"/);

    const rotated = await prd.control.rotateCa({ mode: "renew", days: 365 });
    expect(rotated.caFingerprint256).not.toBe(await fileFp(prdCaFile()));
    const second = await certCheck();
    expect(second.id).toBeDefined();
    expect(second.id).not.toBe(first.id);
    const renewed = await certOutcome(second.id!);
    expect(seen.some((s) => s.subject === "cert.expiring" && s.event.id === second.id && s.event.engine === "prd")).toBe(true);
    expect(renewed.subject, JSON.stringify(renewed.event)).toBe("cert.renewed");
    expect(renewed.event).toMatchObject({ engine: "prd", fingerprint: rotated.caFingerprint256, changed: true, acceptedBy: "renewal" });
    expect(await fileFp(prdCaFile())).toBe(rotated.caFingerprint256);
    await fn.waitForLog((l) => l.msg === "trusted CA reloaded" && l.engine === "prd" && l.fingerprint === rotated.caFingerprint256, 20_000);

    const after = await backup("b-2");
    expect(after.subject, JSON.stringify(after)).toBe("backup.completed");
    const third = await certCheck();
    expect(third.id).toBeUndefined();
    expect(third.out).toMatch(/"engine":"prd","status":"ok"/);
    const doctor = await ferry("doctor", "--check", "certs", "--json");
    const checks = (JSON.parse(doctor.stdout) as { checks: { name: string; status: string; detail: string }[] }).checks;
    expect(checks.find((c) => c.name === "cert:prd")).toMatchObject({ status: "ok", detail: expect.stringMatching(/engine prd: CA sha256 .* until \S+, 36\d days left; engine certificate until/) });
  }, 180_000);

  it("cert - a replaced CA that does not chain: refused with a clear message and one alert; after --accept of the new fingerprint backups work again; same process", async () => {
    const before = await fileFp(prdCaFile());
    const replaced = await prd.control.rotateCa();
    const check = await certCheck();
    expect(check.out).toMatch(/the engine's certificate does not verify with the trusted CA/);
    const refused = await certOutcome(check.id!);
    expect(refused.subject).toBe("cert.failed");
    expect(refused.event).toMatchObject({ code: "CA_NOT_TRUSTED", certEngine: "prd", engine: "dr", servedFingerprint: replaced.caFingerprint256, trustedFingerprint: before });
    const message = String(refused.event.message);
    expect(message).toContain(`engine prd: its TLS certificate does not verify with the trusted CA (sha256 ${before};`);
    expect(message).toContain(`It now serves sha256 ${replaced.caFingerprint256}`);
    expect(message).toContain(`ferry cert fetch prd --accept ${replaced.caFingerprint256}`);
    expect(await fileFp(prdCaFile())).toBe(before);
    await waitFor(() => alerts(dr).some((a) => a.includes("CA_NOT_TRUSTED")), { what: "the alert on dr", timeoutMs: 30_000 });
    // Checked again (same state, same day): no second event, no second alert.
    expect((await certCheck()).out).toMatch(/"engine":"prd","status":"duplicate"/);
    await new Promise((r) => setTimeout(r, 3000));
    expect(seen.filter((s) => s.subject === "cert.failed" && s.event.code === "CA_NOT_TRUSTED")).toHaveLength(1);
    expect(alerts(dr).filter((a) => a.includes("CA_NOT_TRUSTED"))).toHaveLength(1);
    expect(alerts(dr)[0]).toMatch(/^Ferry: certificate check of engine prd failed \(CA_NOT_TRUSTED\): engine prd: its TLS certificate does not verify/);
    const doctor = await ferry("doctor", "--check", "certs");
    expect(doctor.code).toBe(3);
    expect(doctor.stdout).toMatch(/FAIL {2}engine prd: its certificate does not verify with the trusted CA in .*prd-ca\.pem/);
    expect(doctor.stdout).toContain(`ferry cert fetch prd --accept ${replaced.caFingerprint256}`);
    // Until then a backup fails ENGINE_TLS (one re-read of the trusted file, still the old CA),
    // and its hint is a command that runs as printed and leads to the --accept above.
    const refusedBackup = await backup("b-tls");
    expect(refusedBackup).toMatchObject({ subject: "backup.failed", code: "ENGINE_TLS" });
    expect(String(refusedBackup.message)).toContain("`ferry doctor --check certs` shows the CA the engine serves");
    // Its alert cannot reach PRD (not trusted): it is on DR, saying for which engine, not lost.
    await waitFor(() => alerts(dr).some((a) => a.startsWith("Ferry (for engine prd, which is not trusted over TLS): backup of VM") && a.includes("(ENGINE_TLS)")), {
      what: "the ENGINE_TLS alert on dr",
      timeoutMs: 30_000,
    });

    const accepted = await ferry("cert", "fetch", "prd", "--accept", replaced.caFingerprint256);
    expect(accepted.code, accepted.stdout + accepted.stderr).toBe(0);
    expect(accepted.stdout).toContain(`it does NOT chain to the trusted CA (sha256 ${before})`);
    const back = await backup("b-3");
    expect(back.subject, JSON.stringify(back)).toBe("backup.completed");
    // One process the whole time: never restarted.
    const running = fn.logs.filter((l) => l.msg === "functions running");
    expect(running).toHaveLength(1);
    expect(await Promise.race([fn.exited.then(() => "exited"), new Promise((r) => setTimeout(() => r("running"), 100))])).toBe("running");
  }, 180_000);

  it("schedule --daemon - runs the certificate check at start", async () => {
    const ac = new AbortController();
    let err = "";
    const running = schedule.run(["--config", cfg, "--daemon"], {
      stdout: new Writable({ write: (_c, _e, cb) => cb() }),
      stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }),
      env: env(),
      cwd: dir,
      signal: ac.signal,
    });
    await waitFor(() => /cert dr: ok/.test(err) && /cert prd: ok/.test(err), { what: "the daemon's certificate check", timeoutMs: 30_000 });
    ac.abort();
    expect(await running).toBe(0);
  }, 60_000);
});
