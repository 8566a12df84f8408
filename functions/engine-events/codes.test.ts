import { describe, expect, it } from "vitest";
import { chainBreakingKinds, ovirtEventKinds } from "../../contracts/mod.ts";
import { ENGINE_EVENT_KINDS, kindOfCode } from "./codes.ts";

describe("engine-events codes", () => {
  it("kindOfCode - maps ovirt-engine's AuditLogType success codes, and nothing else", () => {
    expect(kindOfCode(100)).toBe("snapshot-restored");
    expect(kindOfCode(95)).toBe("snapshot-committed");
    expect(kindOfCode(2014)).toBe("disk-removed");
    expect(kindOfCode(371)).toBe("disk-resized");
    expect(kindOfCode(2010)).toBe("disk-moved");
    expect(kindOfCode(10797)).toBe("checkpoint-removed");
    expect(kindOfCode(113)).toBe("vm-removed");
    // Failures change nothing; backups, transfers and external events are not news.
    for (const code of [101, 96, 2015, 370, 2011, 10798, 10790, 1032, 9801, 12001, undefined]) expect(kindOfCode(code)).toBeUndefined();
  });

  it("ENGINE_EVENT_KINDS - every kind is one of the contract's; every chain-breaking kind has a code", () => {
    const kinds = new Set([...ENGINE_EVENT_KINDS.values()].map((v) => v.kind));
    for (const k of kinds) expect(ovirtEventKinds).toContain(k);
    for (const k of chainBreakingKinds) expect(kinds.has(k)).toBe(true);
    expect(kinds.has("vm-removed")).toBe(true);
  });
});
