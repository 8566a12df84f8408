/**
 * Hop latency between chained functions: A (backup.requested) publishes restore.requested, B
 * consumes it. Measured: A's publish call → B's handler start, in one process (same clock), with
 * the runtime's production pull settings (no pullExpiresMs override) and idle gaps between
 * messages, so every hop lands on an idle consumer the way pipeline steps do.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { Writable } from "node:stream";
import { backupRequested, restoreRequested } from "../contracts/mod.ts";
import { createLogger, defineFunction, runFunctions, type RunResult } from "../functions/runtime/mod.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";

const HOPS = 21;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let server: NatsServer;
let nc: NatsConnection;
let stop: AbortController;
let running: Promise<RunResult>;
const sentAt = new Map<string, number>();
const latencies = new Map<string, number>();
const waiters = new Map<string, () => void>();

const hopA = defineFunction({
  name: "latency-a",
  contract: backupRequested,
  ackWaitMs: 5000,
  maxDeliver: 2,
  backoffMs: [100],
  handler: async (event, ctx) => {
    const out = ctx.emit(restoreRequested, { vm: event.vm } as never);
    sentAt.set(event.vm, performance.now());
    await ctx.publish(out);
  },
});

const hopB = defineFunction({
  name: "latency-b",
  contract: restoreRequested,
  ackWaitMs: 5000,
  maxDeliver: 2,
  backoffMs: [100],
  handler: async (event) => {
    const t0 = sentAt.get(event.vm);
    if (t0 !== undefined && !latencies.has(event.vm)) latencies.set(event.vm, performance.now() - t0);
    waiters.get(event.vm)?.();
  },
});

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  const fnConn = await connect({ servers: server.url, name: "latency-host" });
  stop = new AbortController();
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  running = runFunctions([hopA, hopB], {
    nc: fnConn,
    log: createLogger({ destination: new Writable({ write: (_c, _e, cb) => cb() }), level: "warn" }),
    signal: stop.signal,
    graceMs: 2000,
    onReady: () => ready(),
  });
  await Promise.race([readyP, running.then(() => Promise.reject(new Error("runFunctions ended before ready")))]);
});

afterAll(async () => {
  stop?.abort();
  await running?.catch(() => undefined);
  await nc?.close();
  await server?.stop();
});

describe("runtime - hop latency", () => {
  it("runtime - an event published by one function starts the next function's handler within milliseconds (median)", async () => {
    for (let i = 0; i < HOPS; i++) {
      const vm = `lat-${i}`;
      const handled = new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`hop ${vm} not handled within 10 s`)), 10_000);
        waiters.set(vm, () => {
          clearTimeout(t);
          resolve();
        });
      });
      nc.publish("backup.requested", JSON.stringify({ vm }));
      await handled;
      // Idle gaps of varying length: the next message arrives at a different point of the pull cycle.
      await sleep(50 + ((i * 137) % 400));
    }
    const sorted = [...latencies.values()].sort((a, b) => a - b);
    expect(sorted).toHaveLength(HOPS);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    const p90 = sorted[Math.floor(sorted.length * 0.9)]!;
    console.log(`hop latency over ${HOPS} hops: median ${median.toFixed(1)} ms, p90 ${p90.toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`);
    // Target is < 50 ms on an idle machine; the bound leaves room for a loaded 2-core host while
    // still failing for a pull loop that waits out a pull expiry (hundreds of ms to seconds).
    expect(median).toBeLessThan(250);
  });
});
