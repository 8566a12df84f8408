/**
 * Outbound validation on a real nats-server: the runtime's publisher refuses an event with a
 * field its contract does not declare (nothing reaches the stream or a subscriber) and publishes
 * the same event without it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { chainUpdated, diskTransferred, transferProgress } from "../contracts/mod.ts";
import { provisionInfra } from "../adapters/nats/provision.ts";
import { streams } from "../infra/streams/mod.ts";
import { ContractViolationError, createPublisher, type Publisher } from "../functions/runtime/mod.ts";
import { collect } from "./harness/collect.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";

let server: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
let publisher: Publisher;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url, name: "contracts-outbound" });
  jsm = await jetstreamManager(nc);
  await provisionInfra(nc, jsm);
  publisher = createPublisher(nc, jetstream(nc));
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const stored = async (subject: string) => {
  const info = await jsm.streams.info(streams.events.name, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
};

/** The error a promise rejects with (undefined when it resolves). */
const refusal = (p: Promise<unknown>) => p.then(() => undefined, (err: unknown) => err);

describe("contracts - outbound validation on the bus", () => {
  it("chain.updated with an undeclared field is refused (ContractViolationError, nothing stored); without it, it is stored as sent", async () => {
    const [example] = chainUpdated.examples.valid as Record<string, unknown>[];
    const event: Record<string, unknown> & { id: string } = { ...example!, id: "vm-1:rp-1:chain.updated" };
    const seen = collect(nc, "chain.updated");

    const err = await refusal(publisher.publish({ subject: "chain.updated", event: { ...event, mdoe: "full" } }));
    expect(err).toBeInstanceOf(ContractViolationError);
    expect((err as ContractViolationError).code).toBe("CONTRACT_VIOLATION");
    expect((err as Error).message).toBe("event for chain.updated does not fit its contract: mdoe: unknown field");

    const nested = await refusal(
      publisher.publish({ subject: "chain.updated", event: { ...event, restorePoint: { ...(event.restorePoint as object), size: 1 } } }),
    );
    expect(nested).toBeInstanceOf(ContractViolationError);
    expect((nested as Error).message).toMatch(/restorePoint\.size: unknown field$/);
    expect(await stored("chain.updated")).toBe(0);

    const ack = await publisher.publish({ subject: "chain.updated", event });
    expect(ack).toMatchObject({ stream: streams.events.name, duplicate: false });
    expect(await stored("chain.updated")).toBe(1);
    const msg = await jsm.streams.getMessage(streams.events.name, { seq: ack.seq });
    expect(msg?.json()).toEqual(JSON.parse(JSON.stringify(event)));
    expect(msg?.header?.get("Nats-Msg-Id")).toBe(event.id);
    // A subscriber saw exactly the accepted one.
    await seen.waitFor(1);
    await nc.flush();
    seen.stop();
    expect(seen.messages.map((m) => m.data.id)).toEqual([event.id]);
  });

  it("disk.transferred with every field the pipeline sends is accepted; one field more is refused", async () => {
    const [example] = diskTransferred.examples.valid as Record<string, unknown>[];
    const event = {
      ...example!,
      id: "b-1:d-1:disk.transferred",
      skippedDisks: [{ id: "d-2", alias: "web01_iso", reason: "content type iso is not VM data" }],
    };
    const err = await refusal(publisher.publish({ subject: "disk.transferred", event: { ...event, parentPoint: "rp-0" } }));
    expect(err).toBeInstanceOf(ContractViolationError);
    expect((err as Error).message).toMatch(/parentPoint: unknown field$/);
    expect(await stored("disk.transferred")).toBe(0);
    await publisher.publish({ subject: "disk.transferred", event });
    expect(await stored("disk.transferred")).toBe(1);
  });

  it("transfer.progress (core NATS only) is checked the same way", async () => {
    const [example] = transferProgress.examples.valid as Record<string, unknown>[];
    const event = { ...example!, id: "run-1:d-1:1" };
    const seen = collect(nc, "transfer.progress");
    await nc.flush();
    const err = await refusal(publisher.publish({ subject: "transfer.progress", event: { ...event, id: "run-1:d-1:0", eta: 3 } }));
    expect(err).toBeInstanceOf(ContractViolationError);
    await publisher.publish({ subject: "transfer.progress", event });
    await seen.waitFor(1);
    await nc.flush();
    seen.stop();
    expect(seen.messages.map((m) => m.data.id)).toEqual(["run-1:d-1:1"]);
  });
});
