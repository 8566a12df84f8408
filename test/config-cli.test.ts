/** `ferry config validate|show` in-process: output, exit codes, secrets hidden. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import configCommand from "../cli/commands/config.ts";
import { runCommand } from "./config-cli-io.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "ferry-config-cli-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const GOOD = {
  engines: { prd: { url: "https://engine.example.com/ovirt-engine/api", passwordEnv: "FERRY_PRD_PASSWORD" } },
  vms: { web01: {} },
};

describe("ferry config validate / show", () => {
  it("config cli - validate prints a one-line summary and exits 0; --json gives engines, VMs and warnings", async () => {
    await writeFile(path.join(dir, "ferry.json"), JSON.stringify({ ...GOOD, engines: { ...GOOD.engines, lab: { url: "https://l.example.com", password: "lit" } } }));
    const env = { FERRY_PRD_PASSWORD: "pw" };
    const r = await runCommand(configCommand, ["validate"], { cwd: dir, env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${path.join(dir, "ferry.json")} is valid: 2 engines, 1 VM, store ${path.join(dir, "data/backups")}\n`);
    expect(r.stderr).toBe("warning: engines.lab.password: a literal password in the config file: move it to passwordEnv or passwordFile\n");
    const j = await runCommand(configCommand, ["validate", "--json"], { cwd: dir, env });
    expect(JSON.parse(j.stdout)).toEqual({
      ok: true,
      file: path.join(dir, "ferry.json"),
      engines: ["prd", "lab"],
      vms: ["web01"],
      warnings: [{ path: "engines.lab.password", message: "a literal password in the config file: move it to passwordEnv or passwordFile" }],
    });
  });

  it("config cli - validate of an invalid config prints every problem and exits 4; --json lists them", async () => {
    await writeFile(path.join(dir, "bad.json"), JSON.stringify({ engines: { prd: { url: "http://x" } }, vms: { a: { schedule: { days: "7" } } } }));
    const r = await runCommand(configCommand, ["validate", "--config", "bad.json"], { cwd: dir, env: {} });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`${path.join(dir, "bad.json")} is not a valid Ferry config (3 problems):`);
    expect(r.stderr).toContain("  engines.prd.url: must be an https URL\n");
    expect(r.stderr).toContain("  engines.prd: needs a password source: set passwordEnv (or passwordFile)\n");
    expect(r.stderr).toContain("  vms.a.schedule.days: must be 7 characters of 0 and 1");
    const j = await runCommand(configCommand, ["validate", "--config", "bad.json", "--json"], { cwd: dir, env: {} });
    const out = JSON.parse(j.stdout) as { ok: boolean; issues: { path: string }[] };
    expect(out.ok).toBe(false);
    expect(out.issues.map((i) => i.path)).toEqual(["engines.prd.url", "vms.a.schedule.days", "engines.prd"]);
  });

  it("config cli - a missing config exits 3 naming the file; FERRY_CONFIG is honoured", async () => {
    const r = await runCommand(configCommand, ["validate"], { cwd: dir, env: { FERRY_CONFIG: "elsewhere.json" } });
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(`ferry config: ${path.join(dir, "elsewhere.json")}: no such file\n`);
  });

  it("config cli - show prints the effective config with defaults and hides passwords", async () => {
    await writeFile(path.join(dir, "ferry.json"), JSON.stringify(GOOD));
    const r = await runCommand(configCommand, ["show"], { cwd: dir, env: { FERRY_PRD_PASSWORD: "TopSecret99" } });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("TopSecret99");
    const shown = JSON.parse(r.stdout) as Record<string, any>;
    expect(shown.engines.prd).toEqual({
      url: "https://engine.example.com",
      user: "admin@internal",
      passwordEnv: "FERRY_PRD_PASSWORD",
      insecure: false,
      password: "***",
    });
    expect(shown.vms.web01.retention).toEqual({ keepLast: 7 });
  });

  it("config cli - unknown or missing subcommands and bad options exit 2 with the usage", async () => {
    const none = await runCommand(configCommand, [], { cwd: dir });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("missing subcommand");
    expect(none.stderr).toContain("ferry config validate");
    expect((await runCommand(configCommand, ["frob"], { cwd: dir })).code).toBe(2);
    const bad = await runCommand(configCommand, ["validate", "--nope"], { cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Unknown option '--nope'/);
  });
});
