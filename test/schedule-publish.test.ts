/**
 * `ferry schedule` against a real nats-server: due slots become backup.requested in
 * FERRY_COMMANDS, once per VM and slot, across repeated and overlapping runs.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "../adapters/nats/mod.ts";
import schedule from "../cli/commands/schedule.ts";
import type { CommandIO } from "../cli/command.ts";
import { runSchedule } from "../domain/schedule/mod.ts";
import { createPublisher } from "../functions/runtime/mod.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";

let server: NatsServer;
let nc: NatsConnection;
let tmp: string;
let config: string;

async function ferrySchedule(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: CommandIO = {
    stdout: new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }),
    stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }),
    env: { NATS_URL: server.url },
    cwd: tmp,
    signal: new AbortController().signal,
  };
  const code = await schedule.run(["--config", config, "--tz", "UTC", ...args], io);
  return { code, out, err };
}

async function storedRequests(): Promise<{ id: string; vm: string }[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info("FERRY_COMMANDS");
  const out: { id: string; vm: string }[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage("FERRY_COMMANDS", { seq });
    if (m?.subject === "backup.requested") out.push(m.json<{ id: string; vm: string }>());
  }
  return out;
}

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectNats({ servers: server.url, name: "schedule-test" });
  tmp = await mkdtemp(join(tmpdir(), "ferry-schedule-"));
  config = join(tmp, "ferry.json");
  await writeFile(
    config,
    JSON.stringify({
      engines: { prd: { url: "https://engine.example.com", passwordEnv: "FERRY_PRD_PASSWORD" } },
      vms: {
        web01: { schedule: { days: "1111100", time: "02:00" } },
        db01: { schedule: { cron: "*/30 * * * *" } },
        off01: { enabled: false },
      },
    }),
  );
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe("schedule publish", () => {
  it("schedule - --dry-run lists due slots without NATS", async () => {
    const r = await ferrySchedule("--dry-run", "--now", "2025-06-02T02:05:00Z", "--window", "10");
    expect(r.code).toBe(0);
    expect(r.out).toBe("web01 2025-06-02T02:00:00Z: due (dry run: not published)\ndb01 2025-06-02T02:00:00Z: due (dry run: not published)\n");
  });

  it("schedule - publishes due VMs once; a second and an overlapping run publish nothing new", async () => {
    const first = await ferrySchedule("--now", "2025-06-02T02:05:00Z", "--window", "10", "--json");
    expect(first.err).toBe("");
    expect(first.code).toBe(0);
    expect(first.out.trim().split("\n").map((l) => JSON.parse(l).status)).toEqual(["published", "published"]);
    const again = await ferrySchedule("--now", "2025-06-02T02:06:00Z", "--window", "10", "--json");
    expect(again.out.trim().split("\n").map((l) => JSON.parse(l).status)).toEqual(["claimed", "claimed"]);
    // A catch-up run over the last day: yesterday (a Sunday) web01 was not due; db01's half hours are new.
    const catchUp = await ferrySchedule("--now", "2025-06-02T02:05:00Z", "--since", "2025-06-01T23:00:00Z", "--json");
    const rows = catchUp.out.trim().split("\n").map((l) => JSON.parse(l) as { vm: string; slot: string; status: string });
    expect(rows.filter((r) => r.status === "claimed").map((r) => `${r.vm} ${r.slot}`)).toEqual(["web01 2025-06-02T02:00:00Z", "db01 2025-06-02T02:00:00Z"]);
    expect(rows.filter((r) => r.status === "published")).toHaveLength(5);
    const stored = await storedRequests();
    expect(stored.map((m) => m.id).sort()).toEqual(
      [
        "db01:2025-06-01T23:30:00Z",
        "db01:2025-06-02T00:00:00Z",
        "db01:2025-06-02T00:30:00Z",
        "db01:2025-06-02T01:00:00Z",
        "db01:2025-06-02T01:30:00Z",
        "db01:2025-06-02T02:00:00Z",
        "web01:2025-06-02T02:00:00Z",
      ].sort(),
    );
  });

  it("schedule - without claims, JetStream's msgID de-duplication still drops a repeated slot", async () => {
    const pub = createPublisher(nc, jetstream(nc));
    const publisher = { publish: async (event: { id: string }, msgId: string) => pub.publish({ subject: "backup.requested", event: { ...event }, msgId }) };
    const vms = [{ name: "app07", schedule: { days: "1111111", time: "03:00" } }];
    const run = () => runSchedule({ vms, from: new Date("2025-06-03T02:55:00Z"), to: new Date("2025-06-03T03:05:00Z"), now: new Date("2025-06-03T03:05:00Z"), timeZone: "UTC", publisher });
    expect((await run()).map((r) => r.status)).toEqual(["published"]);
    expect((await run()).map((r) => r.status)).toEqual(["duplicate"]);
    expect((await storedRequests()).filter((m) => m.vm === "app07")).toHaveLength(1);
  });

  it("schedule - a bad schedule in the config is rejected with its path", async () => {
    const bad = join(tmp, "bad.json");
    await writeFile(bad, JSON.stringify({ engines: { prd: { url: "https://e.example.com", passwordEnv: "X" } }, vms: { web01: { schedule: { cron: "99 * * * *" } } } }));
    let err = "";
    const code = await schedule.run(["--config", bad, "--dry-run"], {
      stdout: new Writable({ write: (_c, _e, cb) => cb() }),
      stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }),
      env: {},
      cwd: tmp,
      signal: new AbortController().signal,
    });
    expect(code).toBe(4);
    expect(err).toMatch(/vms\.web01\.schedule\.cron: minute "99"/);
  });

  it("schedule - --daemon publishes what is due now and stops cleanly when interrupted", async () => {
    const cfg = join(tmp, "daemon.json");
    await writeFile(cfg, JSON.stringify({ engines: { prd: { url: "https://e.example.com", passwordEnv: "X" } }, vms: { tick01: { schedule: { cron: "* * * * *" } } } }));
    const ac = new AbortController();
    let out = "";
    const running = schedule.run(["--config", cfg, "--daemon", "--window", "3", "--json"], {
      stdout: new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }),
      stderr: new Writable({ write: (_c, _e, cb) => cb() }),
      env: { NATS_URL: server.url },
      cwd: tmp,
      signal: ac.signal,
    });
    const deadline = Date.now() + 15_000;
    while (out.trim().split("\n").filter(Boolean).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    ac.abort();
    expect(await running).toBe(0);
    const rows = out.trim().split("\n").map((l) => JSON.parse(l) as { vm: string; status: string });
    expect(rows.length).toBeGreaterThanOrEqual(3);
    expect(rows.every((r) => r.vm === "tick01" && r.status === "published")).toBe(true);
  });
});
