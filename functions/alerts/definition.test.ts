import { describe, expect, it } from "vitest";
import { contracts } from "../../contracts/mod.ts";
import { durableConsumer, streamForFilter, subjectsSelected } from "../../infra/streams/mod.ts";
import { defineFunction } from "../runtime/mod.ts";
import { ALERTS_SUBJECT, alertsFunction } from "./definition.ts";
import type { Alerts } from "./handler.ts";

const noAlerts: Alerts = { handle: async () => "done", flushSummaries: async () => 0 };
const failureSubjectsAll = Object.keys(contracts).filter((s) => s.endsWith(".failed")).sort();

describe("alerts definition", () => {
  it("alerts - one durable consumer on FERRY_EVENTS whose filter '*.failed' selects exactly the failure outcomes", () => {
    const def = alertsFunction(noAlerts);
    expect(def).toMatchObject({ name: "alerts", subject: "*.failed", maxDeliver: 20 });
    const c = durableConsumer(def);
    expect(c).toMatchObject({ stream: "FERRY_EVENTS", durableName: "alerts", filterSubject: "*.failed", ackWaitMs: 30_000, maxDeliver: 20 });
    expect(c.backoffMs).toEqual([30_000, 30_000, 60_000, 300_000]);
    expect(failureSubjectsAll).toEqual(["backup.failed", "cert.failed", "restore.failed"]);
    expect(subjectsSelected(ALERTS_SUBJECT).sort()).toEqual(failureSubjectsAll);
  });

  it("alerts - its contract accepts every valid example of every *.failed contract", () => {
    const def = alertsFunction(noAlerts);
    for (const s of failureSubjectsAll) {
      for (const ex of contracts[s as keyof typeof contracts].examples.valid) expect(def.contract.validate(ex).ok, `${s}: ${JSON.stringify(ex)}`).toBe(true);
    }
  });

  it("runtime - a wildcard subject is accepted; a malformed one, or one spanning two streams, is refused", () => {
    const spec = { name: "x", contract: contracts["backup.failed"], ackWaitMs: 1000, maxDeliver: 1, backoffMs: [1], handler: async () => undefined };
    expect(defineFunction({ ...spec, subject: "*.failed" }).subject).toBe("*.failed");
    expect(defineFunction({ ...spec, subject: "backup.>" }).subject).toBe("backup.>");
    expect(() => defineFunction({ ...spec, subject: "a.>.b" })).toThrow(/wildcards/);
    expect(() => defineFunction({ ...spec, subject: "a..b" })).toThrow(/wildcards/);
    expect(() => durableConsumer({ name: "x", subject: "backup.*", ackWaitMs: 1000, maxDeliver: 1, backoffMs: [1] })).toThrow(/several streams/);
    expect(() => durableConsumer({ name: "x", subject: "*.progress", ackWaitMs: 1000, maxDeliver: 1, backoffMs: [1] })).toThrow(/not stored/);
    expect(streamForFilter("backup.requested")?.name).toBe("FERRY_COMMANDS");
  });
});
