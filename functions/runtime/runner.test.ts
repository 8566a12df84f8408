import { afterEach, describe, expect, it } from "vitest";
import type { Consumer, JsMsg } from "@nats-io/jetstream";
import { backupCompleted, backupRequested, chainUpdated, diskTransferred, type Contract } from "../../contracts/mod.ts";
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { defineFunction } from "./define.ts";
import { createLogger } from "./log.ts";
import { checkOutbound, type Publisher } from "./publisher.ts";
import { FunctionRunner } from "./runner.ts";
import type { Failure, Handler, Outbound } from "./types.ts";

const silent = createLogger({ level: "silent" });
const clock = () => new Date("2025-01-31T02:30:00Z");

/** A publisher that applies the real outbound check and records what would go on the bus. */
function recordingPublisher(): Publisher & { sent: Outbound[] } {
  const sent: Outbound[] = [];
  return {
    sent,
    async publish(out) {
      checkOutbound(out);
      sent.push(out);
      return { stream: "FERRY_EVENTS", seq: sent.length, duplicate: false };
    },
  };
}

interface FakeMsg {
  readonly msg: JsMsg;
  readonly verdict: Promise<string>;
}

/** Just enough of a JsMsg for the runner: data, info, and the ack verbs (which settle `verdict`). */
function fakeMsg(subject: string, payload: unknown, deliveryCount = 1): FakeMsg {
  let settle!: (v: string) => void;
  const verdict = new Promise<string>((r) => (settle = r));
  const msg = {
    subject,
    seq: 12,
    data: new TextEncoder().encode(JSON.stringify(payload)),
    time: new Date("2025-01-31T02:00:00Z"),
    headers: undefined,
    info: { deliveryCount, stream: subject.startsWith("backup.requested") ? "FERRY_COMMANDS" : "FERRY_EVENTS" },
    ackAck: async () => (settle("ack"), true),
    nak: () => settle("nak"),
    term: (reason?: string) => settle(`term ${reason ?? ""}`),
    working: () => undefined,
  };
  return { msg: msg as unknown as JsMsg, verdict };
}

/** A consumer whose first fetch yields `msg` and later fetches yield nothing. */
function fakeConsumer(msg: JsMsg): Consumer {
  let given = false;
  return {
    async fetch() {
      const first = !given;
      given = true;
      return {
        stop: () => undefined,
        async *[Symbol.asyncIterator]() {
          if (first) yield msg;
          else await new Promise((r) => setTimeout(r, 5));
        },
      };
    },
  } as unknown as Consumer;
}

const runners: FunctionRunner[] = [];
afterEach(async () => {
  for (const r of runners.splice(0)) await r.stop(100);
});

async function handleOnce<T>(
  contract: Contract<T, any>,
  payload: unknown,
  handler: Handler<T, any>,
  o: { deliveryCount?: number; maxDeliver?: number; onFailure?: (e: unknown, f: Failure) => readonly Outbound[] } = {},
) {
  const publisher = recordingPublisher();
  const def = defineFunction({
    name: "probe",
    contract,
    ackWaitMs: 5000,
    maxDeliver: o.maxDeliver ?? 3,
    backoffMs: [10],
    handler,
    ...(o.onFailure ? { onFailure: (e: unknown, f: Failure) => o.onFailure!(e, f) } : {}),
  });
  const { msg, verdict } = fakeMsg(def.subject, payload, o.deliveryCount);
  const runner = new FunctionRunner(def, { consumer: fakeConsumer(msg), publisher, log: silent, clock, pullExpiresMs: 10 });
  runners.push(runner);
  runner.start();
  return { verdict: await verdict, sent: publisher.sent, runner };
}

const [diskEvent] = diskTransferred.examples.valid as Record<string, unknown>[];
const [chainEvent] = chainUpdated.examples.valid as Record<string, unknown>[];

describe("runtime runner - failure events say where the alert goes", () => {
  it("backup.requested {vm} failing for good → backup.failed with engine 'prd' (the contract default) and no vmId", async () => {
    const { verdict, sent } = await handleOnce(backupRequested, { vm: "web01" }, async () => {
      throw new PermanentError("VM_NOT_FOUND", "no VM web01 on prd");
    });
    expect(verdict).toMatch(/^term VM_NOT_FOUND/);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.subject).toBe("backup.failed");
    expect(sent[0]!.event).toEqual({
      id: "FERRY_COMMANDS:12:backup.failed",
      time: "2025-01-31T02:30:00.000Z",
      correlationId: "FERRY_COMMANDS:12",
      vm: "web01",
      code: "VM_NOT_FOUND",
      message: "no VM web01 on prd",
      step: "backup.requested",
      attempts: 1,
      engine: "prd",
    });
  });

  it("backup.requested naming its engine → backup.failed carries that engine", async () => {
    const { sent } = await handleOnce(backupRequested, { vm: "web01", engine: "dr2" }, async () => {
      throw new PermanentError("VM_NOT_FOUND", "no VM");
    });
    expect(sent[0]!.event).toMatchObject({ vm: "web01", engine: "dr2" });
    expect(sent[0]!.event).not.toHaveProperty("vmId");
  });

  it("disk.transferred (vm is {id, name}) failing on its last delivery → backup.failed with vmId and runId", async () => {
    const { verdict, sent } = await handleOnce(
      diskTransferred,
      { ...diskEvent, engine: "prd" },
      async () => {
        throw new TransientError("CHAIN_CONFLICT", "the chain kept changing");
      },
      { deliveryCount: 3, maxDeliver: 3 },
    );
    expect(verdict).toMatch(/^term CHAIN_CONFLICT/);
    expect(sent.map((o) => o.subject)).toEqual(["backup.failed"]);
    expect(sent[0]!.event).toMatchObject({ vm: "web01", vmId: "vm-1", engine: "prd", runId: "run-7", step: "disk.transferred", attempts: 3, code: "CHAIN_CONFLICT" });
  });

  it("an input without engine → backup.failed without engine (nothing is guessed)", async () => {
    const { sent } = await handleOnce(chainUpdated, chainEvent, async () => {
      throw new PermanentError("STORE_GONE", "the store is not mounted");
    });
    expect(sent[0]!.event).toMatchObject({ vm: "web01", vmId: "vm-1", step: "chain.updated" });
    expect(sent[0]!.event).not.toHaveProperty("engine");
  });

  it("onFailure gets engine and vmId in the Failure too", async () => {
    const seen: Failure[] = [];
    await handleOnce(
      diskTransferred,
      diskEvent,
      async () => {
        throw new PermanentError("X", "x");
      },
      { onFailure: (_e, f) => (seen.push(f), []) },
    );
    expect(seen).toEqual([{ code: "X", message: "x", attempts: 1, vmId: "vm-1" }]);
  });

  it("announceExhausted (the last delivery died with its worker) → backup.failed with engine and vmId", async () => {
    const publisher = recordingPublisher();
    const def = defineFunction({ name: "disk-transferred", contract: diskTransferred, ackWaitMs: 5000, maxDeliver: 3, backoffMs: [10], handler: async () => ({}) });
    const runner = new FunctionRunner(def, { consumer: {} as Consumer, publisher, log: silent, clock });
    const data = new TextEncoder().encode(JSON.stringify({ ...diskEvent, engine: "prd" }));
    await runner.announceExhausted({ stream: "FERRY_EVENTS", seq: 7, time: new Date("2025-01-31T02:10:00Z"), data }, 3);
    expect(publisher.sent).toHaveLength(1);
    expect(publisher.sent[0]!.event).toMatchObject({
      id: "b-42:d-1:disk.transferred:backup.failed",
      code: "MAX_DELIVER_EXCEEDED",
      vm: "web01",
      vmId: "vm-1",
      engine: "prd",
      attempts: 3,
    });

    const cmd = new FunctionRunner(defineFunction({ name: "backup-requested", contract: backupRequested, ackWaitMs: 5000, maxDeliver: 3, backoffMs: [10], handler: async () => ({}) }), {
      consumer: {} as Consumer,
      publisher,
      log: silent,
      clock,
    });
    await cmd.announceExhausted({ stream: "FERRY_COMMANDS", seq: 8, time: new Date(), data: new TextEncoder().encode('{"vm":"web01"}') }, 4);
    expect(publisher.sent[1]!.event).toMatchObject({ id: "FERRY_COMMANDS:8:backup.failed", vm: "web01", engine: "prd", code: "MAX_DELIVER_EXCEEDED" });
    expect(publisher.sent[1]!.event).not.toHaveProperty("vmId");
  });
});

describe("runtime runner - outbound events are checked strictly", () => {
  it("a handler emitting an undeclared field fails the input with CONTRACT_VIOLATION; nothing else goes out", async () => {
    const { verdict, sent } = await handleOnce(backupRequested, { vm: "web01" }, async (event, ctx) => ({
      publish: [
        ctx.emit(backupCompleted, {
          vm: event.vm,
          restorePoint: "rp-1",
          kind: "full",
          bytes: 0,
          seconds: 1,
          retention: { removed: [] },
          handledBy: 42,
        } as never),
      ],
    }));
    expect(verdict).toMatch(/^term CONTRACT_VIOLATION: event for backup.completed does not fit its contract: handledBy: unknown field/);
    expect(sent.map((o) => o.subject)).toEqual(["backup.failed"]);
    expect(sent[0]!.event).toMatchObject({ code: "CONTRACT_VIOLATION", engine: "prd" });
  });

  it("a handler returning a hand-built event with an undeclared nested field is refused by the publisher", async () => {
    const { verdict, sent } = await handleOnce(diskTransferred, diskEvent, async () => ({
      publish: [{ subject: "chain.updated", event: { ...chainEvent, vm: { id: "vm-1", name: "web01", uuid: "x" } } as unknown as Outbound["event"] }],
    }));
    expect(verdict).toMatch(/^term CONTRACT_VIOLATION: .*vm\.uuid: unknown field/);
    expect(sent.map((o) => o.subject)).toEqual(["backup.failed"]);
  });
});
