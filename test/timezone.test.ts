/**
 * One time zone (issue 8 item 7): the config's `timeZone` is the calendar of the schedules (the
 * `ferry` CLI as a child process whose TZ differs from it), of the weekly full day and of
 * retention (config → settingsFromConfig → the functions' policies); without one, the machine's
 * zone (the process's TZ) is used.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../config/load.ts";
import { decideMode } from "../domain/backup/decide.ts";
import { selectKept } from "../domain/retention/mod.ts";
import { settingsFromConfig } from "../pipeline/composition.ts";

const ferryBin = fileURLToPath(new URL("../cli/ferry.mjs", import.meta.url));
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-tz-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** `ferry <args>` in a child process with this TZ; stdout, stderr and the exit code. */
function ferry(args: string[], tz: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ferryBin, ...args], { env: { PATH: process.env.PATH ?? "", TZ: tz, FERRY_PRD_PASSWORD: "x" }, cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (b) => (out += String(b)));
    child.stderr.on("data", (b) => (err += String(b)));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out, err }));
  });
}

async function configFile(name: string, extra: Record<string, unknown>): Promise<string> {
  const file = join(dir, name);
  await writeFile(
    file,
    JSON.stringify({
      engines: { prd: { url: "https://engine.example.com", passwordEnv: "FERRY_PRD_PASSWORD" } },
      vms: { web01: { schedule: { days: "1111111", time: "02:30" }, full: { weeklyDay: "monday" }, retention: { keepDaily: 3 } } },
      ...extra,
    }),
  );
  return file;
}

/** The slots `ferry schedule --dry-run --json` finds due in (since, now]. */
async function dueSlots(config: string, tz: string, since: string, now: string): Promise<string[]> {
  const r = await ferry(["schedule", "--dry-run", "--json", "--config", config, "--since", since, "--now", now], tz);
  expect(r.code, r.err).toBe(0);
  return r.out.trim().split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { slot: string }).slot);
}

describe("one time zone", () => {
  it("timezone - ferry schedule reads the slots in the config's timeZone, not the process's TZ (02:30 on New York's spring-forward day runs at 03:00 EDT)", async () => {
    const ny = await configFile("ny.json", { timeZone: "America/New_York" });
    // The process runs in Tokyo (no DST): 02:30 JST would be 17:30 UTC the day before.
    expect(await dueSlots(ny, "Asia/Tokyo", "2026-03-07T12:00:00Z", "2026-03-08T12:00:00Z")).toEqual(["2026-03-08T07:00:00Z"]);
    // Fall-back day: the repeated 01:30..01:59 does not matter for 02:30; it is due once, at 02:30 EST.
    expect(await dueSlots(ny, "Europe/Berlin", "2026-10-31T12:00:00Z", "2026-11-01T12:00:00Z")).toEqual(["2026-11-01T07:30:00Z"]);
    // The same config in a process started with yet another TZ gives the same slots.
    expect(await dueSlots(ny, "UTC", "2026-03-07T12:00:00Z", "2026-03-08T12:00:00Z")).toEqual(["2026-03-08T07:00:00Z"]);
  }, 60_000);

  it("timezone - without timeZone in the config the machine's zone is used; --tz overrides both for one run", async () => {
    const plain = await configFile("plain.json", {});
    expect(await dueSlots(plain, "Asia/Tokyo", "2026-03-07T12:00:00Z", "2026-03-08T12:00:00Z")).toEqual(["2026-03-07T17:30:00Z"]);
    const r = await ferry(["schedule", "--dry-run", "--json", "--config", plain, "--tz", "Europe/Berlin", "--since", "2026-03-28T12:00:00Z", "--now", "2026-03-29T12:00:00Z"], "Asia/Tokyo");
    expect(r.out.trim().split("\n").map((l) => (JSON.parse(l) as { slot: string }).slot)).toEqual(["2026-03-29T01:00:00Z"]); // 03:00 CEST, after the jump
  }, 60_000);

  it("timezone - a bad timeZone is refused with its path, nothing runs (exit 4)", async () => {
    const bad = await configFile("bad.json", { timeZone: "Mars/Olympus" });
    const r = await ferry(["schedule", "--dry-run", "--config", bad, "--now", "2026-03-08T12:00:00Z"], "UTC");
    expect(r.code).toBe(4);
    expect(r.err).toMatch(/timeZone: unknown time zone "Mars\/Olympus"/);
    expect(r.out).toBe("");
  }, 60_000);

  it("timezone - the config's zone reaches the weekly full day and retention through settingsFromConfig", async () => {
    // This test process runs in whatever TZ the machine has; the config says Berlin.
    const config = await parseConfig(
      { timeZone: "Europe/Berlin", engines: { prd: { url: "https://engine.example.com", passwordEnv: "P" } }, vms: { web01: { full: { weeklyDay: "monday" } } } },
      { baseDir: dir, env: { P: "x" } },
    );
    expect(config.timeZone).toBe("Europe/Berlin");
    const settings = settingsFromConfig(config, {});
    expect(settings.timeZone).toBe("Europe/Berlin");
    const policy = settings.fullPolicy("web01");
    expect(policy).toMatchObject({ weeklyFullDay: 1, timeZone: "Europe/Berlin" });
    // Monday 2026-10-26 00:30 CET (right after the fall-back weekend) is Sunday 23:30 UTC.
    const chain = { last: { id: "rp1", time: "2026-10-25T00:30:00Z", checkpointId: "cp1" }, lastFullTime: "2026-10-20T00:30:00Z", incrementalsSinceFull: 1, ownCheckpoints: ["cp1"] };
    const d = decideMode({ requested: "auto", chain, checkpoints: [{ id: "cp1", state: "created" }], policy, now: new Date("2026-10-25T23:30:00Z"), incrementalSupported: true });
    expect(d).toMatchObject({ mode: "full", reason: "weekly full day (monday)" });
    // Retention gets the same zone: two points that are one UTC day but two Berlin days.
    const points = [{ id: "a", time: "2026-10-25T22:30:00Z" }, { id: "b", time: "2026-10-25T23:30:00Z" }];
    expect([...selectKept(points, { keepDaily: 2 }, new Date("2026-10-26T06:00:00Z"), settings.timeZone).keep.keys()].sort()).toEqual(["a", "b"]);

    // Without timeZone the parsed config carries the machine's zone, never undefined.
    const plain = await parseConfig({}, { baseDir: dir, env: {} });
    expect(plain.timeZone).toBe(Intl.DateTimeFormat().resolvedOptions().timeZone);
  });
});
