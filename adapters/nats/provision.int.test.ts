import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { startNatsServer, type NatsServer } from "../../test/harness/nats-server.ts";
import { durableConsumer, streams } from "../../infra/streams/mod.ts";
import { ensureConsumer, ensureStream, provisionInfra } from "./provision.ts";

let server: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe("provision", () => {
  it("provisionInfra - creates streams and buckets once, then reports them unchanged (also when run concurrently)", async () => {
    const [first, second] = await Promise.all([provisionInfra(nc, jsm), provisionInfra(nc, jsm)]);
    // JetStream treats adding an identical stream as success, so both may say "created"; neither fails.
    for (const r of [first, second]) for (const c of [...Object.values(r.streams), ...Object.values(r.buckets)]) expect(["created", "unchanged"]).toContain(c);
    const again = await provisionInfra(nc, jsm);
    expect(again).toEqual({
      streams: { FERRY_COMMANDS: "unchanged", FERRY_EVENTS: "unchanged" },
      buckets: { "ferry-chains": "unchanged", "ferry-runs": "unchanged", "ferry-leases": "unchanged", "ferry-certs": "unchanged", "ferry-schedule": "unchanged", "ferry-alerts": "unchanged", "ferry-guard": "unchanged", "ferry-slots": "unchanged" },
    });
    const info = await jsm.streams.info("FERRY_COMMANDS");
    expect(info.config.duplicate_window).toBe(3_600_000_000_000);
    expect((await jsm.streams.info("KV_ferry-chains")).config.max_msgs_per_subject).toBe(10);
  });

  it("ensureStream - updates a stream whose settings drifted (e.g. edited by hand)", async () => {
    const have = (await jsm.streams.info("FERRY_EVENTS")).config;
    await jsm.streams.update("FERRY_EVENTS", { ...have, max_age: 2 * 24 * 3600 * 1e9 });
    expect(await ensureStream(jsm, streams.events)).toBe("updated");
    expect((await jsm.streams.info("FERRY_EVENTS")).config.max_age).toBe(30 * 24 * 3600 * 1e9);
  });

  it("ensureConsumer - creates a durable with ack_wait, max_deliver and backoff, and updates a changed policy", async () => {
    const def = durableConsumer({ name: "prov-test", subject: "restore.requested", ackWaitMs: 5000, maxDeliver: 4, backoffMs: [1000, 10_000] });
    expect(await ensureConsumer(jsm, def)).toBe("created");
    expect(await ensureConsumer(jsm, def)).toBe("unchanged");
    let ci = await jsm.consumers.info("FERRY_COMMANDS", "prov-test");
    expect(ci.config).toMatchObject({ ack_wait: 5e9, max_deliver: 4, backoff: [5e9, 10e9], filter_subject: "restore.requested", ack_policy: "explicit" });
    expect(await ensureConsumer(jsm, { ...def, maxDeliver: 6 })).toBe("updated");
    ci = await jsm.consumers.info("FERRY_COMMANDS", "prov-test");
    expect(ci.config.max_deliver).toBe(6);
  });
});
