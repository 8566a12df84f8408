/**
 * `ferry config import` with the exact variables.json (test/fixtures/airflow-variables.json),
 * through the library and through the command: mapping, secrets only in ferry.env (0600),
 * unmapped fields reported with reasons, result valid for loadConfig, nothing written on failure.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import configCommand from "../cli/commands/config.ts";
import { importAirflowVariables } from "../config/import-airflow.ts";
import { loadConfig } from "../config/load.ts";
import { runCommand } from "./config-cli-io.ts";

const FIXTURE = fileURLToPath(new URL("./fixtures/airflow-variables.json", import.meta.url));
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "ferry-import-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const EXPECTED_CONFIG = {
  engines: {
    prd: {
      url: "https://manager.example.com",
      user: "admin@internal",
      passwordEnv: "FERRY_PRD_PASSWORD",
      caFile: "/opt/airflow/certs/PRD/ca.pem",
    },
    dr: {
      url: "https://dr-manager.example.com",
      user: "admin@internal",
      passwordEnv: "FERRY_DR_PASSWORD",
      caFile: "/opt/airflow/certs/DR/ca.pem",
    },
  },
  store: { path: "/opt/airflow/backups" },
  defaults: { schedule: { time: "02:00" }, full: { maxChainLength: 11, everyDays: 7 } },
  restore: {
    cluster: "Default",
    storageDomain: "storage-dr",
    nameSuffix: "_restored",
    start: false,
    replaceExisting: true,
    diskInterface: "sata",
    timeoutMinutes: 60,
  },
  vms: {
    "vm-1": { schedule: { days: "1111111", time: "02:00" }, retention: { keepDays: 7 } },
    "vm-2": { schedule: { days: "1000001", time: "02:00" }, retention: { keepDays: 30 } },
    "db-1": {
      enabled: true,
      schedule: { days: "1010101", time: "22:00" },
      full: { weeklyDay: "monday" },
      retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 3, maxAgeDays: 90 },
      replicateToDr: true,
    },
  },
};

describe("config import (library)", () => {
  it("config import - maps the issue's example variables.json field by field", async () => {
    const vars = JSON.parse(await readFile(FIXTURE, "utf8")) as unknown;
    const r = importAirflowVariables(vars);
    expect(r.config).toEqual(EXPECTED_CONFIG);
    expect(r.secrets).toEqual({ FERRY_PRD_PASSWORD: "secret", FERRY_DR_PASSWORD: "secret" });
    expect(r.unmapped).toEqual([
      {
        field: "checkpoints_file",
        reason: "not needed: Ferry keeps checkpoints in the NATS KV bucket ferry-chains and in each VM's restore-points.json in the store",
      },
      {
        field: "restore_settings.backup_old_vm",
        reason: "not supported: Ferry does not export the VM it replaces on the DR engine; back that VM up first if you need it",
      },
    ]);
    expect(JSON.stringify(r.config)).not.toContain("secret\"");
  });

  it("config import - reports every field it cannot use, with the reason, and maps the other schedule forms", () => {
    const r = importAirflowVariables({
      source_ovirt_url: "https://m.example.com/ovirt-engine/api",
      source_ovirt_password: "p",
      airflow_dag_id: "ovirt_backup",
      backup_settings: { incremental_enabled: false, max_incremental_chain_length: 5, default_backup_time: "25:00", compression: "zstd" },
      restore_settings: { target_cluster_name: "C", target_storage_domain_name: "S", disk_interface: "floppy", timeout_minutes: "soon" },
      vms_config: {
        daily: { schedule: { type: "daily", time: "01:30" } },
        weekdays: { schedule: { type: "weekdays" } },
        weekly: { schedule: { type: "weekly", day: "Friday" }, backup_type: { full_backup_frequency: "daily" } },
        odd: { schedule: { type: "fortnightly" }, backup_type: { full_backup_frequency: "monthly" }, retention: { max_backup_age_days: 60 } },
        bad: { backup_policy: "1111", retention_days: "a week", auto_restore: "yes", colour: "red" },
        "bad name!": {},
      },
    });
    const unmapped = Object.fromEntries(r.unmapped.map((u) => [u.field, u.reason]));
    expect(unmapped).toMatchObject({
      airflow_dag_id: "unknown top-level field: Ferry has no equivalent",
      "backup_settings.max_incremental_chain_length": "ignored: incremental_enabled is false",
      "backup_settings.default_backup_time": 'not a time of day "HH:MM"; the default 02:00 is used',
      "backup_settings.compression": "unknown backup_settings field: Ferry has no equivalent",
      "restore_settings.disk_interface": expect.stringMatching(/^not one of virtio_scsi, virtio, sata, ide, spapr_vscsi/),
      "restore_settings.timeout_minutes": expect.stringMatching(/^not a whole number of minutes/),
      "vms_config.odd.schedule.type": 'unknown schedule type "fortnightly": set schedule.days by hand',
      "vms_config.bad.backup_policy": expect.stringMatching(/^not 7 characters of 0 and 1/),
      "vms_config.bad.retention_days": "not a positive whole number of days",
      "vms_config.bad.auto_restore": "not true or false",
      "vms_config.bad.colour": "unknown VM field: Ferry has no equivalent",
      "vms_config.bad name!": expect.stringMatching(/VM left out$/),
    });
    const vms = r.config.vms as Record<string, Record<string, unknown>>;
    expect(vms.daily!.schedule).toEqual({ days: "1111111", time: "01:30" });
    expect(vms.weekdays!.schedule).toEqual({ days: "1111100" });
    expect(vms.weekly!.schedule).toEqual({ days: "0000100" });
    expect(vms.weekly!.full).toEqual({ maxChainLength: 1 });
    expect(vms.odd!.full).toEqual({ everyDays: 30 });
    expect(vms.odd!.retention).toEqual({ maxAgeDays: 60, keepLast: 7 });
    expect(vms["bad name!"]).toBeUndefined();
    expect((r.config.defaults as Record<string, unknown>).full).toEqual({ maxChainLength: 1 });
    expect(r.notes.join("\n")).toMatch(/monthly → full.everyDays 30/);
    expect(r.notes.join("\n")).toMatch(/only a maximum age: keepLast 7 added/);
  });
});

describe("ferry config import (command)", () => {
  it("config import - writes ferry.json and a 0600 ferry.env, never prints a password, and the result loads", async () => {
    const r = await runCommand(configCommand, ["import", FIXTURE, "--out", "ferry.json"], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/'secret'|"secret"|[:=]\s*secret\b/);
    expect(r.stderr).toBe(
      "not mapped: checkpoints_file: not needed: Ferry keeps checkpoints in the NATS KV bucket ferry-chains and in each VM's restore-points.json in the store\n" +
        "not mapped: restore_settings.backup_old_vm: not supported: Ferry does not export the VM it replaces on the DR engine; back that VM up first if you need it\n",
    );
    expect(r.stdout).toContain(`wrote ${path.join(dir, "ferry.json")}: 2 engines, 3 VMs`);
    expect(r.stdout).toContain("FERRY_PRD_PASSWORD, FERRY_DR_PASSWORD");
    expect(JSON.parse(await readFile(path.join(dir, "ferry.json"), "utf8"))).toEqual(EXPECTED_CONFIG);
    const envStat = await stat(path.join(dir, "ferry.env"));
    expect(envStat.mode & 0o777).toBe(0o600);
    const envText = await readFile(path.join(dir, "ferry.env"), "utf8");
    expect(envText).toContain("FERRY_PRD_PASSWORD='secret'\n");
    expect(envText).toContain("FERRY_DR_PASSWORD='secret'\n");
    // loadConfig picks ferry.env up beside the config: valid with no environment at all.
    const c = await loadConfig(path.join(dir, "ferry.json"), {});
    expect(c.engines.prd!.password).toBe("secret");
    expect(c.vms["db-1"]!.full).toEqual({ maxChainLength: 11, everyDays: 7, weeklyDay: "monday" });
    const v = await runCommand(configCommand, ["validate", "--config", "ferry.json"], { cwd: dir, env: {} });
    expect(v.code).toBe(0);
    expect(v.stdout).toBe(`${path.join(dir, "ferry.json")} is valid: 2 engines, 3 VMs, store /opt/airflow/backups\n`);
  });

  it("config import - --json reports files, secret names and unmapped fields as JSON, without the passwords", async () => {
    const vars = JSON.parse(await readFile(FIXTURE, "utf8")) as Record<string, unknown>;
    vars.source_ovirt_password = "Prd-pw-7731";
    vars.target_ovirt_password = "Dr-pw-8842";
    await writeFile(path.join(dir, "variables.json"), JSON.stringify(vars));
    const r = await runCommand(configCommand, ["import", "variables.json", "--out", "out/../ferry.json", "--env-out", "secrets.env", "--json"], { cwd: dir });
    expect(r.stdout + r.stderr).not.toMatch(/Prd-pw-7731|Dr-pw-8842/);
    expect(await readFile(path.join(dir, "secrets.env"), "utf8")).toContain("FERRY_DR_PASSWORD='Dr-pw-8842'");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      ok: true,
      configFile: path.join(dir, "ferry.json"),
      envFile: path.join(dir, "secrets.env"),
      secretNames: ["FERRY_PRD_PASSWORD", "FERRY_DR_PASSWORD"],
      engines: ["prd", "dr"],
      vms: ["vm-1", "vm-2", "db-1"],
    });
    expect((report.unmapped as { field: string }[]).map((u) => u.field)).toEqual(["checkpoints_file", "restore_settings.backup_old_vm"]);
    expect(existsSync(path.join(dir, "ferry.env"))).toBe(false);
  });

  it("config import - refuses to overwrite without --force and changes nothing; --force replaces", async () => {
    await writeFile(path.join(dir, "ferry.json"), "{}\n");
    const r = await runCommand(configCommand, ["import", FIXTURE], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("already exists: use --force");
    expect(await readFile(path.join(dir, "ferry.json"), "utf8")).toBe("{}\n");
    expect(existsSync(path.join(dir, "ferry.env"))).toBe(false);
    const forced = await runCommand(configCommand, ["import", FIXTURE, "--force"], { cwd: dir });
    expect(forced.code).toBe(0);
    expect(JSON.parse(await readFile(path.join(dir, "ferry.json"), "utf8"))).toEqual(EXPECTED_CONFIG);
  });

  it("config import - a result that does not validate exits 4, lists the problems and writes nothing", async () => {
    const vars = JSON.parse(await readFile(FIXTURE, "utf8")) as Record<string, unknown>;
    vars.target_ovirt_url = "http://dr-manager.example.com/ovirt-engine/api";
    delete vars.restore_settings;
    await writeFile(path.join(dir, "variables.json"), JSON.stringify(vars));
    const r = await runCommand(configCommand, ["import", "variables.json"], { cwd: dir });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("nothing written");
    expect(r.stderr).toContain("engines.dr.url: must be an https URL");
    expect(r.stderr).toContain("restore: required when a VM has replicateToDr");
    expect(r.stderr).toContain("not mapped: target_ovirt_url: must be an https URL; copied as it is");
    expect(r.stderr).not.toContain("'secret'");
    expect(existsSync(path.join(dir, "ferry.json"))).toBe(false);
    expect(existsSync(path.join(dir, "ferry.env"))).toBe(false);
  });

  it("config import - a missing input exits 3, non-JSON exits 4, a wrong command line exits 2", async () => {
    expect((await runCommand(configCommand, ["import", "nope.json"], { cwd: dir })).code).toBe(3);
    await writeFile(path.join(dir, "bad.json"), "not json");
    const bad = await runCommand(configCommand, ["import", "bad.json"], { cwd: dir });
    expect(bad.code).toBe(4);
    expect(bad.stderr).toMatch(/bad\.json: not valid JSON/);
    await writeFile(path.join(dir, "array.json"), "[]");
    expect((await runCommand(configCommand, ["import", "array.json"], { cwd: dir })).code).toBe(4);
    expect((await runCommand(configCommand, ["import"], { cwd: dir })).code).toBe(2);
    expect((await runCommand(configCommand, ["import", "a", "b"], { cwd: dir })).code).toBe(2);
    expect((await runCommand(configCommand, ["import", FIXTURE, "--bogus"], { cwd: dir })).code).toBe(2);
  });
});
