import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { createLogger, runFunctions, type RunResult } from "../functions/runtime/mod.ts";
import { createProbe } from "./fixtures/functions/probe/main.ts";
import { collect } from "./harness/collect.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { Writable } from "node:stream";
import { probeAnswer } from "./harness/probe-answer.ts";

let server: NatsServer;
let nc: NatsConnection; // the test's own client (publisher/observer)
let stop: AbortController;
let running: Promise<RunResult>;
const logLines: Record<string, unknown>[] = [];

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  const fnConn = await connect({ servers: server.url, name: "probe-host" });
  const destination = new Writable({
    write(chunk, _e, cb) {
      for (const l of chunk.toString().split("\n")) if (l) logLines.push(JSON.parse(l));
      cb();
    },
  });
  stop = new AbortController();
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  running = runFunctions([createProbe({ backoffMs: [100, 200] })], {
    nc: fnConn,
    log: createLogger({ destination, level: "debug" }),
    signal: stop.signal,
    graceMs: 2000,
    pullExpiresMs: 1000,
    onReady: () => ready(),
  });
  await Promise.race([readyP, running.then(() => { throw new Error("runFunctions ended before ready"); })]);
});

afterAll(async () => {
  stop?.abort();
  await running?.catch(() => undefined);
  await nc?.close();
  await server?.stop();
});

describe("runtime - bus edge", () => {
  it("runtime - a raw core publish of {\"vm\":\"web01\"} (what `nats pub` sends) is accepted and handled once", async () => {
    const completed = collect(nc, "backup.completed");
    // Byte for byte what `nats pub backup.requested '{"vm":"web01"}'` sends: no headers, that payload.
    nc.publish("backup.requested", new TextEncoder().encode('{"vm":"web01"}'));
    const [m] = await completed.waitFor(1);
    completed.stop();
    expect(m!.data).toMatchObject({ vm: "web01", kind: "full" });
    expect(probeAnswer(m!.data).deliveryCount).toBe(1);
    // The runtime filled the envelope from the stream: id = FERRY_COMMANDS:<seq>.
    expect(String(m!.data.restorePoint)).toMatch(/^rp-FERRY_COMMANDS:\d+$/);
    expect(m!.data.correlationId).toBe(String(m!.data.restorePoint).slice(3));
  });

  it("runtime - not json, {}, {\"vm\":\"\"} and {\"vm\":\"../etc\"} each give exactly one backup.requested.rejected and the function keeps running", async () => {
    const rejected = collect(nc, "backup.requested.rejected");
    const completed = collect(nc, "backup.completed");
    const bad = ["not json", "{}", '{"vm":""}', '{"vm":"../etc"}'];
    for (const payload of bad) nc.publish("backup.requested", payload);
    nc.publish("backup.requested", '{"vm":"after-bad-input"}');
    await rejected.waitFor(4);
    await completed.waitFor(1, 15_000, (m) => m.data.vm === "after-bad-input");
    // Wait past several backoff periods: a redelivered bad message would be rejected again.
    await new Promise((r) => setTimeout(r, 1500));
    rejected.stop();
    completed.stop();
    const byPayload = new Map(rejected.messages.map((m) => [m.data.payload, m.data]));
    expect(rejected.messages).toHaveLength(4);
    expect(byPayload.get("not json")).toMatchObject({ subject: "backup.requested", reason: "not valid JSON (Unexpected token 'o')" });
    expect(byPayload.get("{}")).toMatchObject({ reason: "vm: required", errors: [{ path: "vm", message: "required" }] });
    expect(byPayload.get('{"vm":""}')).toMatchObject({ reason: "vm: must not be empty" });
    expect(byPayload.get('{"vm":"../etc"}')?.reason).toMatch(/^vm: may contain only letters, digits.*no '\/'/);
    for (const r of rejected.messages) expect(r.data.id).toMatch(/^FERRY_COMMANDS:\d+:rejected$/);

    const jsm = await jetstreamManager(nc);
    const ci = await jsm.consumers.info("FERRY_COMMANDS", "probe");
    expect(ci.num_ack_pending).toBe(0);
    expect(ci.num_redelivered).toBe(0);
    expect(ci.num_pending).toBe(0);
    // The rejections are stored facts too.
    const ev = await jsm.streams.info("FERRY_EVENTS", { subjects_filter: "backup.requested.rejected" });
    expect(ev.state.subjects?.["backup.requested.rejected"]).toBe(4);
  });

  it("runtime - a redacted payload: secrets in rejected input do not reach the event", async () => {
    const rejected = collect(nc, "backup.requested.rejected");
    nc.publish("backup.requested", '{"vm":"x","password":"hunter2"}');
    const [m] = await rejected.waitFor(1);
    rejected.stop();
    expect(m!.data.reason).toBe("password: unknown field");
    expect(String(m!.data.payload)).not.toContain("hunter2");
  });

  it("runtime - re-publishing with the same Nats-Msg-Id is de-duplicated and handled once", async () => {
    const completed = collect(nc, "backup.completed");
    const { jetstream } = await import("@nats-io/jetstream");
    const js = jetstream(nc);
    const a = await js.publish("backup.requested", '{"vm":"dup"}', { msgID: "dup-1" });
    const b = await js.publish("backup.requested", '{"vm":"dup"}', { msgID: "dup-1" });
    expect(b.duplicate).toBe(true);
    expect(b.seq).toBe(a.seq);
    const [m] = await completed.waitFor(1, 15_000, (x) => x.data.vm === "dup");
    expect(m!.data.restorePoint).toBe("rp-dup-1");
    await new Promise((r) => setTimeout(r, 500));
    completed.stop();
    expect(completed.messages.filter((x) => x.data.vm === "dup")).toHaveLength(1);
  });

  it("runtime - logs carry fn, subject, seq, correlationId and vm per message", () => {
    const handled = logLines.find((l) => l.msg === "handled" && l.vm === "web01");
    expect(handled).toMatchObject({ fn: "probe", subject: "backup.requested", deliveryCount: 1 });
    expect(typeof handled?.seq).toBe("number");
    expect(handled?.correlationId).toMatch(/^FERRY_COMMANDS:\d+$/);
  });
});
