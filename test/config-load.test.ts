/**
 * config/load.ts against real files in a temp dir: defaults, normalisation, secrets, every error
 * at once with its JSON path, freezing, env files and overrides, policy resolution.
 */
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, ConfigNotFoundError, loadConfig, parseConfig, redactedConfig, type ConfigWarning } from "../config/load.ts";
import { formatIssue, formatPath } from "../config/issues.ts";
import { locateConfig } from "../config/locate.ts";
import { parseEnvFile, renderEnvFile } from "../config/env-file.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "ferry-config-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(doc: unknown, name = "ferry.json"): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, typeof doc === "string" ? doc : JSON.stringify(doc, null, 2));
  return file;
}

async function problems(doc: unknown, env: Record<string, string> = {}): Promise<string[]> {
  try {
    await loadConfig(await writeConfig(doc), env);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map(formatIssue);
    throw err;
  }
  throw new Error("expected the config to be rejected");
}

const PRD = { url: "https://engine.example.com/ovirt-engine/api", passwordEnv: "FERRY_PRD_PASSWORD" };

describe("loadConfig", () => {
  it("loadConfig - fills every default, normalises the engine URL and resolves paths against the config's directory", async () => {
    const file = await writeConfig({
      engines: { prd: { ...PRD, caFile: "certs/prd.pem" } },
      store: { path: "backups" },
      vms: { web01: {} },
    });
    const c = await loadConfig(file, { FERRY_PRD_PASSWORD: "pw" });
    expect(c.file).toBe(file);
    expect(c.engines.prd).toMatchObject({
      url: "https://engine.example.com",
      user: "admin@internal",
      insecure: false,
      caFile: path.join(dir, "certs/prd.pem"),
      password: "pw",
    });
    expect(c.store.path).toBe(path.join(dir, "backups"));
    expect(c.nats).toEqual({ servers: ["nats://127.0.0.1:4222"], replicas: 1 });
    expect(c.concurrency).toEqual({ backupsPerEngine: 2, connections: 4 });
    expect(c.restore).toBeUndefined();
    expect(c.vms.web01).toEqual({
      enabled: true,
      engine: "prd",
      schedule: { days: "1111111", time: "02:00" },
      full: { maxChainLength: 14 },
      retention: { keepLast: 7 },
      replicateToDr: false,
    });
  });

  it("loadConfig - an empty object is a valid config (store ./data/backups beside the file, default NATS)", async () => {
    const c = await loadConfig(await writeConfig({}), {});
    expect(c.engines).toEqual({});
    expect(c.vms).toEqual({});
    expect(c.store.path).toBe(path.join(dir, "data", "backups"));
  });

  it("loadConfig - reports every problem at once, each with its JSON path and a plain reason", async () => {
    const lines = await problems({
      engines: {
        prd: { url: "http://engine.example.com", passwordEnv: "FERRY_PRD_PASSWORD", pasword: "x" },
        dr: { url: "https://dr.example.com/somewhere", passwordEnv: "NOT SET" },
      },
      store: { path: "" },
      nats: { servers: ["127.0.0.1:4222"], replicas: 0 },
      vms: {
        "web01.example.com": { schedule: { days: "11111", time: "2:00" }, enabled: "yes" },
        "../etc": {},
        db: { engine: "qa", retention: {}, full: { weeklyDay: "Mon", maxChainLength: 0 } },
      },
      restore: { cluster: "Default" },
      concurrency: { connections: 16 },
      colour: "blue",
    });
    expect(lines).toEqual(
      expect.arrayContaining([
        "engines.prd.url: must be an https URL",
        'engines.prd.pasword: unknown key (did you mean "password"?)',
        "engines.dr.url: must be the engine address (https://engine.example.com) or its API URL (https://engine.example.com/ovirt-engine/api)",
        "engines.dr.passwordEnv: must be an environment variable name such as FERRY_PRD_PASSWORD",
        "engines.prd.passwordEnv: environment variable FERRY_PRD_PASSWORD is not set (put it in ferry.env or export it)",
        "store.path: must be a file path",
        "nats.servers[0]: must be a NATS URL such as nats://127.0.0.1:4222",
        "nats.replicas: must be at least 1",
        'vms["web01.example.com"].schedule.days: must be 7 characters of 0 and 1, Monday first (e.g. "1111100" for Monday to Friday)',
        'vms["web01.example.com"].schedule.time: must be a time of day "HH:MM" (24 hours, e.g. "02:00")',
        'vms["web01.example.com"].enabled: must be true or false',
        'vms["../etc"]: not a valid VM name: use letters, digits, \'.\', \'_\' and \'-\' (at most 255; not \'.\' or \'..\')',
        "vms.db.full.weeklyDay: must be one of: monday, tuesday, wednesday, thursday, friday, saturday, sunday",
        "vms.db.full.maxChainLength: must be at least 1",
        "vms.db.retention: needs at least one of keepDays, keepLast, keepDaily, keepWeekly, keepMonthly",
        'vms.db.engine: engine "qa" is not defined under engines',
        "restore.storageDomain: required",
        "concurrency.connections: must be at most 8",
        "colour: unknown key",
      ]),
    );
    // One line per problem: nothing reported twice.
    expect(new Set(lines).size).toBe(lines.length);
  });

  it("loadConfig - cross-key rules: password sources, replication needs dr and restore, cron or days, NATS credentials", async () => {
    const lines = await problems(
      {
        engines: { prd: { url: "https://e.example.com" }, two: { url: "https://f.example.com", passwordEnv: "A", passwordFile: "p" } },
        nats: { user: "ferry", credsFile: "x.creds" },
        defaults: { replicateToDr: true },
        vms: { a: { schedule: { cron: "0 2 * * *", days: "1111111" } }, b: { retention: { keepDays: 30, maxAgeDays: 7 } } },
      },
      { A: "x" },
    );
    expect(lines).toEqual(
      expect.arrayContaining([
        "engines.prd: needs a password source: set passwordEnv (or passwordFile)",
        "engines.two: set only one of passwordEnv, passwordFile",
        "nats.passwordEnv: required when nats.user is set",
        "nats: use either credsFile or user/passwordEnv, not both",
        "vms.a.schedule: use either cron or days/time, not both",
        "vms.b.retention.maxAgeDays: is smaller than keepDays: the two contradict",
        'vms.a.replicateToDr: needs an engine named "dr" under engines',
        "restore: required when a VM has replicateToDr: set cluster and storageDomain",
      ]),
    );
  });

  it("loadConfig - resolves passwordEnv and passwordFile; a literal password and a world-readable password file warn", async () => {
    await writeFile(path.join(dir, "dr.pw"), "dr-secret\n", { mode: 0o644 });
    await chmod(path.join(dir, "dr.pw"), 0o644);
    const file = await writeConfig({
      engines: {
        prd: PRD,
        dr: { url: "https://dr.example.com", passwordFile: "dr.pw" },
        lab: { url: "https://127.0.0.1:8443", password: "lab-secret", insecure: true },
      },
      nats: { user: "ferry", passwordEnv: "NATS_PW" },
    });
    const warnings: ConfigWarning[] = [];
    const c = await loadConfig(file, { FERRY_PRD_PASSWORD: "prd-secret", NATS_PW: "nats-secret" }, { onWarning: (w) => warnings.push(w) });
    expect(c.engines.prd!.password).toBe("prd-secret");
    expect(c.engines.dr!.password).toBe("dr-secret");
    expect(c.engines.dr!.passwordFile).toBe(path.join(dir, "dr.pw"));
    expect(c.engines.lab!.password).toBe("lab-secret");
    expect(c.nats.password).toBe("nats-secret");
    expect(warnings.map((w) => `${formatPath(w.path)}: ${w.message}`)).toEqual([
      `engines.dr.passwordFile: ${path.join(dir, "dr.pw")} can be read by other users (mode 0644): chmod 600 it`,
      "engines.lab.password: a literal password in the config file: move it to passwordEnv or passwordFile",
      "engines.lab.insecure: TLS verification is off for this engine",
    ]);
  });

  it("loadConfig - a missing or empty password file is an error naming the file", async () => {
    await writeFile(path.join(dir, "empty.pw"), "");
    const lines = await problems({
      engines: { a: { url: "https://a.example.com", passwordFile: "nope.pw" }, b: { url: "https://b.example.com", passwordFile: "empty.pw" } },
    });
    expect(lines).toEqual([
      `engines.a.passwordFile: ${path.join(dir, "nope.pw")} does not exist`,
      `engines.b.passwordFile: ${path.join(dir, "empty.pw")} is empty`,
    ]);
  });

  it("loadConfig - secrets never reach errors, JSON output or ferry config show", async () => {
    const file = await writeConfig({ engines: { prd: { ...PRD }, lab: { url: "https://l.example.com", password: "hunter2-literal" } }, nats: { user: "u", passwordEnv: "NP" } });
    const c = await loadConfig(file, { FERRY_PRD_PASSWORD: "hunter2-env", NP: "hunter2-nats" });
    const json = JSON.stringify(c);
    expect(json).not.toContain("hunter2");
    expect(JSON.stringify(redactedConfig(c))).not.toContain("hunter2");
    expect(json).toContain('"password":"***"');
    // Spreading keeps the real value for the code that needs it.
    expect({ ...c.engines.prd! }.password).toBe("hunter2-env");
    // An invalid config with a literal password: the error has paths and reasons, not values.
    await writeFile(file, JSON.stringify({ engines: { lab: { url: "http://l.example.com", password: "hunter2-literal" } } }));
    const err = await loadConfig(file, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(String((err as Error).message)).not.toContain("hunter2");
    expect(JSON.stringify((err as ConfigError).fields)).not.toContain("hunter2");
  });

  it("loadConfig - returns a deep-frozen object", async () => {
    const c = await loadConfig(await writeConfig({ engines: { prd: PRD }, vms: { web01: {} } }), { FERRY_PRD_PASSWORD: "x" });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.engines.prd)).toBe(true);
    expect(Object.isFrozen(c.vms.web01!.schedule)).toBe(true);
    expect(Object.isFrozen(c.nats.servers)).toBe(true);
    expect(() => {
      (c.vms.web01 as { enabled: boolean }).enabled = false;
    }).toThrow(TypeError);
  });

  it("loadConfig - reads ferry.env beside the config; the environment wins; envFile false or another file", async () => {
    const file = await writeConfig({ engines: { prd: PRD } });
    await writeFile(path.join(dir, "ferry.env"), renderEnvFile({ FERRY_PRD_PASSWORD: "from-file" }), { mode: 0o600 });
    expect((await loadConfig(file, {})).engines.prd!.password).toBe("from-file");
    expect((await loadConfig(file, { FERRY_PRD_PASSWORD: "from-env" })).engines.prd!.password).toBe("from-env");
    await expect(loadConfig(file, {}, { envFile: false })).rejects.toThrow(/FERRY_PRD_PASSWORD is not set/);
    await writeFile(path.join(dir, "other.env"), "FERRY_PRD_PASSWORD=other\n");
    expect((await loadConfig(file, {}, { envFile: path.join(dir, "other.env") })).engines.prd!.password).toBe("other");
    await expect(loadConfig(file, {}, { envFile: path.join(dir, "missing.env") })).rejects.toBeInstanceOf(ConfigNotFoundError);
  });

  it("loadConfig - BACKUP_DIR and NATS_URL override the file", async () => {
    const file = await writeConfig({ store: { path: "x" }, nats: { servers: ["nats://a:4222"], replicas: 3 } });
    const c = await loadConfig(file, { BACKUP_DIR: "/srv/backups", NATS_URL: "nats://n1:4222, nats://n2:4222" });
    expect(c.store.path).toBe("/srv/backups");
    expect(c.nats).toEqual({ servers: ["nats://n1:4222", "nats://n2:4222"], replicas: 3 });
    await expect(loadConfig(file, { NATS_URL: "not a url" })).rejects.toThrow(/nats\.servers\[0\]: must be a NATS URL/);
  });

  it("loadConfig - a missing file is ConfigNotFoundError; broken JSON is ConfigError with line and column", async () => {
    await expect(loadConfig(path.join(dir, "nope.json"), {})).rejects.toMatchObject({ code: "CONFIG_NOT_FOUND" });
    const err = await loadConfig(await writeConfig('{\n  "vms": {\n    "a": {},\n  }\n}'), {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues).toHaveLength(1);
    expect((err as ConfigError).issues[0]!.message).toMatch(/^not valid JSON: .*line 4/);
  });

  it("loadConfig - policies: defaults apply, schedule and retention are replaced whole, full merges key by key", async () => {
    const c = await parseConfig(
      {
        engines: { prd: PRD, dr: { url: "https://dr.example.com", passwordEnv: "FERRY_PRD_PASSWORD" } },
        defaults: {
          enabled: false,
          schedule: { days: "1111100", time: "21:00" },
          full: { maxChainLength: 7, weeklyDay: "sunday" },
          retention: { keepLast: 10 },
          replicateToDr: true,
        },
        vms: {
          plain: {},
          custom: {
            enabled: true,
            schedule: { time: "03:15" },
            full: { everyDays: 3 },
            retention: { keepDays: 30 },
            replicateToDr: false,
          },
          cron: { schedule: { cron: "0 */4 * * *" }, engine: "dr" },
        },
        restore: { cluster: "Default", storageDomain: "sd" },
      },
      { baseDir: dir, env: { FERRY_PRD_PASSWORD: "x" } },
    );
    expect(c.vms.plain).toEqual({
      enabled: false,
      engine: "prd",
      schedule: { days: "1111100", time: "21:00" },
      full: { maxChainLength: 7, weeklyDay: "sunday" },
      retention: { keepLast: 10 },
      replicateToDr: true,
    });
    expect(c.vms.custom).toEqual({
      enabled: true,
      engine: "prd",
      schedule: { days: "1111111", time: "03:15" },
      full: { maxChainLength: 7, weeklyDay: "sunday", everyDays: 3 },
      retention: { keepDays: 30 },
      replicateToDr: false,
    });
    expect(c.vms.cron!.schedule).toEqual({ cron: "0 */4 * * *" });
    expect(c.vms.cron!.engine).toBe("dr");
    expect(c.restore).toEqual({
      cluster: "Default",
      storageDomain: "sd",
      nameSuffix: "_restored",
      replicaSuffix: "_dr",
      start: false,
      replaceExisting: false,
      timeoutMinutes: 60,
    });
  });
});

describe("locateConfig and env files", () => {
  it("locateConfig - --config, then FERRY_CONFIG, then ./ferry.json, then /etc/ferry/ferry.json", () => {
    const exists = (set: string[]) => (f: string) => set.includes(f);
    expect(locateConfig("a.json", { FERRY_CONFIG: "/b.json" }, "/w", exists([]))).toEqual({ file: "/w/a.json", via: "--config" });
    expect(locateConfig(undefined, { FERRY_CONFIG: "b.json" }, "/w", exists([]))).toEqual({ file: "/w/b.json", via: "FERRY_CONFIG" });
    expect(locateConfig(undefined, {}, "/w", exists(["/w/ferry.json", "/etc/ferry/ferry.json"]))).toEqual({ file: "/w/ferry.json", via: "./ferry.json" });
    expect(locateConfig(undefined, {}, "/w", exists(["/etc/ferry/ferry.json"]))).toEqual({ file: "/etc/ferry/ferry.json", via: "/etc/ferry/ferry.json" });
    expect(locateConfig(undefined, {}, "/w", exists([]))).toEqual({ file: undefined, via: "none" });
  });

  it("env file - values with spaces, quotes, $, backslashes and newlines survive a round trip", () => {
    const values = { A: "plain", B: "with space $HOME `x`", C: "it's \"quoted\" \\ back", D: "two\nlines" };
    const text = renderEnvFile(values, ["comment"]);
    expect(text.startsWith("# comment\n")).toBe(true);
    expect(text).toContain("A='plain'\n");
    expect(text).toContain("B='with space $HOME `x`'\n");
    expect(parseEnvFile(text)).toEqual(values);
    expect(parseEnvFile("export X=1\n# c\n\nY = 'z'\nbad line\n")).toEqual({ X: "1", Y: "z" });
    expect(() => renderEnvFile({ "BAD NAME": "x" })).toThrow(/not an environment variable name/);
  });
});
