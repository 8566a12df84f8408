import { describe, expect, it } from "vitest";
import { backupCompleted, backupFailed, chainUpdated } from "../../contracts/mod.ts";
import { alertTargetOf, emitEvent } from "./envelope.ts";
import { checkOutbound, ContractViolationError } from "./publisher.ts";

const input = { id: "FERRY_COMMANDS:3", time: "2025-01-31T02:00:00Z", correlationId: "c-1" };
const now = new Date("2025-01-31T02:12:30Z");
const completed = { vm: "web01", restorePoint: "rp-1", kind: "full", bytes: 0, seconds: 1, retention: { removed: [] } };

describe("runtime envelope", () => {
  it("emitEvent - fills the envelope and accepts an event that declares every field", () => {
    expect(emitEvent(input, backupCompleted, completed, { now })).toEqual({
      subject: "backup.completed",
      event: { ...completed, id: "FERRY_COMMANDS:3:backup.completed", time: "2025-01-31T02:12:30.000Z", correlationId: "c-1" },
    });
  });

  it("emitEvent - refuses an undeclared field, top level or nested, with a readable reason", () => {
    expect(() => emitEvent(input, backupCompleted, { ...completed, mdoe: "full" }, { now })).toThrow(ContractViolationError);
    expect(() => emitEvent(input, backupCompleted, { ...completed, mdoe: "full" }, { now })).toThrow(
      "event for backup.completed does not fit its contract: mdoe: unknown field",
    );
    expect(() => emitEvent(input, backupCompleted, { ...completed, retention: { removed: [], kept: 3 } }, { now })).toThrow(
      /retention\.kept: unknown field/,
    );
  });

  it("checkOutbound - strict, while a consumer of the same event stays loose", () => {
    const [ev] = chainUpdated.examples.valid as Record<string, unknown>[];
    const extra = { ...ev!, id: "x", producedBy: "v2" } as Record<string, unknown> & { id: string };
    expect(chainUpdated.validate(extra).ok).toBe(true);
    expect(() => checkOutbound({ subject: "chain.updated", event: extra })).toThrow(/producedBy: unknown field/);
    expect(() => checkOutbound({ subject: "chain.updated", event: ev as { id: string } })).not.toThrow();
    expect(() => checkOutbound({ subject: "nope", event: { id: "x" } })).toThrow(/no contract for this subject/);
  });

  it("alertTargetOf - engine from `engine`, vmId from vm.id when vm is an object; values that would not fit are left out", () => {
    expect(alertTargetOf({ vm: "web01", engine: "prd" })).toEqual({ engine: "prd" });
    expect(alertTargetOf({ vm: { id: "vm-1", name: "web01" } })).toEqual({ vmId: "vm-1" });
    expect(alertTargetOf({ vm: { id: "vm-1", name: "web01" }, engine: "dr" })).toEqual({ engine: "dr", vmId: "vm-1" });
    expect(alertTargetOf({ vm: "web01" })).toEqual({});
    expect(alertTargetOf({ vm: { id: "" }, engine: "../prd" })).toEqual({});
    expect(alertTargetOf({ vm: ["vm-1"], engine: 5 })).toEqual({});
    // What it returns always fits backup.failed.
    const body = { vm: "web01", code: "X", message: "m", ...alertTargetOf({ vm: { id: "vm-1", name: "web01" }, engine: "prd" }) };
    expect(() => emitEvent(input, backupFailed, body, { now })).not.toThrow();
  });
});
