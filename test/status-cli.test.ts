/**
 * `ferry status` against the running pipeline (real nats-server, the lab engine, the real
 * functions): a backup that fails for good shows 'failed' with its code and exits 1, the next
 * success shows 'ok' and exits 0, a configured VM never backed up shows 'never', a run in
 * progress shows 'running' with its step, a run that failed in disk-transferred is 'failed' (not
 * 'running' forever), and a missing bucket or an unreachable NATS give one line and exit 3.
 */
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats, provisionInfra } from "../adapters/nats/mod.ts";
import { StorePaths, writeManifestFile } from "../adapters/store/mod.ts";
import { main } from "../cli/main.ts";
import type { VmStatus } from "../config/status.ts";
import { emptyChain } from "../domain/chain/mod.ts";
import { createRestoreJournal } from "../pipeline/restore-journal.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { startNatsServer } from "./harness/nats-server.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1048576;
let p: Pipeline;
let config: string;

beforeAll(async () => {
  p = await startPipeline({ maxDeliver: 3, backoffMs: [300, 600, 1000] });
  const control = p.lab.engines.prd!.control;
  for (const name of ["st01", "st02"]) {
    const vm = await control.createVm({ name, disks: [{ alias: `${name}_d1`, size: 8 * MiB }, { alias: `${name}_d2`, size: 4 * MiB }], status: "up" });
    await control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 2 * MiB, pattern: 0x41 });
  }
  config = join(p.dir, "ferry-status.json");
  await writeFile(
    config,
    JSON.stringify({
      engines: { prd: { url: "https://engine.example.com", passwordEnv: "FERRY_PRD_PASSWORD" } },
      defaults: { schedule: { days: "1111111", time: "02:00" } },
      vms: { st01: {}, st02: {}, never01: {}, off01: { enabled: false } },
    }),
  );
});

afterAll(async () => {
  await p?.stop();
});

async function ferry(args: string[], env: Record<string, string> = { NATS_URL: p.nats.url }): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (b) => (out += String(b)));
  stderr.on("data", (b) => (err += String(b)));
  const code = await main(args, { stdout, stderr, env: { PATH: process.env.PATH ?? "", ...env }, cwd: p.dir, signal: new AbortController().signal });
  return { code, out, err };
}

async function status(...vms: string[]): Promise<{ code: number; rows: VmStatus[]; err: string }> {
  const r = await ferry(["status", "--json", "--tz", "UTC", "--config", config, ...vms]);
  return { code: r.code, rows: r.out ? (JSON.parse(r.out) as VmStatus[]) : [], err: r.err };
}

const row = (rows: VmStatus[], vm: string) => rows.find((r) => r.vm === vm);

describe("ferry status (lab)", () => {
  it("status - before any backup: every configured VM is listed as never, with its next slot; exit 0", async () => {
    const { code, rows, err } = await status();
    expect(code, err).toBe(0);
    expect(rows.map((r) => r.vm)).toEqual(["never01", "off01", "st01", "st02"]);
    for (const r of rows) expect(r).toMatchObject({ result: "never", configured: true, restorePoints: 0, overdue: false, problem: false });
    expect(row(rows, "st01")?.schedule?.next).toMatch(/T02:00:00\.000Z$/);
    expect(row(rows, "off01")?.schedule).toEqual({ description: "disabled" });
  });

  it("status - a backup that fails for good (500s outlasting every retry) shows failed with its code; exit 1", async () => {
    // 500, not 503: an engine outage (503) is waited out for its time budget instead of failing.
    p.lab.engines.prd!.control.faults.httpErrors(500, 1000, "/backups");
    const id = await p.request("st01");
    const out = await p.outcome(id, 60_000);
    p.lab.engines.prd!.control.faults.clear();
    expect(out.subject).toBe("backup.failed");
    const code = String(out.event.code);

    const { code: exit, rows, err } = await status();
    expect(exit, err).toBe(1);
    expect(row(rows, "st01")).toMatchObject({ result: "failed", lastResult: "failed", problem: true, outcome: { result: "failed", code, source: "event", correlationId: id } });
    expect(row(rows, "never01")).toMatchObject({ result: "never", problem: false });

    const human = await ferry(["status", "--tz", "UTC", "--config", config]);
    expect(human.code).toBe(1);
    expect(human.out).toMatch(new RegExp(`st01\\s+failed\\s+0 points\\s+no restore point`));
    expect(human.out).toContain(`failed ${String(out.event.time)}`);
    expect(human.out).toContain(`${code}: `);
    expect(human.out).toMatch(/never01\s+never\s+0 points/);
    expect(human.out).toMatch(/^4 VMs: 1 failed, 3 never$/m);
  });

  it("status - a run in progress shows running with its step; after the next success the VM is ok with its point; exit 0", async () => {
    // Hold the engine backup in 'finalizing' so the run is observably in flight.
    p.lab.engines.prd!.control.faults.stallFinalize(6000);
    const id = await p.request("st01");
    const during = await waitFor(
      async () => {
        const s = await status("st01");
        const r = row(s.rows, "st01");
        return r?.result === "running" ? { s, r } : undefined;
      },
      { what: "st01 running in ferry status", timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(during.r.running).toMatchObject({ runId: id, step: "backup-requested" });
    // Running, but the last finished result is still the failure: the exit code says so.
    expect(during.r.lastResult).toBe("failed");
    expect(during.s.code).toBe(1);

    const out = await p.outcome(id, 90_000);
    expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");
    const { code, rows, err } = await status("st01", "never01", "off01");
    expect(code, err).toBe(0);
    const st01 = row(rows, "st01")!;
    expect(st01).toMatchObject({ result: "ok", lastResult: "ok", problem: false, overdue: false, restorePoints: 1, outcome: { result: "ok", correlationId: id } });
    expect(st01.running).toBeUndefined();
    expect(st01.lastGood?.id).toBe(String(out.event.restorePoint));
    expect(st01.lastGood!.ageSeconds).toBeLessThan(120);
    expect(st01.rpo).toMatchObject({ overdue: false, targetSeconds: 25 * 3600 });
    expect(row(rows, "never01")?.result).toBe("never");

    const human = await ferry(["status", "st01", "never01", "--tz", "UTC", "--config", config]);
    expect(human.code, human.err).toBe(0);
    expect(human.out).toMatch(/st01\s+ok\s+1 point\s+last #1 \S+ full/);
    expect(human.out).toMatch(/lag \d+[sm]\S* of 1d 1h/);
    expect(human.out).toMatch(/never01\s+never\s+0 points\s+no restore point\s+next \S+T02:00:00\.000Z/);
  });

  it("status - restores: the last good restore, one running and a failed one are shown under the VM, in text and --json", async () => {
    // st01 has a restore point (the test before): a real restore of it onto prd under a new name.
    const done = await p.restore({ vm: "st01", target: "prd", name: "st01_back" });
    expect(done.subject, JSON.stringify(done.event)).toBe("restore.completed");
    const kv = await new Kvm(p.nc).open("ferry-runs");
    const journal = createRestoreJournal(kv);
    const base = { kind: "restore" as const, target: "prd", vm: { name: "st01" }, owner: "", correlationId: "c", attempt: 1, transfers: [] };
    const startedAt = new Date().toISOString();
    // A restore in progress and a failed one, as restore-requested journals them.
    await journal.change("rr-running", () => ({ ...base, runId: "rr-running", name: "st01_dr", mode: "replicate", phase: "disks", startedAt, updatedAt: startedAt, disks: [{ sourceId: "s1", alias: "st01_d1", id: "n1", state: "verified" }, { sourceId: "s2", alias: "st01_d2", id: "n2", state: "created" }] }));
    await journal.change("rr-failed", () => ({ ...base, runId: "rr-failed", name: "st01_t", mode: "test", phase: "failed", startedAt: "2020-01-01T00:00:00.000Z", updatedAt: startedAt, disks: [], error: { code: "RESTORE_BOOT_FAILED", message: "the VM did not come up" } }));
    try {
      const { rows, err } = await status("st01");
      const r = row(rows, "st01")!;
      expect(r.restore?.lastOk, err).toMatchObject({ mode: "restore", target: "prd", name: "st01_back", phase: "done", disks: { verified: 2, total: 2 } });
      expect(r.restore?.running).toMatchObject({ runId: "rr-running", mode: "replicate", name: "st01_dr", phase: "disks", disks: { verified: 1, total: 2 } });
      // The newest run that ended is the real restore (started after the failed one).
      expect(r.restore?.last).toMatchObject({ result: "ok", name: "st01_back" });
      const human = await ferry(["status", "st01", "--tz", "UTC", "--config", config]);
      expect(human.out).toMatch(/^ {4}restore running since \S+: replicate onto prd as st01_dr, phase disks, 1\/2 disks verified \(run rr-running\)$/m);
      expect(human.out).toMatch(/^ {4}last restore ok \S+: restore onto prd as st01_back \(run \S+\)$/m);
      // A failed restore newer than the good one is shown with its code.
      await journal.change("rr-failed", (cur) => cur && { ...cur, startedAt: new Date().toISOString() });
      const after = row((await status("st01")).rows, "st01")!;
      expect(after.restore?.last).toMatchObject({ result: "failed", runId: "rr-failed", error: { code: "RESTORE_BOOT_FAILED" } });
      const text = await ferry(["status", "st01", "--tz", "UTC", "--config", config]);
      expect(text.out).toMatch(/^ {4}last restore failed \S+: restore test on prd, phase failed: RESTORE_BOOT_FAILED: the VM did not come up \(run rr-failed\)$/m);
    } finally {
      await kv.delete("rr-running");
      await kv.delete("rr-failed");
    }
  });

  it("status - a run that fails in disk-transferred is failed with that step's code, not running forever", async () => {
    // The store folder of st02 belongs to another VM: recording the point fails for good in
    // disk-transferred, after the journal already said 'transferred'.
    await writeManifestFile(new StorePaths(p.storePath), emptyChain({ id: "another-vm-named-st02", name: "st02" }));
    const id = await p.request("st02");
    const out = await p.outcome(id, 60_000);
    expect(out.event).toMatchObject({ code: "STORE_VM_MISMATCH", step: "disk.transferred" });
    const { code, rows } = await status("st02");
    expect(code).toBe(1);
    expect(row(rows, "st02")).toMatchObject({ result: "failed", outcome: { code: "STORE_VM_MISMATCH", step: "disk.transferred", source: "event" } });
    // disk-transferred now journals its final failure on the run (it answers coalesced requests too).
    expect(row(rows, "st02")?.run).toMatchObject({ phase: "failed", error: { code: "STORE_VM_MISMATCH" } });
    await rm(join(p.storePath, "st02", "restore-points.json"));
    expect((await p.backup("st02")).subject).toBe("backup.completed");
    expect((await status("st02")).rows[0]).toMatchObject({ result: "ok", restorePoints: 1 });
  });

  it("status - an unknown VM name exits 4", async () => {
    const r = await ferry(["status", "nosuch", "--config", config]);
    expect(r.code).toBe(4);
    expect(r.err).toBe("ferry status: unknown VM 'nosuch': not in the config and never backed up\n");
  });
});

describe("ferry status without Ferry's buckets or NATS", () => {
  it("status - a NATS without Ferry's buckets: one line naming the bucket, exit 3", async () => {
    const bare = await startNatsServer();
    try {
      const r = await ferry(["status", "--nats", bare.url, "--config", config], {});
      expect(r.code).toBe(3);
      expect(r.out).toBe("");
      expect(r.err).toBe("ferry status: KV bucket ferry-chains does not exist on this NATS: Ferry has not run here yet (ferry run all creates it), or --nats names the wrong server\n");

      // Provisioned, then one bucket removed.
      const nc = await connectNats({ servers: bare.url, name: "t" });
      const jsm = await jetstreamManager(nc);
      await provisionInfra(nc, jsm, { replicas: 1 });
      await jsm.streams.delete("KV_ferry-leases");
      await nc.close();
      const r2 = await ferry(["status", "--nats", bare.url], {});
      expect(r2.code).toBe(3);
      expect(r2.err.trim().split("\n")).toEqual(["ferry status: KV bucket ferry-leases does not exist on this NATS: Ferry has not run here yet (ferry run all creates it), or --nats names the wrong server"]);
    } finally {
      await bare.stop();
    }
  });

  it("status - NATS down: one line, exit 3", async () => {
    const down = await startNatsServer();
    const url = down.url;
    await down.stop();
    const r = await ferry(["status", "--config", config], { NATS_URL: url });
    expect(r.code).toBe(3);
    expect(r.err.trim().split("\n")).toHaveLength(1);
    expect(r.err).toContain(`ferry status: cannot connect to NATS at ${url}`);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});
