/**
 * The config contract: the checked-in JSON Schema is generated from the zod schema, the example
 * configs validate with both, and docs/configuration.md documents every key with its default.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv2020 } from "ajv/dist/2020.js";
import { describe, expect, it } from "vitest";
import { configJsonSchema, cronProblem, engineUrlProblem, normaliseEngineUrl } from "../contracts/config.ts";
import { parseConfig } from "../config/load.ts";
import { renderConfigSchema, SCHEMA_FILE } from "../config/write-schema.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const read = (rel: string) => readFileSync(path.join(REPO, rel), "utf8");

function ajvValidator() {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  return ajv.compile(JSON.parse(read("contracts/config.schema.json")) as object);
}

describe("contracts/config.schema.json", () => {
  it("config schema - the checked-in JSON Schema is what the zod schema generates (run npx tsx config/write-schema.ts)", () => {
    expect(readFileSync(SCHEMA_FILE, "utf8")).toBe(renderConfigSchema());
  });

  it("config schema - infra/ferry.example.json validates with loadConfig's parser and with ajv", async () => {
    const example = JSON.parse(read("infra/ferry.example.json")) as Record<string, unknown>;
    const validate = ajvValidator();
    expect(validate(example), JSON.stringify(validate.errors)).toBe(true);
    const warnings: string[] = [];
    // passwordFile of the dr engine points at /etc/ferry/secrets; resolve against a temp copy instead.
    const { mkdtemp, writeFile, mkdir, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const dir = await mkdtemp(path.join(tmpdir(), "ferry-example-"));
    try {
      await mkdir(path.join(dir, "secrets"));
      await writeFile(path.join(dir, "secrets", "dr-password"), "dr-secret\n", { mode: 0o600 });
      const engines = example.engines as Record<string, Record<string, unknown>>;
      engines.dr!.passwordFile = "secrets/dr-password";
      const config = await parseConfig(example, {
        baseDir: dir,
        env: { FERRY_PRD_PASSWORD: "prd-secret" },
        onWarning: (w) => warnings.push(w.message),
      });
      expect(warnings).toEqual([]);
      expect(Object.keys(config.vms)).toEqual(["web01", "web02", "db-1", "legacy-app"]);
      expect(config.engines.dr!.url).toBe("https://dr-engine.example.com");
      expect(config.engines.dr!.password).toBe("dr-secret");
      expect(config.vms["db-1"]!.schedule).toEqual({ cron: "0 */6 * * *" });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("config schema - the Docker example config validates (passwords from the environment)", async () => {
    const doc = JSON.parse(read("infra/docker/etc/ferry.json")) as unknown;
    expect(ajvValidator()(doc)).toBe(true);
    const config = await parseConfig(doc, {
      baseDir: "/etc/ferry",
      env: { FERRY_PRD_PASSWORD: "a", FERRY_DR_PASSWORD: "b" },
    });
    expect(config.engines.prd!.caFile).toBe("/etc/ferry/certs/prd-ca.pem");
    expect(config.store.path).toBe("/var/lib/ferry/backups");
  });

  it("config schema - ajv, like zod, rejects unknown keys, bad masks, bad times and http URLs", () => {
    const validate = ajvValidator();
    const bad = [
      { stor: {} },
      { vms: { a: { schedule: { days: "11111" } } } },
      { vms: { a: { schedule: { time: "24:00" } } } },
      { engines: { prd: { url: "http://engine", passwordEnv: "X" } } },
      { vms: { "../etc": {} } },
      { concurrency: { connections: 9 } },
    ];
    for (const doc of bad) expect(validate(doc), JSON.stringify(doc)).toBe(false);
    expect(validate({})).toBe(true);
  });
});

describe("docs/configuration.md", () => {
  /** Every key path of the JSON Schema, with `<name>` / `<vm>` for record keys; defaults.* map to vms.<vm>.*. */
  function keyPaths(): { key: string; def: unknown; hasDefault: boolean }[] {
    const out: { key: string; def: unknown; hasDefault: boolean }[] = [];
    const walk = (node: Record<string, unknown>, prefix: string) => {
      const props = (node.properties ?? {}) as Record<string, Record<string, unknown>>;
      for (const [k, v] of Object.entries(props)) {
        const key = `${prefix}${k}`;
        out.push({ key, def: v.default, hasDefault: "default" in v });
        walk(v, `${key}.`);
        const ap = v.additionalProperties;
        if (ap && typeof ap === "object") walk(ap as Record<string, unknown>, `${key}.<${k === "engines" ? "name" : "vm"}>.`);
      }
    };
    walk(configJsonSchema(), "");
    return out;
  }

  it("config docs - every key of the schema is documented, with its default", () => {
    const doc = read("docs/configuration.md");
    const rows = doc.split("\n").filter((l) => l.startsWith("| `"));
    const missing: string[] = [];
    for (const { key, def, hasDefault } of keyPaths()) {
      if (["engines", "store", "nats", "vms", "restore", "concurrency", "defaults"].includes(key)) continue;
      const documented = key.startsWith("defaults.") ? key.replace(/^defaults\./, "vms.<vm>.") : key;
      const row = rows.find((r) => r.startsWith(`| \`${documented}\` |`));
      if (!row) {
        missing.push(`${documented}: no table row`);
        continue;
      }
      if (hasDefault && def !== undefined && !(typeof def === "object" && Object.keys(def as object).length === 0)) {
        const cell = row.split(" | ")[1] ?? "";
        if (!cell.includes(`\`${JSON.stringify(def).replace(/,/g, ", ").replace(/:/g, ": ")}\``) && !cell.includes(`\`${JSON.stringify(def)}\``)) {
          missing.push(`${documented}: default ${JSON.stringify(def)} not in "${cell}"`);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});

describe("engine URLs and cron", () => {
  it("config schema - engine URLs: the three accepted forms normalise to the engine base; others are explained", () => {
    for (const u of [
      "https://engine.example.com",
      "https://engine.example.com/",
      "https://engine.example.com/ovirt-engine",
      "https://engine.example.com/ovirt-engine/api",
      "https://engine.example.com/ovirt-engine/api/",
    ]) {
      expect(engineUrlProblem(u)).toBeUndefined();
      expect(normaliseEngineUrl(u)).toBe("https://engine.example.com");
    }
    expect(normaliseEngineUrl("https://engine.example.com:8443/ovirt-engine/api")).toBe("https://engine.example.com:8443");
    expect(engineUrlProblem("http://engine.example.com")).toBe("must be an https URL");
    expect(engineUrlProblem("engine.example.com")).toBe("must be an https URL");
    expect(engineUrlProblem("https://admin:pw@engine.example.com")).toMatch(/must not contain a user or password/);
    expect(engineUrlProblem("https://engine.example.com/api")).toMatch(/must be the engine address/);
    expect(engineUrlProblem("https://engine.example.com/ovirt-engine/api?x=1")).toMatch(/query/);
  });

  it("config schema - cron expressions (domain/schedule's grammar): standard forms, names and macros pass, bad fields are named", () => {
    for (const ok of ["0 2 * * *", "*/15 * * * *", "0 22 * * 1-5", "30 1 1,15 * 0", "0 0 * 1-12/3 7", "0 2 * * MON", "0 2 * jan-mar mon-fri", "@daily"]) {
      expect(cronProblem(ok), ok).toBeUndefined();
    }
    expect(cronProblem("0 2 * *")).toMatch(/5 fields/);
    expect(cronProblem("60 2 * * *")).toMatch(/^minute "60": values must be 0\.\.59/);
    expect(cronProblem("0 24 * * *")).toMatch(/^hour/);
    expect(cronProblem("0 2 0 * *")).toMatch(/^day of month/);
    expect(cronProblem("0 2 * 13 *")).toMatch(/^month/);
    expect(cronProblem("0 2 * * MOON")).toMatch(/^day of week "MOON": use numbers, names/);
    expect(cronProblem("0 5-2 * * *")).toMatch(/range start is after its end/);
    expect(cronProblem("*/0 * * * *")).toMatch(/step must be at least 1/);
  });
});
