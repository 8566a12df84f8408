import { describe, expect, it } from "vitest";
import { decideMode, diskLayerMode, planDisks, type ChainSummary, type EngineDisk } from "./decide.ts";

const monday = new Date("2024-05-06T02:00:00Z");
const tuesday = new Date("2024-05-07T02:00:00Z");
const chain = (over: Partial<ChainSummary> = {}): ChainSummary => ({
  last: { id: "rp1", time: "2024-05-05T02:00:00Z", checkpointId: "cp1" },
  lastFullTime: "2024-05-05T02:00:00Z",
  incrementalsSinceFull: 0,
  ownCheckpoints: ["cp1"],
  ...over,
});
const ok = [{ id: "cp1", state: "created" }];

describe("decideMode", () => {
  it("decideMode - first backup of a VM is full with a reason", () => {
    const d = decideMode({ requested: "auto", chain: { incrementalsSinceFull: 0, ownCheckpoints: [] }, checkpoints: [], policy: {}, now: tuesday, incrementalSupported: true });
    expect(d.mode).toBe("full");
    expect(d.reason).toMatch(/first backup/);
  });

  it("decideMode - an existing valid checkpoint gives an incremental from it", () => {
    const d = decideMode({ requested: "auto", chain: chain(), checkpoints: ok, policy: {}, now: tuesday, incrementalSupported: true });
    expect(d).toEqual({ mode: "incremental", fromCheckpointId: "cp1", removeCheckpoints: [] });
  });

  it("decideMode - a missing checkpoint falls back to full with the reason", () => {
    const d = decideMode({ requested: "incremental", chain: chain(), checkpoints: [], policy: {}, now: tuesday, incrementalSupported: true });
    expect(d.mode).toBe("full");
    expect(d.reason).toMatch(/cp1 no longer exists/);
  });

  it("decideMode - invalid checkpoints give a full and only Ferry's own are removed", () => {
    const cps = [
      { id: "cp1", state: "invalid" },
      { id: "other", state: "invalid", description: "veeam" },
      { id: "cp0", state: "invalid", description: "ferry: web01" },
    ];
    const d = decideMode({ requested: "auto", chain: chain(), checkpoints: cps, policy: {}, now: tuesday, incrementalSupported: true });
    expect(d.mode).toBe("full");
    expect(d.reason).toMatch(/invalid/);
    expect(d.removeCheckpoints).toEqual(["cp1", "cp0"]);
  });

  it("decideMode - policy rules force a full: chain length, age, weekly day", () => {
    const base = { requested: "auto" as const, checkpoints: ok, incrementalSupported: true };
    expect(decideMode({ ...base, chain: chain({ incrementalsSinceFull: 5 }), policy: { maxChainLength: 6 }, now: tuesday }).reason).toMatch(/6 layers \(max 6\)/);
    expect(decideMode({ ...base, chain: chain({ incrementalsSinceFull: 4 }), policy: { maxChainLength: 6 }, now: tuesday }).mode).toBe("incremental");
    expect(decideMode({ ...base, chain: chain({ lastFullTime: "2024-04-29T02:00:00Z" }), policy: { fullEveryDays: 7 }, now: monday }).reason).toMatch(/7 days old/);
    expect(decideMode({ ...base, chain: chain(), policy: { weeklyFullDay: 1 }, now: monday }).reason).toMatch(/monday/);
    expect(decideMode({ ...base, chain: chain(), policy: { weeklyFullDay: 1 }, now: tuesday }).mode).toBe("incremental");
    // a second run on the full day does not take another full
    expect(decideMode({ ...base, chain: chain({ lastFullTime: "2024-05-06T01:00:00Z" }), policy: { weeklyFullDay: 1 }, now: monday }).mode).toBe("incremental");
  });

  it("decideMode - the weekly full day is the local day of the configured zone, near midnight and across DST", () => {
    const base = { requested: "auto" as const, checkpoints: ok, incrementalSupported: true };
    const at = (iso: string, lastFullTime = "2026-03-20T02:00:00Z", timeZone = "Europe/Berlin") =>
      decideMode({ ...base, chain: chain({ last: { id: "rp1", time: lastFullTime, checkpointId: "cp1" }, lastFullTime }), policy: { weeklyFullDay: 1, timeZone }, now: new Date(iso) });
    // Monday 2026-03-30 00:30 in Berlin (CEST, UTC+2) is still Sunday 22:30 in UTC: it is Monday here.
    expect(at("2026-03-29T22:30:00Z").reason).toMatch(/weekly full day \(monday\)/);
    expect(at("2026-03-29T22:30:00Z", undefined, "UTC").mode).toBe("incremental");
    // Sunday 23:30 in Berlin on the spring-forward day (21:30 UTC) is Sunday: no weekly full yet.
    expect(at("2026-03-29T21:30:00Z").mode).toBe("incremental");
    // Monday 2026-10-26 00:30 right after the fall-back (CET, UTC+1) = Sunday 23:30 UTC: Monday in Berlin.
    expect(at("2026-10-25T23:30:00Z").mode).toBe("full");
    // A full taken at 00:10 Berlin on that Monday (Sunday 23:10 UTC) is today's: a later Monday run stays incremental…
    expect(at("2026-10-26T10:00:00Z", "2026-10-25T23:10:00Z").mode).toBe("incremental");
    // …whereas in UTC that full was Sunday's and Monday 10:00 would take another one.
    expect(at("2026-10-26T10:00:00Z", "2026-10-25T23:10:00Z", "UTC").mode).toBe("full");
    // New York: Monday 2026-11-02 20:30 EST is Tuesday 01:30 UTC, still Monday locally.
    expect(at("2026-11-03T01:30:00Z", undefined, "America/New_York").mode).toBe("full");
    expect(at("2026-11-03T01:30:00Z", undefined, "UTC").mode).toBe("incremental");
  });

  it("decideMode - explicit full and an engine without incremental give a full", () => {
    expect(decideMode({ requested: "full", chain: chain(), checkpoints: ok, policy: {}, now: tuesday, incrementalSupported: true }).reason).toMatch(/requested/);
    expect(decideMode({ requested: "incremental", chain: chain(), checkpoints: ok, policy: {}, now: tuesday, incrementalSupported: false }).reason).toMatch(/not available/);
  });
});

describe("planDisks", () => {
  const disk = (over: Partial<EngineDisk>): EngineDisk => ({ id: "d", alias: "d", format: "cow", qcowVersion: "qcow2_v3", backup: "incremental", contentType: "data", storageType: "image", shareable: false, provisionedSize: 1, ...over });

  it("planDisks - skips non-data, LUN and shareable disks with reasons", () => {
    const p = planDisks([
      disk({ id: "a" }),
      disk({ id: "s", contentType: "backup_scratch" }),
      disk({ id: "l", storageType: "lun" }),
      disk({ id: "sh", shareable: true }),
    ]);
    expect(p.included.map((d) => d.id)).toEqual(["a"]);
    expect(p.skipped.map((s) => [s.id, s.reason])).toEqual([
      ["s", expect.stringMatching(/backup_scratch/)],
      ["l", expect.stringMatching(/lun/)],
      ["sh", expect.stringMatching(/shareable/)],
    ]);
  });

  it("planDisks - raw and qcow2 v2 disks are full-only with how to enable incremental", () => {
    const p = planDisks([disk({ id: "r", format: "raw" }), disk({ id: "v2", qcowVersion: "qcow2_v2" }), disk({ id: "ok" })]);
    expect(p.included).toHaveLength(3);
    expect(p.fullOnly.map((f) => f.id)).toEqual(["r", "v2"]);
    expect(p.fullOnly[1]?.reason).toMatch(/qcow_version.*qcow2_v3/);
    expect(p.fullOnly[0]?.reason).toMatch(/backup.*incremental/);
  });
});

describe("diskLayerMode", () => {
  it("diskLayerMode - a new disk inside an incremental backup gets a full layer", () => {
    expect(diskLayerMode({ backupMode: "incremental", engineBackupMode: "full", previousLayer: undefined, alias: "new", fromCheckpointId: "cp1" }).reason).toMatch(/new disk/);
    expect(diskLayerMode({ backupMode: "incremental", engineBackupMode: "incremental", previousLayer: "a/b.qcow2", alias: "x" })).toEqual({ mode: "incremental" });
    expect(diskLayerMode({ backupMode: "incremental", engineBackupMode: "incremental", previousLayer: undefined, alias: "x" }).mode).toBe("full");
  });
  it("decideMode - a chain with a point that failed verification is not built on: full with the reason, even when incremental is asked", () => {
    const broken = { ...chain(), broken: "restore point 3 failed verification on 2025-01-30 02:00; the chain is not built on" };
    const d = decideMode({ requested: "incremental", chain: broken, checkpoints: ok, policy: {}, now: tuesday, incrementalSupported: true });
    expect(d.mode).toBe("full");
    expect(d.reason).toMatch(/restore point 3 failed verification/);
  });
});
