/**
 * One schedule grammar: every row goes through `ferry config validate` (the CLI command, in
 * process), the scheduler's parser (compileSchedule, what runSchedule uses) and `ferry schedule
 * --dry-run`, and all three must give the row's verdict. The JSON Schema only describes the shape
 * of a cron expression, so it must accept every row Ferry accepts (a superset) and is checked
 * against the rows whose shape is wrong.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import configCommand from "../cli/commands/config.ts";
import scheduleCommand from "../cli/commands/schedule.ts";
import { SCHEMA_FILE } from "../config/write-schema.ts";
import { compileSchedule, type Schedule } from "../domain/schedule/mod.ts";
import { runCommand } from "./config-cli-io.ts";

/** [cron expression, accepted?, JSON Schema shape ok? (default: same as accepted)] */
const CRON_ROWS: [string, boolean, boolean?][] = [
  // macros
  ["@daily", true],
  ["@weekly", true],
  ["@hourly", true],
  ["@monthly", true],
  ["@yearly", true],
  ["@annually", true],
  ["@midnight", true],
  ["@DAILY", true],
  ["@fortnightly", false, true],
  ["@ daily", false],
  // names
  ["0 2 * * MON", true],
  ["0 2 * * mon-fri", true],
  ["0 2 * jan-mar,dec sun", true],
  ["0 2 13 * fri", true],
  ["0 2 * * funday", false, true],
  ["0 2 * jan-foo *", false, true],
  ["0 2 mon * *", false, true],
  ["MON", false],
  ["mon-fri", false],
  // numbers, steps, ranges, lists
  ["*/15 * * * *", true],
  ["0 2 * * 1-5", true],
  ["0 */6 * * *", true],
  ["30 1 1,15 * 0", true],
  ["0 0 * 1-12/3 7", true],
  ["5/20 * * * *", true],
  ["10-20/5 2-4,22 * * *", true],
  ["0 0 1 1 *", true],
  ["  0 2 * * *  ", true],
  ["0\t2 * * *", true],
  ["60 * * * *", false, true],
  ["0 25 * * *", false, true],
  ["0 0 0 * *", false, true],
  ["0 0 32 * *", false, true],
  ["0 0 * 13 *", false, true],
  ["0 0 * * 8", false, true],
  ["* 5-2 * * *", false, true],
  ["*/0 * * * *", false, true],
  ["1-2-3 * * * *", false, true],
  ["0 2 * * mon-", false, true],
  ["0 2 * * mon/", false, true],
  ["0 2 * * 1,,2", false, true],
  ["100 * * * *", false, true],
  // not cron at all
  ["bad", false],
  ["", false],
  ["   ", false],
  ["0 0 * * * *", false],
  ["* * * *", false],
  ["0 2 * * @daily", false],
  ["0 2 * * 1;reboot", false],
];

/** [days, time, accepted?] */
const DAYS_TIME_ROWS: [string, string, boolean][] = [
  ["1111111", "02:00", true],
  ["1111100", "23:59", true],
  ["0000000", "00:00", true],
  ["111110", "02:00", false],
  ["11111000", "02:00", false],
  ["111112x", "02:00", false],
  ["1111111", "24:00", false],
  ["1111111", "2:00", false],
  ["1111111", "02:60", false],
  ["1111111", "", false],
];

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "ferry-grammar-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function configWith(schedule: Record<string, string>): Promise<string> {
  const file = path.join(dir, `ferry-${n++}.json`);
  await writeFile(file, JSON.stringify({ engines: { prd: { url: "https://engine.example.com", passwordEnv: "P" } }, vms: { web01: { schedule } } }));
  return file;
}

/** `ferry config validate --json`: accepted, or the messages reported for the schedule. */
async function viaConfigValidate(schedule: Record<string, string>): Promise<{ ok: boolean; issues: string[] }> {
  const r = await runCommand(configCommand, ["validate", "--json", "--config", await configWith(schedule)], { cwd: dir, env: { P: "pw" } });
  const out = JSON.parse(r.stdout) as { ok: boolean; issues?: { path: string; message: string }[] };
  expect([0, 4], r.stderr).toContain(r.code);
  expect(out.ok).toBe(r.code === 0);
  return { ok: out.ok, issues: (out.issues ?? []).map((i) => `${i.path}: ${i.message}`) };
}

/** The scheduler's parser, as runSchedule calls it. */
function viaScheduler(schedule: Schedule): { ok: boolean; message?: string } {
  try {
    compileSchedule(schedule);
    return { ok: true };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

/** `ferry schedule --dry-run`: reads the same config file and runs the scheduler over it. */
async function viaScheduleCommand(schedule: Record<string, string>): Promise<number> {
  const args = ["--config", await configWith(schedule), "--dry-run", "--now", "2025-06-02T02:05:00Z", "--tz", "UTC"];
  return (await runCommand(scheduleCommand, args, { cwd: dir, env: {} })).code;
}

const ajv = new Ajv2020({ allErrors: true, strict: false });
const jsonSchemaAccepts = ajv.compile(JSON.parse(readFileSync(SCHEMA_FILE, "utf8")) as object);

describe("one schedule grammar: ferry config validate and the scheduler agree", () => {
  it("schedule grammar - cron rows: config validate, the scheduler's parser and ferry schedule give the same verdict", async () => {
    const disagreements: string[] = [];
    for (const [cron, accepted, shapeOk = accepted] of CRON_ROWS) {
      const config = await viaConfigValidate({ cron });
      const scheduler = viaScheduler({ cron });
      const command = await viaScheduleCommand({ cron });
      const row = JSON.stringify(cron);
      if (config.ok !== scheduler.ok) disagreements.push(`${row}: config validate ${config.ok}, scheduler ${scheduler.ok}`);
      if (config.ok !== accepted) disagreements.push(`${row}: expected ${accepted ? "valid" : "invalid"}, config validate says ${config.ok} ${config.issues.join("; ")}`);
      if ((command === 0) !== accepted) disagreements.push(`${row}: ferry schedule --dry-run exit ${command}`);
      if (!accepted) {
        // Both name the problem in the same words (the config adds the JSON path, the scheduler the expression).
        const problem = config.issues.find((i) => i.startsWith("vms.web01.schedule.cron: "))?.slice("vms.web01.schedule.cron: ".length);
        if (!problem || !scheduler.message?.endsWith(`: ${problem}`)) {
          disagreements.push(`${row}: config says ${JSON.stringify(config.issues)}, scheduler ${JSON.stringify(scheduler.message)}`);
        }
        if (command !== 4) disagreements.push(`${row}: ferry schedule --dry-run should exit 4, got ${command}`);
      }
      const inSchema = jsonSchemaAccepts({ vms: { web01: { schedule: { cron } } } });
      if (inSchema !== shapeOk) disagreements.push(`${row}: JSON Schema ${inSchema ? "accepts" : "rejects"} it`);
    }
    expect(disagreements).toEqual([]);
  }, 60_000);

  it("schedule grammar - days/time rows: config validate and the scheduler's parser give the same verdict", async () => {
    const disagreements: string[] = [];
    for (const [days, time, accepted] of DAYS_TIME_ROWS) {
      const config = await viaConfigValidate({ days, time });
      const scheduler = viaScheduler({ days, time });
      const row = JSON.stringify({ days, time });
      if (config.ok !== scheduler.ok || config.ok !== accepted) {
        disagreements.push(`${row}: expected ${accepted}, config validate ${config.ok}, scheduler ${scheduler.ok}`);
      }
      if (jsonSchemaAccepts({ vms: { web01: { schedule: { days, time } } } }) !== accepted) disagreements.push(`${row}: JSON Schema disagrees`);
    }
    expect(disagreements).toEqual([]);
  });
});
