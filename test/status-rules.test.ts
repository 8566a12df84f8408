/**
 * config/status.ts's rules on made-up inputs (no servers): what is ok, failed, running or never,
 * when a run that ended without an outcome counts as failed, and when a VM is overdue.
 */
import { describe, expect, it } from "vitest";
import { formatRow, summaryLine } from "../cli/commands/status.ts";
import { computeStatus, OutcomeIndex, outcomeOf, scheduleFacts, type StatusInputs } from "../config/status.ts";
import type { ChainRecord } from "../domain/chain/mod.ts";
import type { BackupRun } from "../pipeline/run-journal.ts";
import type { LeaseRecord } from "../pipeline/vm-lease.ts";

const NOW = new Date("2025-06-04T10:00:00Z"); // a Wednesday
const daily = { enabled: true, schedule: { days: "1111111", time: "02:00" } };

function chain(name: string, times: string[], o: { verifiedFail?: string[] } = {}): ChainRecord {
  return {
    format: 1,
    vm: { id: `${name}-id`, name },
    nextSeq: times.length + 1,
    updatedAt: times.at(-1) ?? NOW.toISOString(),
    restorePoints: times.map((time, i) => ({
      id: `rp-${i + 1}`,
      seq: i + 1,
      time,
      kind: i === 0 ? "full" : "incremental",
      runId: `run-${name}-${i + 1}`,
      disks: [
        {
          diskId: "d1",
          alias: "d1",
          virtualSize: 1048576,
          layer: `${name}/d1/x${i}.${i === 0 ? "full" : "incremental"}.qcow2`,
          ...(i > 0 ? { parentLayer: `${name}/d1/x${i - 1}.${i === 1 ? "full" : "incremental"}.qcow2` } : {}),
          kind: i === 0 ? "full" : "incremental",
          size: 1000,
          checksum: { algorithm: "sha256", blockSize: 4194304, value: "0".repeat(64) },
          digestsFile: `${name}/blockhashes/c${i}.d1`,
        },
      ],
      ...(o.verifiedFail?.includes(`rp-${i + 1}`) ? { verified: { time, ok: false, detail: "mismatch" } } : {}),
    })),
  } as unknown as ChainRecord;
}

function run(name: string, runId: string, phase: BackupRun["phase"], startedAt: string, updatedAt = startedAt, extra: Partial<BackupRun> = {}): BackupRun {
  return { runId, kind: "backup", engine: "prd", vm: { id: `${name}-id`, name }, owner: "w1", correlationId: runId, phase, attempt: 1, startedAt, updatedAt, transfers: [], disks: [], ...extra };
}

function outcomes(events: { subject: string; data: Record<string, unknown> }[], since?: Date): OutcomeIndex {
  const index = new OutcomeIndex();
  events.forEach((e, i) => {
    const f = outcomeOf(e.subject, e.data, i + 1, new Date(String(e.data.time)));
    if (f) index.add(f);
  });
  index.since = since;
  return index;
}

function inputs(o: Partial<StatusInputs>): StatusInputs {
  return { now: NOW, policies: {}, chains: [], runs: [], leases: new Map(), outcomes: new OutcomeIndex(), timeZone: "UTC", ...o };
}

describe("status rules", () => {
  it("status rules - the newest outcome event decides ok or failed; a configured VM with nothing is never", () => {
    const rows = computeStatus(
      inputs({
        policies: { web01: daily, db01: daily, new01: daily },
        chains: [chain("web01", ["2025-06-04T02:00:10Z"]), chain("db01", ["2025-06-03T02:00:10Z"])],
        outcomes: outcomes([
          { subject: "backup.completed", data: { vm: "db01", time: "2025-06-03T02:05:00Z", correlationId: "a", restorePoint: "rp-1", kind: "full", bytes: 10, seconds: 3 } },
          { subject: "backup.failed", data: { vm: "db01", time: "2025-06-04T02:01:00Z", correlationId: "b", code: "ENGINE_TLS", message: "certificate verify failed", step: "backup.requested" } },
          { subject: "backup.completed", data: { vm: "web01", time: "2025-06-04T02:05:00Z", correlationId: "c", restorePoint: "rp-1", kind: "full", bytes: 10, seconds: 3 } },
        ]),
      }),
    );
    const by = Object.fromEntries(rows.map((r) => [r.vm, r]));
    expect(by.web01).toMatchObject({ result: "ok", problem: false, overdue: false, lastSuccess: { time: "2025-06-04T02:05:00Z" } });
    expect(by.db01).toMatchObject({ result: "failed", problem: true, outcome: { code: "ENGINE_TLS", message: "certificate verify failed", step: "backup.requested", source: "event" } });
    // db01's good point is from yesterday: 31 h 59 m old > 24 h + 1 h grace.
    expect(by.db01).toMatchObject({ overdue: true, rpo: { targetSeconds: 25 * 3600, overdue: true } });
    expect(by.new01).toMatchObject({ result: "never", problem: false, overdue: false, restorePoints: 0, schedule: { next: "2025-06-05T02:00:00.000Z", previous: "2025-06-04T02:00:00.000Z" } });
  });

  it("status rules - a run in progress: running with the lease's step; 'transferred' without an outcome is still running", () => {
    const leases = new Map<string, LeaseRecord>([["web01-id", { vmId: "web01-id", runId: "r2", owner: "", step: "chain-updated", expiresAt: "2025-06-04T10:10:00Z" }]]);
    const rows = computeStatus(
      inputs({
        policies: { web01: daily },
        chains: [chain("web01", ["2025-06-03T02:00:10Z"])],
        runs: [run("web01", "r2", "transferred", "2025-06-04T09:40:00Z", "2025-06-04T09:41:00Z", { disks: [{ id: "d1", state: "placed" }, { id: "d2", state: "placed" }] })],
        leases,
        outcomes: outcomes([{ subject: "backup.completed", data: { vm: "web01", time: "2025-06-03T02:05:00Z", correlationId: "r1" } }]),
      }),
    );
    expect(rows[0]).toMatchObject({ result: "running", lastResult: "ok", running: { runId: "r2", step: "chain-updated", waiting: true, phase: "transferred", disks: { placed: 2, total: 2 } } });
  });

  it("status rules - runs that ended without an outcome: failed in the journal, abandoned, stalled", () => {
    const rows = computeStatus(
      inputs({
        policies: { a: daily, b: daily, c: daily, d: daily },
        runs: [
          run("a", "ra", "failed", "2025-06-04T02:00:00Z", "2025-06-04T02:03:00Z", { error: { code: "VM_LOCKED", message: "locked" } }),
          run("b", "rb", "abandoned", "2025-06-04T02:00:00Z", "2025-06-04T02:10:00Z"),
          // No lease, no outcome, quiet for 8 hours: nobody works on it any more.
          run("c", "rc", "backup", "2025-06-04T02:00:00Z", "2025-06-04T02:01:00Z"),
          // Quiet for 5 minutes only: between two steps, still running.
          run("d", "rd", "transferred", "2025-06-04T09:50:00Z", "2025-06-04T09:55:00Z"),
        ],
      }),
    );
    const by = Object.fromEntries(rows.map((r) => [r.vm, r]));
    expect(by.a).toMatchObject({ result: "failed", outcome: { code: "VM_LOCKED", source: "journal" } });
    expect(by.b).toMatchObject({ result: "failed", outcome: { code: "RUN_ABANDONED", source: "journal" } });
    expect(by.c).toMatchObject({ result: "failed", outcome: { code: "RUN_STALLED", source: "journal" } });
    expect(by.c!.outcome!.message).toContain("phase backup");
    expect(by.d).toMatchObject({ result: "running", running: { step: "disk-transferred", waiting: false } });
  });

  it("status rules - an outcome event for the run ends it; a run older than the events still kept is not judged", () => {
    const rows = computeStatus(
      inputs({
        policies: { a: daily, b: daily },
        chains: [chain("b", ["2025-06-04T02:00:10Z"])],
        runs: [run("a", "ra", "transferred", "2025-06-04T02:00:00Z", "2025-06-04T02:03:00Z"), run("b", "rb", "backup", "2025-05-01T02:00:00Z")],
        outcomes: outcomes(
          [
            { subject: "backup.failed", data: { vm: "a", time: "2025-06-04T02:04:00Z", correlationId: "ra", code: "STORE_VM_MISMATCH", step: "disk.transferred" } },
            { subject: "backup.completed", data: { vm: "b", time: "2025-06-04T02:05:00Z", correlationId: "x" } },
          ],
          new Date("2025-05-05T00:00:00Z"),
        ),
      }),
    );
    const by = Object.fromEntries(rows.map((r) => [r.vm, r]));
    expect(by.a).toMatchObject({ result: "failed", outcome: { code: "STORE_VM_MISMATCH", step: "disk.transferred", source: "event" } });
    expect(by.a!.running).toBeUndefined();
    expect(by.b).toMatchObject({ result: "ok", problem: false });
  });

  it("status rules - the last good point skips one that failed verification; disabled VMs and VMs outside the config are never overdue", () => {
    const rows = computeStatus(
      inputs({
        policies: { v: daily, off: { enabled: false, schedule: daily.schedule } },
        chains: [chain("v", ["2025-06-02T02:00:10Z", "2025-06-04T02:00:10Z"], { verifiedFail: ["rp-2"] }), chain("off", ["2025-05-01T02:00:00Z"]), chain("stray", ["2025-05-01T02:00:00Z"])],
      }),
    );
    const by = Object.fromEntries(rows.map((r) => [r.vm, r]));
    expect(by.v).toMatchObject({ last: { id: "rp-2", verified: false }, lastGood: { id: "rp-1", number: 1 }, overdue: true, result: "ok" });
    expect(by.off).toMatchObject({ overdue: false, problem: false, schedule: { description: "disabled" } });
    expect(by.stray).toMatchObject({ configured: false, overdue: false, problem: false, result: "ok" });
  });

  it("status rules - overdue alone (last result ok) is a problem, so ferry status exits 1; the text flags it OVERDUE and counts it", () => {
    const rows = computeStatus(
      inputs({
        policies: { late: daily, fresh: daily },
        chains: [chain("late", ["2025-06-03T02:00:10Z"]), chain("fresh", ["2025-06-04T02:00:10Z"])],
        outcomes: outcomes([
          { subject: "backup.completed", data: { vm: "late", time: "2025-06-03T02:05:00Z", correlationId: "a" } },
          { subject: "backup.completed", data: { vm: "fresh", time: "2025-06-04T02:05:00Z", correlationId: "b" } },
        ]),
      }),
    );
    const by = Object.fromEntries(rows.map((r) => [r.vm, r]));
    // late: last good point 31 h 59 m 50 s old against 24 h + 1 h grace.
    expect(by.late).toMatchObject({ result: "ok", lastResult: "ok", overdue: true, problem: true, rpo: { overdue: true, targetSeconds: 25 * 3600 } });
    expect(by.fresh).toMatchObject({ result: "ok", overdue: false, problem: false });
    // cli/commands/status.ts exits 1 when any row is a problem.
    expect(rows.some((r) => r.problem)).toBe(true);
    expect(formatRow(by.late!, NOW.getTime())[0]).toMatch(/ {2}OVERDUE: lag 1d 7h > 1d 1h$/);
    expect(formatRow(by.fresh!, NOW.getTime())[0]).toMatch(/ {2}lag 7h 59m of 1d 1h$/);
    expect(summaryLine(rows)).toBe("2 VMs: 2 ok; 1 overdue");
  });

  it("status rules - the interval is the gap between the two newest slots: Monday after a weekend, Tuesday after Monday", () => {
    const weekdays = { days: "1111100", time: "02:00" };
    // Monday 2025-06-02 03:00: newest slots Friday 02:00 and Monday 02:00 → 72 h.
    expect(scheduleFacts(weekdays, new Date("2025-06-02T03:00:00Z"), "UTC")).toMatchObject({ intervalMs: 72 * 3600_000, next: new Date("2025-06-03T02:00:00Z") });
    // Tuesday: Monday and Tuesday → 24 h, so a missed Tuesday is noticed on Tuesday.
    expect(scheduleFacts(weekdays, new Date("2025-06-03T04:00:00Z"), "UTC")).toMatchObject({ intervalMs: 24 * 3600_000 });
    expect(scheduleFacts({ cron: "0 */6 * * *" }, new Date("2025-06-03T04:00:00Z"), "UTC")).toMatchObject({ intervalMs: 6 * 3600_000, next: new Date("2025-06-03T06:00:00Z") });
  });
});
