/**
 * One reader of NATS settings (adapters/nats/settings.ts) for every command: `ferry backup` and
 * `ferry status` resolve NATS_URL exactly like publish, events, schedule and state, their --help
 * says so, and the old FERRY_NATS_URL only works as a deprecated alias with a warning.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats, natsSettings, provisionInfra } from "../adapters/nats/mod.ts";
import { NATS_OPTION_HELP } from "../cli/command.ts";
import { main } from "../cli/main.ts";
import { parseConfig } from "../config/load.ts";
import { CONFIG_DEFAULTS } from "../contracts/config.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";

async function ferry(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (b) => (out += String(b)));
  stderr.on("data", (b) => (err += String(b)));
  const code = await main(args, { stdout, stderr, env: { PATH: process.env.PATH ?? "", ...env }, cwd, signal: new AbortController().signal });
  return { code, out, err };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

describe("natsSettings - the one reader", () => {
  const config = { nats: { servers: ["nats://cfg:4222"], credsFile: "/etc/ferry/nats.creds" } };

  it("nats settings - --nats, then NATS_URL, then the config, then CONFIG_DEFAULTS.natsUrl; credentials from the config", () => {
    expect(natsSettings({ flag: "nats://flag:1", env: { NATS_URL: "nats://env:1" }, config, name: "t" })).toMatchObject({ servers: "nats://flag:1", via: "--nats", credsFile: "/etc/ferry/nats.creds", warnings: [] });
    expect(natsSettings({ env: { NATS_URL: "nats://env:1,nats://env:2" }, config, name: "t" })).toMatchObject({ servers: "nats://env:1,nats://env:2", via: "NATS_URL" });
    expect(natsSettings({ env: { NATS_URL: "  " }, config, name: "t" })).toMatchObject({ servers: ["nats://cfg:4222"], via: "config" });
    expect(natsSettings({ env: {}, name: "t" })).toMatchObject({ servers: CONFIG_DEFAULTS.natsUrl, via: "default" });
  });

  it("nats settings - FERRY_NATS_URL is a deprecated alias: used only without NATS_URL, always with a warning", () => {
    const old = natsSettings({ env: { FERRY_NATS_URL: "nats://old:1" }, config, name: "t" });
    expect(old).toMatchObject({ servers: "nats://old:1", via: "FERRY_NATS_URL" });
    expect(old.warnings).toEqual(["FERRY_NATS_URL is deprecated and will be removed: set NATS_URL instead"]);
    expect(natsSettings({ env: { FERRY_NATS_URL: "nats://old:1", NATS_URL: "nats://env:1" }, name: "t" })).toMatchObject({ servers: "nats://env:1", warnings: [] });
  });

  it("nats settings - the config loader's NATS_URL override goes through the same reader (ferry config show)", async () => {
    const warnings: string[] = [];
    const c = await parseConfig({ nats: { servers: ["nats://cfg:4222"] } }, { baseDir: "/", env: { FERRY_NATS_URL: "nats://a:1, nats://b:2" }, onWarning: (w) => warnings.push(w.message) });
    expect(c.nats.servers).toEqual(["nats://a:1", "nats://b:2"]);
    expect(warnings).toEqual(["FERRY_NATS_URL is deprecated and will be removed: set NATS_URL instead"]);
  });
});

describe("every command's --help documents the same NATS settings", () => {
  it.each(["backup", "status", "publish", "events", "run", "schedule", "state", "checkpoints"])("nats settings - ferry %s --help names $NATS_URL, not FERRY_NATS_URL", async (name) => {
    const r = await ferry([name, "--help"], {}, tmpdir());
    expect(r.code).toBe(0);
    expect(r.out).toContain(NATS_OPTION_HELP);
    expect(r.out).not.toContain("FERRY_NATS_URL");
  });
});

describe("commands resolve NATS_URL the same way (real nats-server)", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let dir: string;
  let bogus: string;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats({ servers: server.url, name: "ferry-test" });
    await provisionInfra(nc, await jetstreamManager(nc), { replicas: 1 });
    dir = await mkdtemp(path.join(tmpdir(), "ferry-nats-settings-"));
    // The config names a server nobody listens on: NATS_URL must win for every command.
    bogus = `nats://127.0.0.1:${await closedPort()}`;
    await writeFile(
      path.join(dir, "ferry.json"),
      JSON.stringify({
        engines: { prd: { url: "https://engine.example.com", passwordEnv: "FERRY_PRD_PASSWORD" } },
        nats: { servers: [bogus] },
        vms: { web01: { schedule: { days: "1111111", time: "02:00" } } },
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await nc?.close().catch(() => undefined);
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function requestedVms(): Promise<string[]> {
    const jsm = await jetstreamManager(nc);
    const vms: string[] = [];
    const info = await jsm.streams.info("FERRY_COMMANDS");
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage("FERRY_COMMANDS", { seq }).catch(() => undefined);
      if (m?.subject === "backup.requested") vms.push((m.json() as { vm: string }).vm);
    }
    return vms;
  }

  it("nats settings - backup, status, publish, events, schedule and state all reach the server NATS_URL names", async () => {
    const env = { NATS_URL: server.url, FERRY_PRD_PASSWORD: "pw" };
    const backup = await ferry(["backup", "via-backup"], env, dir);
    expect(backup.code, backup.err).toBe(0);
    const status = await ferry(["status", "--json"], env, dir);
    expect(status.code, status.err).toBe(0);
    const publish = await ferry(["publish", "backup.requested", '{"vm":"via-publish"}', "--json"], env, dir);
    expect(publish.code, publish.err).toBe(0);
    const events = await ferry(["events", "backup.requested", "--all", "--count", "1", "--json"], env, dir);
    expect(events.code, events.err).toBe(0);
    const schedule = await ferry(["schedule", "--now", "2025-06-02T12:00:00Z", "--tz", "UTC"], env, dir);
    expect(schedule.code, schedule.err).toBe(0);
    const state = await ferry(["state", "export"], env, dir);
    expect(state.code, state.err).toBe(0);
    for (const r of [backup, status, publish, events, schedule, state]) expect(r.err).not.toMatch(/warning/);
    expect(await requestedVms()).toEqual(["via-backup", "via-publish"]);
  }, 60_000);

  it("nats settings - an unreachable NATS_URL: backup, status, publish and events all name that URL and exit 3", async () => {
    const down = `nats://127.0.0.1:${await closedPort()}`;
    const runs = {
      backup: await ferry(["backup", "web01"], { NATS_URL: down }, dir),
      status: await ferry(["status"], { NATS_URL: down }, dir),
      publish: await ferry(["publish", "backup.requested", '{"vm":"web01"}'], { NATS_URL: down }, dir),
      events: await ferry(["events", "--count", "1"], { NATS_URL: down }, dir),
    };
    for (const [name, r] of Object.entries(runs)) {
      expect(r.code, `${name}: ${r.err}`).toBe(3);
      expect(r.err, name).toContain(`ferry ${name}: cannot connect to NATS at ${down}`);
      expect(r.err, name).not.toContain(bogus);
    }
  }, 60_000);

  it("nats settings - FERRY_NATS_URL still works for backup and publish alike, with the same warning", async () => {
    const env = { FERRY_NATS_URL: server.url };
    for (const args of [["backup", "via-old-backup"], ["publish", "backup.requested", '{"vm":"via-old-publish"}']]) {
      const r = await ferry(args, env, dir);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toBe(`ferry ${args[0]}: warning: FERRY_NATS_URL is deprecated and will be removed: set NATS_URL instead\n`);
    }
    expect((await requestedVms()).slice(-2)).toEqual(["via-old-backup", "via-old-publish"]);
  }, 60_000);
});
