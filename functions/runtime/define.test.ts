import { describe, expect, it } from "vitest";
import { backupRequested } from "../../contracts/mod.ts";
import { defineFunction } from "./define.ts";
import { backoffFor, errorLine } from "./runner.ts";

const base = { name: "backup-requested", contract: backupRequested, ackWaitMs: 60_000, maxDeliver: 5, backoffMs: [1000], handler: async () => ({}) };

describe("runtime define", () => {
  it("defineFunction - fills subject, concurrency and heartbeat from the contract and ack wait", () => {
    const def = defineFunction(base);
    expect(def).toMatchObject({ subject: "backup.requested", concurrency: 1, heartbeatMs: 20_000, maxDeliver: 5 });
    expect(Object.isFrozen(def)).toBe(true);
  });

  it("defineFunction - rejects a definition without limits or with a bad name, saying why", () => {
    expect(() => defineFunction({ ...base, maxDeliver: 0 })).toThrow(/maxDeliver must be an integer >= 1/);
    expect(() => defineFunction({ ...base, backoffMs: [] })).toThrow(/backoffMs/);
    expect(() => defineFunction({ ...base, name: "Backup_Requested" })).toThrow(/kebab-case/);
    expect(() => defineFunction({ ...base, ackWaitMs: 5_000, heartbeatMs: 5_000 })).toThrow(/heartbeatMs/);
    expect(() => defineFunction({ ...base, concurrency: 0 })).toThrow(/concurrency/);
  });

  it("backoffFor - uses the n-th delay and repeats the last", () => {
    expect([1, 2, 3, 9].map((n) => backoffFor([100, 200, 400], n))).toEqual([100, 200, 400, 400]);
  });

  it("errorLine - one redacted line", () => {
    expect(errorLine(new Error("GET https://h/images/secretticket1 failed\nstack..."))).toBe("GET https://h/images/*** failed");
    expect(errorLine("")).toBe("unknown error");
  });
});
