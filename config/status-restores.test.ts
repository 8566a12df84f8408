import { describe, expect, it } from "vitest";
import type { RestoreRun } from "../pipeline/restore-journal.ts";
import { restoreStatus, STALLED_AFTER_MS } from "./status.ts";

const now = new Date("2026-01-10T12:00:00Z");
const ago = (ms: number) => new Date(now.getTime() - ms).toISOString();
function run(runId: string, phase: RestoreRun["phase"], startedAt: string, updatedAt: string, extra: Partial<RestoreRun> = {}): RestoreRun {
  return { runId, kind: "restore", target: "dr", vm: { name: "web01" }, name: "web01_restored", mode: "restore", owner: "", correlationId: runId, phase, attempt: 1, startedAt, updatedAt, disks: [], transfers: [], ...extra };
}

describe("status of restores", () => {
  it("restoreStatus - running, last ended (failed or ok), last ok; a run unchanged for the stall time is RESTORE_STALLED", () => {
    const s = restoreStatus(
      [
        run("r1", "done", ago(5 * 3600_000), ago(5 * 3600_000 - 60_000)),
        run("r2", "failed", ago(4 * 3600_000), ago(4 * 3600_000 - 60_000), { error: { code: "RESTORE_PREFLIGHT", message: "no storage domain" } }),
        run("r3", "disks", ago(60_000), ago(10_000), { disks: [{ sourceId: "a", alias: "d1", id: "n1", state: "verified" }, { sourceId: "b", alias: "d2", id: "n2", state: "created" }] }),
      ],
      now,
    ).get("web01")!;
    expect(s.lastOk?.runId).toBe("r1");
    expect(s.last).toMatchObject({ runId: "r2", result: "failed", error: { code: "RESTORE_PREFLIGHT" } });
    expect(s.running).toMatchObject({ runId: "r3", phase: "disks", disks: { verified: 1, total: 2 } });

    const stalled = restoreStatus([run("r4", "vm", ago(STALLED_AFTER_MS + 120_000), ago(STALLED_AFTER_MS))], now).get("web01")!;
    expect(stalled.running).toBeUndefined();
    expect(stalled.last).toMatchObject({ runId: "r4", result: "failed", error: { code: "RESTORE_STALLED" } });
  });
});
