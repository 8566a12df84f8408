/**
 * `ferry run` serves GET /metrics when the config has metrics.listen: a real `ferry run
 * backup-requested` process (the other functions run in this process through the pipeline
 * harness) against a real nats-server and the lab engine. Every scrape is checked by Prometheus'
 * own parser (`promtool check metrics`); the example alert rules by `promtool check rules` and
 * their unit tests by `promtool test rules`. promtool comes from infra/setup.sh.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { spawnFerry, type FerryProcess } from "./harness/ferry-process.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1048576;
const REPO = fileURLToPath(new URL("..", import.meta.url));
const PROM_DIR = join(REPO, "infra", "prometheus");
let p: Pipeline;
let run: FerryProcess;
let url: string;

beforeAll(async () => {
  p = await startPipeline({ backupWorker: false });
  const control = p.lab.engines.prd!.control;
  const vm = await control.createVm({ name: "mx01", disks: [{ alias: "mx01_d1", size: 8 * MiB }, { alias: "mx01_d2", size: 4 * MiB }], status: "up" });
  await control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 3 * MiB, pattern: 0x51 });
  const e = p.lab.engines.prd!;
  const config = join(p.dir, "ferry.json");
  await writeFile(
    config,
    JSON.stringify({
      engines: { prd: { url: e.url, user: e.user, passwordEnv: "FERRY_PRD_PASSWORD", caFile: e.caFile } },
      store: { path: p.storePath },
      nats: { servers: [p.nats.url] },
      vms: { mx01: {}, never01: {} },
      metrics: { listen: "127.0.0.1:0" },
    }),
    { mode: 0o600 },
  );
  // backup-requested runs in its own `ferry run` (the only backup worker); disk-transferred,
  // chain-updated and alerts run in this process.
  run = spawnFerry(["run", "backup-requested", "--config", config, "--grace", "2"], { FERRY_PRD_PASSWORD: e.password });
  const listening = await run.waitForLog((l) => l.msg === "metrics listening", 60_000);
  url = String(listening.url);
  await run.waitForLog((l) => l.msg === "functions running", 60_000);
});

afterAll(async () => {
  await run?.kill("SIGTERM");
  p?.lab.engines.prd?.control.faults.clear();
  await p?.stop();
});

async function scrape(): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one sample (exact label set, in prom-client's label order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(",");
  const head = l ? `${name}{${l}} ` : `${name} `;
  const line = text.split("\n").find((x) => x.startsWith(head));
  return line === undefined ? undefined : Number(line.slice(head.length));
}

/** Prometheus' own parser and linter over a scrape: exit 0 and nothing to say. */
function promtoolCheckMetrics(text: string): void {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  expect(r.error, "promtool is missing: run bash infra/setup.sh").toBeUndefined();
  expect(`${r.stdout}${r.stderr}`).toBe("");
  expect(r.status).toBe(0);
}

describe("ferry run: GET /metrics (lab)", () => {
  it("metrics - during a running backup: the run is in flight, and promtool accepts the scrape", async () => {
    // Hold the engine backup in 'finalizing' for a while: the run is observably in flight.
    p.lab.engines.prd!.control.faults.stallFinalize(8000);
    const id = await p.request("mx01");
    const during = await waitFor(
      async () => {
        const t = await scrape();
        return sample(t, "ferry_function_in_flight", { function: "backup-requested" }) === 1 && sample(t, "ferry_vm_backup_running", { vm: "mx01" }) === 1 ? t : undefined;
      },
      { what: "a scrape showing the backup of mx01 in flight", timeoutMs: 30_000, intervalMs: 250 },
    );
    promtoolCheckMetrics(during);
    expect(sample(during, "ferry_consumer_ack_pending_messages", { stream: "FERRY_COMMANDS", consumer: "backup-requested" })).toBe(1);
    expect(sample(during, "ferry_vm_last_success_timestamp_seconds", { vm: "mx01" })).toBeUndefined();
    expect(sample(during, "ferry_vm_restore_points", { vm: "mx01" })).toBe(0);
    expect(sample(during, "ferry_vm_restore_points", { vm: "never01" })).toBe(0);
    expect(sample(during, "ferry_vm_next_backup_timestamp_seconds", { vm: "never01" })).toBeGreaterThan(Date.now() / 1000);
    expect(sample(during, "ferry_status_up")).toBe(1);
    // prom-client's own process metrics are there too.
    expect(sample(during, "ferry_process_resident_memory_bytes")).toBeGreaterThan(0);

    const out = await p.outcome(id, 90_000);
    expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");
    const completedAt = Date.parse(String(out.event.time)) / 1000;

    // After: the VM's last success, duration, bytes and point; nothing in flight.
    const after = await waitFor(
      async () => {
        const t = await scrape();
        return sample(t, "ferry_vm_last_success_timestamp_seconds", { vm: "mx01" }) !== undefined && sample(t, "ferry_vm_backup_running", { vm: "mx01" }) === 0 ? t : undefined;
      },
      { what: "a scrape with mx01's last success", timeoutMs: 30_000, intervalMs: 500 },
    );
    promtoolCheckMetrics(after);
    expect(sample(after, "ferry_vm_last_success_timestamp_seconds", { vm: "mx01" })).toBeCloseTo(completedAt, 0);
    expect(sample(after, "ferry_vm_last_backup_duration_seconds", { vm: "mx01" })).toBeCloseTo(Number(out.event.seconds), 3);
    expect(sample(after, "ferry_vm_last_backup_bytes", { vm: "mx01" })).toBe(Number(out.event.bytes));
    expect(sample(after, "ferry_vm_restore_points", { vm: "mx01" })).toBe(1);
    expect(sample(after, "ferry_vm_rpo_lag_seconds", { vm: "mx01" })).toBeLessThan(120);
    expect(sample(after, "ferry_vm_rpo_target_seconds", { vm: "mx01" })).toBe(25 * 3600);
    expect(sample(after, "ferry_vm_overdue", { vm: "mx01" })).toBe(0);
    expect(sample(after, "ferry_vm_last_backup_failed", { vm: "mx01" })).toBe(0);
    expect(sample(after, "ferry_vm_last_success_timestamp_seconds", { vm: "never01" })).toBeUndefined();
    expect(sample(after, "ferry_function_in_flight", { function: "backup-requested" })).toBe(0);
    expect(sample(after, "ferry_function_handled_total", { function: "backup-requested" })).toBe(1);
    expect(sample(after, "ferry_consumer_pending_messages", { stream: "FERRY_COMMANDS", consumer: "backup-requested" })).toBe(0);
    expect(sample(after, "ferry_engine_ca_expiry_timestamp_seconds", { engine: "prd" })).toBeGreaterThan(Date.now() / 1000);
  });

  it("metrics - a failed backup is counted by VM and error code, and as a failure of the function", async () => {
    const id = await p.request("nosuch01");
    const out = await p.outcome(id, 60_000);
    expect(out.event).toMatchObject({ vm: "nosuch01", code: "VM_NOT_FOUND" });
    const t = await waitFor(
      async () => {
        const s = await scrape();
        return sample(s, "ferry_vm_backup_failures_total", { vm: "nosuch01", code: "VM_NOT_FOUND" }) === 1 ? s : undefined;
      },
      { what: "the failure counted", timeoutMs: 20_000, intervalMs: 250 },
    );
    promtoolCheckMetrics(t);
    expect(sample(t, "ferry_function_failed_total", { function: "backup-requested" })).toBe(1);
    // nosuch01 is neither configured nor backed up: no per-VM gauges for it, only the count.
    expect(sample(t, "ferry_vm_restore_points", { vm: "nosuch01" })).toBeUndefined();
  });

  it("metrics - anything but /metrics is a 404; the root says where the metrics are", async () => {
    const base = url.replace(/\/metrics$/, "");
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect(await (await fetch(`${base}/`)).text()).toContain("/metrics");
  });
});

describe("infra/prometheus", () => {
  it("metrics - promtool check rules accepts the example alert rules, and promtool test rules passes their tests", () => {
    const rules = readdirSync(PROM_DIR).filter((f) => f.endsWith(".yml") && !f.endsWith(".test.yml"));
    expect(rules.length).toBeGreaterThan(0);
    const check = spawnSync("promtool", ["check", "rules", ...rules.map((f) => join(PROM_DIR, f))], { encoding: "utf8" });
    expect(check.error, "promtool is missing: run bash infra/setup.sh").toBeUndefined();
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
    expect(check.stdout).toMatch(/SUCCESS: \d+ rules found/);
    const tests = readdirSync(PROM_DIR).filter((f) => f.endsWith(".test.yml"));
    expect(tests.length).toBeGreaterThan(0);
    const out = execFileSync("promtool", ["test", "rules", ...tests], { cwd: PROM_DIR, encoding: "utf8" });
    expect(out).toMatch(/SUCCESS/);
  });
});
