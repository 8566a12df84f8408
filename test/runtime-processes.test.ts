/**
 * Functions as real processes (`ferry run probe`), killed and stopped the way an operator or
 * systemd would. The probe fixture: ack_wait 2 s, max_deliver 3, concurrency 1.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { collect } from "./harness/collect.ts";
import { spawnFerry, type FerryProcess } from "./harness/ferry-process.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { probeAnswer } from "./harness/probe-answer.ts";

let server: NatsServer;
let nc: NatsConnection;
let dir: string;
const procs: FerryProcess[] = [];

function startProbe(grace = 5, url = server.url, env: Record<string, string> = {}): FerryProcess {
  const p = spawnFerry(["run", "probe", "--functions-dir", "test/fixtures/functions", "--nats", url, "--grace", String(grace), "--log-level", "debug"], env);
  procs.push(p);
  return p;
}
const ready = (p: FerryProcess) => p.waitForLog((l) => l.msg === "functions running", 30_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitAckPending(n: number, timeoutMs = 10_000): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await jsm.consumers.info("FERRY_COMMANDS", "probe")).num_ack_pending === n) return;
    await sleep(50);
  }
  throw new Error(`num_ack_pending never reached ${n}`);
}

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  dir = await mkdtemp(join(tmpdir(), "ferry-runtime-proc-"));
});

afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.kill("SIGKILL")));
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("runtime - processes", () => {
  it("runtime - a process killed with SIGKILL mid-handler: its message is redelivered and handled by another instance", async () => {
    const a = startProbe();
    const b = startProbe();
    await Promise.all([ready(a), ready(b)]);
    const done = collect(nc, "backup.completed");
    const marker = join(dir, "crash-marker");
    nc.publish("backup.requested", JSON.stringify({ vm: "crashy", reason: `crash-once:${marker}` }));
    for (let i = 0; i < 200 && !existsSync(marker); i++) await sleep(50);
    const victimPid = Number(await readFile(marker, "utf8"));
    const [victim, survivor] = victimPid === a.pid ? [a, b] : [b, a];
    expect(victim.pid).toBe(victimPid);
    const killed = await victim.kill("SIGKILL");
    expect(killed.signal).toBe("SIGKILL");
    // Redelivered after ack_wait (2 s) to the survivor.
    const [m] = await done.waitFor(1, 15_000, (x) => x.data.vm === "crashy");
    done.stop();
    expect(probeAnswer(m!.data)).toEqual({ handledBy: survivor.pid, deliveryCount: 2 });
  });

  it("runtime - two instances of one function split the work of its durable consumer", async () => {
    const a = startProbe();
    const b = startProbe();
    await Promise.all([ready(a), ready(b)]);
    const done = collect(nc, "backup.completed");
    for (let i = 0; i < 10; i++) nc.publish("backup.requested", JSON.stringify({ vm: `split-${i}`, reason: "sleep:300" }));
    const all = await done.waitFor(10, 30_000, (x) => String(x.data.vm).startsWith("split-"));
    done.stop();
    const byPid = new Map<unknown, number>();
    for (const m of all) byPid.set(probeAnswer(m.data).handledBy, (byPid.get(probeAnswer(m.data).handledBy) ?? 0) + 1);
    expect(new Set(byPid.keys())).toEqual(new Set([a.pid, b.pid]));
    expect(all.map((m) => m.data.vm).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `split-${i}`).sort());
    expect(all.every((m) => probeAnswer(m.data).deliveryCount === 1)).toBe(true);
  });

  it("runtime - SIGTERM lets in-flight work finish within the grace period, then the process exits 0", async () => {
    const a = startProbe(10);
    await ready(a);
    const done = collect(nc, "backup.completed");
    nc.publish("backup.requested", JSON.stringify({ vm: "finish-me", reason: "sleep:1500" }));
    await waitAckPending(1);
    const exit = a.kill("SIGTERM");
    const [m] = await done.waitFor(1, 15_000, (x) => x.data.vm === "finish-me");
    done.stop();
    expect(probeAnswer(m!.data)).toEqual({ handledBy: a.pid, deliveryCount: 1 });
    expect(await exit).toEqual({ code: 0, signal: null });
    await waitAckPending(0);
  });

  it("runtime - SIGTERM hands work back when the grace period runs out; another instance finishes it at once", async () => {
    const a = startProbe(1);
    await ready(a);
    const done = collect(nc, "backup.completed");
    nc.publish("backup.requested", JSON.stringify({ vm: "hand-back", reason: "sleep-once:60000" }));
    await waitAckPending(1);
    const b = startProbe(); // started after `a` took the message
    await ready(b);
    const started = Date.now();
    const exit = await a.kill("SIGTERM");
    expect(exit).toEqual({ code: 0, signal: null });
    expect(a.logs.some((l) => l.msg === "grace period over, in-flight messages handed back")).toBe(true);
    const [m] = await done.waitFor(1, 15_000, (x) => x.data.vm === "hand-back");
    done.stop();
    expect(probeAnswer(m!.data)).toEqual({ handledBy: b.pid, deliveryCount: 2 });
    // nak() made it available immediately, not after ack_wait.
    expect(Date.now() - started).toBeLessThan(8000);
  });

  it("runtime - a crash on the last delivery still ends in one backup.failed (MAX_DELIVER_EXCEEDED), never a silent loss", async () => {
    // Own server: this test gives the probe consumer max_deliver 1.
    const own = await startNatsServer();
    const own_nc = await connect({ servers: own.url });
    try {
      const env = { PROBE_MAX_DELIVER: "1" };
      const a = startProbe(5, own.url, env);
      const b = startProbe(5, own.url, env);
      await Promise.all([ready(a), ready(b)]);
      const failed = collect(own_nc, "backup.failed");
      const marker = join(dir, "hang-marker");
      own_nc.publish("backup.requested", JSON.stringify({ vm: "lost", reason: `hang:${marker}` }));
      for (let i = 0; i < 200 && !existsSync(marker); i++) await sleep(50);
      const victimPid = Number(await readFile(marker, "utf8"));
      await (victimPid === a.pid ? a : b).kill("SIGKILL");
      const [f] = await failed.waitFor(1, 15_000);
      expect(f!.data).toMatchObject({ vm: "lost", code: "MAX_DELIVER_EXCEEDED", attempts: 1, step: "backup.requested" });
      await sleep(1000);
      failed.stop();
      expect(failed.messages).toHaveLength(1);
    } finally {
      await Promise.all(procs.splice(0).map((p) => p.kill("SIGKILL")));
      await own_nc.close();
      await own.stop();
    }
  });
});
