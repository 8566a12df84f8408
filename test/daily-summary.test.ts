/**
 * The daily summary (issue 8 item 9) against the running pipeline (real nats-server, the lab
 * engines prd and dr, the real functions): one VM backed up ok, one whose backup failed, one
 * never backed up. `ferry schedule --daemon`, then `ferry summary --post`, then again without the
 * KV claims put it in each engine's audit log (GET /events) exactly once for the day, with the
 * right counts and the bytes of the layer files in the store.
 */
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../cli/main.ts";
import { summaryClaimKey, summaryDay } from "../pipeline/daily-summary.ts";
import { Kvm } from "@nats-io/kv";
import { buckets } from "../infra/streams/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1048576;
let p: Pipeline;
let config: string;
const zone = "Europe/Berlin";

beforeAll(async () => {
  p = await startPipeline({ labEngines: ["prd", "dr"], maxDeliver: 2, backoffMs: [200, 400] });
  const vm = await p.lab.engines.prd!.control.createVm({ name: "ok01", disks: [{ alias: "ok01_d1", size: 8 * MiB }], status: "up" });
  await p.lab.engines.prd!.control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 3 * MiB, pattern: 0x5a });
  const engines: Record<string, unknown> = {};
  for (const name of ["prd", "dr"]) {
    const e = p.lab.engines[name]!;
    await writeFile(join(p.dir, `${name}-ca.pem`), e.caPem);
    engines[name] = { url: e.url, user: e.user, passwordEnv: `LAB_${name.toUpperCase()}_PASSWORD`, caFile: join(p.dir, `${name}-ca.pem`) };
  }
  config = join(p.dir, "ferry-summary.json");
  await writeFile(
    config,
    JSON.stringify({
      // Not the machine's zone (UTC here): the summary's day and the schedules are Berlin's.
      timeZone: zone,
      engines,
      defaults: { schedule: { days: "1111111", time: "02:00" } },
      vms: { ok01: {}, bad01: {}, never01: {} },
      summary: { time: "00:00" },
    }),
  );
}, 120_000);

afterAll(async () => {
  await p?.stop();
});

function env(): Record<string, string> {
  return { PATH: process.env.PATH ?? "", NATS_URL: p.nats.url, LAB_PRD_PASSWORD: p.lab.engines.prd!.password, LAB_DR_PASSWORD: p.lab.engines.dr!.password };
}

async function ferry(args: string[], signal = new AbortController().signal): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (b) => (out += String(b)));
  stderr.on("data", (b) => (err += String(b)));
  const code = await main(args, { stdout, stderr, env: env(), cwd: p.dir, signal });
  return { code, out, err };
}

/** The summaries in an engine's audit log, read with GET /events like an operator's tool would. */
async function summariesOn(engine: string): Promise<{ description?: string | undefined; severity?: string | undefined; origin?: string | undefined; custom_id?: number | undefined }[]> {
  const client = p.wiring.engines.get(engine)!.client;
  const events = await client.events.list({ max: 500 });
  return events.filter((e) => e.description?.startsWith("Ferry daily summary"));
}

/** Bytes of every qcow2 layer file under the store (what `bytes stored` must add up to). */
async function layerBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.endsWith(".qcow2")) n += (await stat(join(e.parentPath, e.name))).size;
  }
  return n;
}

describe("daily summary (lab)", () => {
  it("summary - counts one ok, one failed and one never-backed-up VM, and the bytes stored", async () => {
    expect((await p.backup("ok01")).subject).toBe("backup.completed");
    const failed = await p.backup("bad01"); // not on the engine: the backup fails for good
    expect(failed.subject).toBe("backup.failed");

    const r = await ferry(["summary", "--json", "--config", config]);
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out) as Record<string, unknown>;
    const bytes = await layerBytes(p.storePath);
    expect(bytes).toBeGreaterThan(3 * MiB);
    expect(s).toMatchObject({ day: summaryDay(new Date(), zone), timeZone: zone, vms: 3, protected: 1, failed: 1, overdue: 0, never: 1, bytesStored: bytes, failedVms: ["bad01"], neverVms: ["never01"] });
    expect(s.posts).toBeUndefined();
    // Printing posts nothing.
    expect(await summariesOn("prd")).toEqual([]);
  }, 180_000);

  it("summary - the daemon posts it, --post again finds the claim, without the claim the engine refuses the id: one summary per engine, severity normal, origin ferry", async () => {
    // ferry schedule --daemon with summary.time 00:00: due at once.
    const ac = new AbortController();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let daemonErr = "";
    stderr.on("data", (b) => (daemonErr += String(b)));
    stdout.resume();
    const daemon = main(["schedule", "--daemon", "--config", config], { stdout, stderr, env: env(), cwd: p.dir, signal: ac.signal });
    try {
      await waitFor(() => /summary prd \S+: posted/.test(daemonErr) && /summary dr \S+: posted/.test(daemonErr), { timeoutMs: 60_000, what: () => `the daemon's summary posts; stderr: ${daemonErr}` });
    } finally {
      ac.abort();
      expect(await daemon, daemonErr).toBe(0);
    }

    const again = await ferry(["summary", "--post", "--config", config]);
    expect(again.code, again.err).toBe(0);
    expect(again.out).toMatch(/^Ferry daily summary \d{4}-\d\d-\d\d \(Europe\/Berlin\): 3 VMs: 1 protected, 1 failed, 0 overdue, 1 never backed up; [\d.]+ GiB stored \(\d+ bytes\)\. Failed: bad01\. Never backed up: never01\.$/m);
    expect(again.out).toMatch(/^prd \S+: already posted today \(claimed\)$/m);
    expect(again.out).toMatch(/^dr \S+: already posted today \(claimed\)$/m);

    // Claims lost (or a second scheduler racing past them): the engine refuses the same custom_id.
    const day = summaryDay(new Date(), zone);
    const bucket = await new Kvm(p.nc).open(buckets.schedule);
    for (const engine of ["prd", "dr"]) await bucket.delete(summaryClaimKey(engine, day));
    const third = await ferry(["summary", "--post", "--json", "--config", config]);
    expect(third.code, third.err).toBe(0);
    expect((JSON.parse(third.out) as { posts: { engine: string; status: string }[] }).posts.map((x) => [x.engine, x.status])).toEqual([["prd", "duplicate"], ["dr", "duplicate"]]);

    for (const engine of ["prd", "dr"]) {
      const found = await summariesOn(engine);
      expect(found, engine).toHaveLength(1);
      expect(found[0]).toMatchObject({ severity: "normal", origin: "ferry" });
      expect(found[0]!.description).toContain(`Ferry daily summary ${day} (Europe/Berlin): 3 VMs: 1 protected, 1 failed, 0 overdue, 1 never backed up`);
    }
  }, 180_000);
});
