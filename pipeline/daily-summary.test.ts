import { describe, expect, it } from "vitest";
import { EngineServerError, engineFaultError } from "../adapters/ovirt/mod.ts";
import type { PostEvent } from "../adapters/ovirt/mod.ts";
import type { VmStatus } from "../config/status.ts";
import type { SlotClaims } from "../domain/schedule/mod.ts";
import { postDailySummary, summarize, summaryClaimKey, summaryCustomId, summaryDueDay, summaryText, type DailySummary } from "./daily-summary.ts";

const fault = (status: number, detail: string) => ({ status, reason: "Operation Failed", detail, method: "POST", path: "/events" });
const row = (vm: string, o: Partial<VmStatus>): VmStatus => ({ vm, vmId: `${vm}-id`, configured: true, result: "never", restorePoints: 0, overdue: false, problem: false, ...o });

describe("daily summary", () => {
  it("summarize - each VM in exactly one bucket: failed wins over overdue, running first backups are never", () => {
    const rows = [
      row("ok1", { result: "ok", lastResult: "ok" }),
      row("ok2", { result: "running", lastResult: "ok" }),
      row("bad", { result: "running", lastResult: "failed", overdue: true }),
      row("late", { result: "ok", lastResult: "ok", overdue: true }),
      row("new", { result: "running" }),
      row("none", {}),
    ];
    const point = (id: string, sizes: number[]) => ({ id, time: "2026-01-01T00:00:00Z", disks: sizes.map((size, i) => ({ diskId: `d${i}`, size })) });
    const chains = [
      { vm: { id: "a", name: "ok1" }, restorePoints: [point("p1", [100, 20]), point("p2", [5])] },
      { vm: { id: "b", name: "late" }, restorePoints: [point("p3", [1000])], pending: { removing: ["p3"] } },
    ] as never;
    expect(summarize(rows, chains)).toEqual({
      vms: 6,
      protected: 2,
      failed: 1,
      overdue: 1,
      never: 2,
      bytesStored: 125, // p3 is being removed by retention: not counted
      failedVms: ["bad"],
      overdueVms: ["late"],
      neverVms: ["new", "none"],
    });
  });

  it("summaryDueDay - due from summary.time on, per local day; a time skipped by the spring-forward jump is due right after it", () => {
    const due = (iso: string, time = "07:00", zone = "Europe/Berlin") => summaryDueDay(new Date(iso), time, zone);
    expect(due("2026-12-02T05:59:00Z")).toBeUndefined(); // 06:59 CET
    expect(due("2026-12-02T06:00:00Z")).toBe("2026-12-02"); // 07:00 CET
    expect(due("2026-12-02T22:59:00Z")).toBe("2026-12-02"); // 23:59 CET: still that day
    expect(due("2026-12-02T23:00:00Z")).toBeUndefined(); // 00:00 CET on the 3rd, before 07:00
    expect(due("2026-03-29T00:59:00Z", "02:30")).toBeUndefined(); // 01:59 CET
    expect(due("2026-03-29T01:00:00Z", "02:30")).toBe("2026-03-29"); // 03:00 CEST, right after the jump
    expect(due("2026-12-02T06:00:00Z", "07:00", "America/New_York")).toBeUndefined(); // 01:00 EST
    expect(due("2026-12-02T12:00:00Z", "07:00", "America/New_York")).toBe("2026-12-02");
    expect(() => due("2026-12-02T06:00:00Z", "7:00")).toThrow(/HH:MM/);
  });

  it("summaryText - says the day, the zone, the counts, the bytes and the names", () => {
    const s: DailySummary = { day: "2026-12-02", timeZone: "Europe/Berlin", vms: 3, protected: 1, failed: 1, overdue: 0, never: 1, bytesStored: 3 * 1024 ** 3, failedVms: ["db01"], overdueVms: [], neverVms: ["new01"] };
    expect(summaryText(s)).toBe(
      "Ferry daily summary 2026-12-02 (Europe/Berlin): 3 VMs: 1 protected, 1 failed, 0 overdue, 1 never backed up; 3.00 GiB stored (3221225472 bytes). Failed: db01. Never backed up: new01.",
    );
    const many = { ...s, failed: 500, failedVms: Array.from({ length: 500 }, (_, i) => `vm-with-a-long-name-${i}`) };
    expect(summaryText(many).length).toBeLessThanOrEqual(1000);
    expect(summaryText(many)).toMatch(/and 480 more\./);
  });

  it("summaryCustomId / summaryClaimKey - one per deployment, engine and day", () => {
    const id = summaryCustomId("dep1", "prd", "2026-12-02");
    expect(Number.isInteger(id) && id > 0 && id <= 0x7fffffff).toBe(true);
    expect(summaryCustomId("dep1", "prd", "2026-12-02")).toBe(id);
    expect(new Set([id, summaryCustomId("dep1", "dr", "2026-12-02"), summaryCustomId("dep1", "prd", "2026-12-03"), summaryCustomId("dep2", "prd", "2026-12-02")]).size).toBe(4);
    expect(summaryClaimKey("prd", "2026-12-02")).toBe("summary.prd.20261202");
  });

  it("postDailySummary - posts normal/ferry once per engine; a claim or the engine's duplicate refusal means done; a failure is not claimed", async () => {
    const claimed = new Map<string, Record<string, unknown>>();
    const claims: SlotClaims = { has: async (k) => claimed.has(k), claim: async (k, v) => (claimed.has(k) ? false : (claimed.set(k, v), true)) };
    const posted: { engine: string; e: PostEvent }[] = [];
    // Like the engine: (origin, custom_id) is unique.
    const engine = (name: string, o: { down?: boolean } = {}) => ({
      events: {
        async post(e: PostEvent) {
          if (o.down) throw new EngineServerError(fault(503, "Service Unavailable"));
          if (posted.some((p) => p.engine === name && p.e.customId === e.customId && p.e.origin === e.origin)) throw engineFaultError(fault(400, "[External Event with this custom id already exists.]"));
          posted.push({ engine: name, e });
          return {};
        },
      },
    });
    const summary: DailySummary = { day: "2026-12-02", timeZone: "UTC", vms: 0, protected: 0, failed: 0, overdue: 0, never: 0, bytesStored: 0, failedVms: [], overdueVms: [], neverVms: [] };
    const engines = new Map([["prd", engine("prd")], ["dr", engine("dr")]]);
    const now = new Date("2026-12-02T07:00:00Z");
    const first = await postDailySummary({ summary, engines, claims, deployment: "d", now });
    expect(first.map((r) => [r.engine, r.status])).toEqual([["prd", "posted"], ["dr", "posted"]]);
    expect(posted.map((p) => [p.engine, p.e.severity, p.e.origin, p.e.customId])).toEqual([
      ["prd", "normal", "ferry", summaryCustomId("d", "prd", "2026-12-02")],
      ["dr", "normal", "ferry", summaryCustomId("d", "dr", "2026-12-02")],
    ]);
    const second = await postDailySummary({ summary, engines, claims, deployment: "d", now });
    expect(second.map((r) => r.status)).toEqual(["claimed", "claimed"]);
    // A second scheduler that lost its claims (or crashed before claiming): the engine refuses the id.
    claimed.clear();
    const third = await postDailySummary({ summary, engines, claims, deployment: "d", now });
    expect(third.map((r) => r.status)).toEqual(["duplicate", "duplicate"]);
    expect(posted).toHaveLength(2);
    // An engine that is down: failed, not claimed, so the next try posts it.
    const down = await postDailySummary({ summary: { ...summary, day: "2026-12-03" }, engines: new Map([["prd", engine("prd", { down: true })]]), claims, deployment: "d", now });
    expect(down).toMatchObject([{ engine: "prd", status: "failed" }]);
    expect(claimed.has(summaryClaimKey("prd", "2026-12-03"))).toBe(false);
  });
});
