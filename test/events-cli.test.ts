/**
 * `ferry events` (the real CLI, node cli/ferry.mjs) against a real nats-server: by default every
 * stream's subjects — commands, outcomes, failures, rejections, engine events — and live
 * transfer.progress; with --since what the streams hold, in time order across the streams.
 */
import { spawn } from "node:child_process";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { provisionInfra } from "../adapters/nats/mod.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { waitFor } from "./harness/wait-for.ts";

const ferryBin = fileURLToPath(new URL("../cli/ferry.mjs", import.meta.url));
let nats: NatsServer;
let nc: NatsConnection;

const now = () => new Date().toISOString();
const completed = (vm: string) => ({ id: `${vm}:done`, time: now(), correlationId: `c-${vm}`, vm, restorePoint: "rp-1", kind: "full", bytes: 1024, seconds: 1.5, retention: { removed: [] } });
const failed = (vm: string) => ({ id: `${vm}:failed`, time: now(), correlationId: `c-${vm}`, vm, code: "VM_NOT_FOUND", message: `no VM ${vm}`, step: "backup-requested" });
const rejected = (tag: string) => ({ id: `${tag}:rejected`, time: now(), correlationId: tag, subject: "backup.requested", reason: "vm: required", errors: [{ path: "vm", message: "required" }], payload: "{}" });

interface Line {
  subject: string;
  stream: string;
  seq: number;
  time: string;
  data?: Record<string, unknown>;
}

function parse(stdout: string): Line[] {
  return stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Line);
}

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  await provisionInfra(nc, await jetstreamManager(nc), { replicas: 1 });
  const js = jetstream(nc);
  // What the last hour holds: a command, outcomes, a failure, a rejection, an engine event.
  await js.publish("backup.requested", JSON.stringify({ id: "r-1", time: now(), correlationId: "r-1", vm: "hist01" }));
  await js.publish("backup.requested.rejected", JSON.stringify(rejected("hist-bad")));
  await js.publish("backup.completed", JSON.stringify(completed("hist01")));
  await js.publish("backup.failed", JSON.stringify(failed("hist02")));
  await js.publish("ovirt.event", JSON.stringify({ id: "e-1", time: now(), correlationId: "e-1", engine: "prd", kind: "vm_snapshot_removed", vm: "hist01", eventId: 17 }));
  // A command after the outcomes: read stream by stream it would come second, in time order it is last.
  await js.publish("restore.requested", JSON.stringify({ id: "r-2", time: now(), correlationId: "r-2", vm: "hist01" }));
});

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe("ferry events", () => {
  it("events - --since 1h shows backup.completed and backup.requested.rejected from the last hour, every stream, in time order", async () => {
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [ferryBin, "events", "--since", "1h", "--count", "6", "--json", "--nats", nats.url], { timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: unknown }).code ?? -1) : 0, stdout, stderr }),
      );
    });
    expect(r.code, r.stderr).toBe(0);
    const lines = parse(r.stdout);
    expect(lines.map((l) => l.subject)).toEqual(["backup.requested", "backup.requested.rejected", "backup.completed", "backup.failed", "ovirt.event", "restore.requested"]);
    expect(lines[0]).toMatchObject({ stream: "FERRY_COMMANDS", data: { vm: "hist01" } });
    expect(lines[1]).toMatchObject({ stream: "FERRY_EVENTS", data: { reason: "vm: required" } });
    expect(lines[2]).toMatchObject({ stream: "FERRY_EVENTS", data: { vm: "hist01", restorePoint: "rp-1" } });
    const times = lines.map((l) => Date.parse(l.time));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  });

  it("events - --since with a subject filter and the human lines", async () => {
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [ferryBin, "events", "*.*.rejected", "--since", "1h", "--count", "1", "--nats", nats.url], { timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: unknown }).code ?? -1) : 0, stdout, stderr }),
      );
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\S+ {2}backup\.requested\.rejected {2}subject=backup\.requested reason="vm: required" payload=\{\} {2}\[FERRY_EVENTS#\d+\]\n$/);
  });

  it("events - without --since: new outcomes, rejections and live transfer.progress as they come", async () => {
    const child = spawn(process.execPath, [ferryBin, "events", "--json", "--nats", nats.url], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const js = jetstream(nc);
    try {
      // The child subscribes some time after it starts: publish until it has seen each kind.
      await waitFor(
        async () => {
          await js.publish("backup.completed", JSON.stringify(completed("live01")));
          await js.publish("backup.requested.rejected", JSON.stringify(rejected("live-bad")));
          nc.publish("transfer.progress", JSON.stringify({ id: "p-1", time: now(), correlationId: "c-live01", runId: "run-1", vm: "live01", disk: "d-1", alias: "live01_Disk1", bytes: 5, total: 10, phase: "download" }));
          const seen = new Set(parse(stdout).map((l) => l.subject));
          return seen.has("backup.completed") && seen.has("backup.requested.rejected") && seen.has("transfer.progress");
        },
        { what: `ferry events to show a completion, a rejection and progress (stderr: ${stderr})`, timeoutMs: 90_000, intervalMs: 1000 },
      );
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
    const lines = parse(stdout);
    // Only new events: nothing from before it started.
    expect(lines.some((l) => l.data?.vm === "hist01" || l.data?.vm === "hist02")).toBe(false);
    expect(lines.find((l) => l.subject === "transfer.progress")).toMatchObject({ stream: "", data: { alias: "live01_Disk1" } });
  });
});
