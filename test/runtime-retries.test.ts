import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { createProbe } from "./fixtures/functions/probe/main.ts";
import { collect } from "./harness/collect.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { runInProcess, type InProcessRun } from "./harness/run-in-process.ts";
import { probeAnswer } from "./harness/probe-answer.ts";

let server: NatsServer;
let nc: NatsConnection;
let host: InProcessRun;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  // ackWait 2 s, maxDeliver 3, nak backoff 300 ms then 600 ms; two messages at once.
  host = await runInProcess(server.url, [createProbe({ concurrency: 2, backoffMs: [300, 600] })]);
});

afterAll(async () => {
  await host?.stop();
  await nc?.close();
  await server?.stop();
});

const logsFor = (seq: number, msg?: string) => host.logs.filter((l) => l.seq === seq && (msg === undefined || l.msg === msg));

describe("runtime - retries and limits", () => {
  it("runtime - a transient error retries with backoff and stops at max_deliver with exactly one backup.failed", async () => {
    const failed = collect(nc, "backup.failed");
    const ack = await (await import("@nats-io/jetstream")).jetstream(nc).publish("backup.requested", '{"vm":"flaky","reason":"transient"}');
    const [f] = await failed.waitFor(1, 20_000);
    expect(f!.data).toMatchObject({ vm: "flaky", code: "PROBE_TRANSIENT", attempts: 3, step: "backup.requested" });
    expect(f!.data.message).toMatch(/^probe says: try again \(token=\*\*\*/); // redacted
    expect(f!.data.message).not.toContain("abc123");
    expect(f!.data.id).toBe(`FERRY_COMMANDS:${ack.seq}:backup.failed`);

    // The event is out before the runtime logs the term: wait for that line.
    for (let i = 0; i < 50 && logsFor(ack.seq, "failed for good").length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const retries = logsFor(ack.seq, "failed, will retry");
    expect(retries.map((l) => l.delayMs)).toEqual([300, 600]);
    const [first, second] = retries.map((l) => Date.parse(String(l.time)));
    const final = logsFor(ack.seq, "failed for good")[0];
    expect(final).toBeDefined();
    expect(second! - first!).toBeGreaterThanOrEqual(280);
    expect(Date.parse(String(final!.time)) - second!).toBeGreaterThanOrEqual(580);

    // Past ack_wait and backoff: nothing is delivered again.
    await new Promise((r) => setTimeout(r, 2500));
    failed.stop();
    expect(failed.messages).toHaveLength(1);
    expect(host.logs.filter((l) => l.seq === ack.seq && typeof l.deliveryCount === "number").map((l) => l.deliveryCount)).not.toContain(4);
    const ci = await (await jetstreamManager(nc)).consumers.info("FERRY_COMMANDS", "probe");
    expect(ci.num_ack_pending).toBe(0);
  });

  it("runtime - a permanent error terminates at once with one backup.failed carrying its code", async () => {
    const failed = collect(nc, "backup.failed");
    nc.publish("backup.requested", '{"vm":"doomed","reason":"permanent"}');
    const [f] = await failed.waitFor(1, 10_000, (m) => m.data.vm === "doomed");
    expect(f!.data).toMatchObject({ code: "PROBE_PERMANENT", attempts: 1, message: "probe says: never" });
    await new Promise((r) => setTimeout(r, 1000));
    failed.stop();
    expect(failed.messages.filter((m) => m.data.vm === "doomed")).toHaveLength(1);
  });

  it("runtime - working() heartbeats keep a handler longer than ack_wait from being redelivered", async () => {
    const done = collect(nc, "backup.completed");
    nc.publish("backup.requested", '{"vm":"slow","reason":"sleep:5000"}'); // 2.5 × ack_wait
    const [m] = await done.waitFor(1, 15_000, (x) => x.data.vm === "slow");
    expect(probeAnswer(m!.data).deliveryCount).toBe(1);
    await new Promise((r) => setTimeout(r, 500));
    done.stop();
    expect(done.messages.filter((x) => x.data.vm === "slow")).toHaveLength(1);
  });

  it("runtime - concurrency is bounded per process (2 here) and used", async () => {
    const done = collect(nc, "backup.completed");
    for (let i = 0; i < 6; i++) nc.publish("backup.requested", JSON.stringify({ vm: `par-${i}`, reason: "sleep:400" }));
    const all = await done.waitFor(6, 20_000, (x) => String(x.data.vm).startsWith("par-"));
    done.stop();
    const spans = all.map((x) => {
      const end = Date.parse(String(x.data.time));
      return { start: end - Number(x.data.seconds) * 1000, end };
    });
    const overlapAt = (t: number) => spans.filter((s) => s.start <= t && t < s.end).length;
    const peak = Math.max(...spans.map((s) => overlapAt(s.start + 1)));
    expect(peak).toBe(2);
  });

  it("runtime - service discovery answers $SRV.PING, $SRV.INFO and $SRV.STATS with the function's counters", async () => {
    const ping = (await nc.request("$SRV.PING.ferry", "", { timeout: 3000 })).json<Record<string, unknown>>();
    expect(ping).toMatchObject({ type: "io.nats.micro.v1.ping_response", name: "ferry", id: host.serviceId });
    const info = (await nc.request(`$SRV.INFO.ferry.${host.serviceId}`, "", { timeout: 3000 })).json<Record<string, unknown>>();
    expect(info).toMatchObject({ name: "ferry", metadata: { functions: "probe" } });
    expect(info.endpoints).toEqual([expect.objectContaining({ name: "probe", subject: "ferry.fn.probe" })]);
    const stats = (await nc.request(`$SRV.STATS.ferry.${host.serviceId}`, "", { timeout: 3000 })).json<{ endpoints: { name: string; data: Record<string, number> }[] }>();
    const probe = stats.endpoints.find((e) => e.name === "probe");
    expect(probe?.data.failed).toBeGreaterThanOrEqual(2);
    expect(probe?.data.retried).toBeGreaterThanOrEqual(2);
    expect(probe?.data.acked).toBeGreaterThanOrEqual(7);
    const status = (await nc.request("ferry.fn.probe", "", { timeout: 3000 })).json<Record<string, unknown>>();
    expect(status).toMatchObject({ fn: "probe", subject: "backup.requested" });
  });
});
