import { describe, expect, it } from "vitest";
import { cronMatches, cronProblem, dueSlots, isoWeekKey, localTime, parseCron, ScheduleError, slotClaimKey, slotKey } from "./mod.ts";

const at = (iso: string) => new Date(iso);
const isos = (ds: Date[]) => ds.map((d) => d.toISOString());

describe("schedule", () => {
  it("cron - parses numbers, ranges, lists, steps and names", () => {
    const c = parseCron("*/15 2-4,22 1,15 jan-mar,dec mon-fri");
    expect([...c.minutes]).toEqual([0, 15, 30, 45]);
    expect([...c.hours]).toEqual([2, 3, 4, 22]);
    expect([...c.daysOfMonth]).toEqual([1, 15]);
    expect([...c.months]).toEqual([1, 2, 3, 12]);
    expect([...c.daysOfWeek].sort()).toEqual([1, 2, 3, 4, 5]);
    expect([...parseCron("5/20 * * * 7").minutes]).toEqual([5, 25, 45]);
    expect([...parseCron("0 0 * * 7").daysOfWeek]).toEqual([0]);
    expect([...parseCron("@hourly").minutes]).toEqual([0]);
    expect([...parseCron("10-20/5 * * * *").minutes]).toEqual([10, 15, 20]);
  });

  it("cron - rejects malformed expressions with the field named", () => {
    expect(() => parseCron("* * * *")).toThrow(/5 fields/);
    expect(() => parseCron("60 * * * *")).toThrow(/^cron "60 \* \* \* \*": minute "60": values must be 0..59$/);
    expect(() => parseCron("* 5-2 * * *")).toThrow(/hour .* start is after its end/);
    expect(() => parseCron("*/0 * * * *")).toThrow(/step must be at least 1/);
    expect(() => parseCron("* * * foo *")).toThrow(ScheduleError);
    expect(() => parseCron("* * 0 * *")).toThrow(/day of month/);
    expect(() => parseCron("@fortnightly")).toThrow(/unknown macro "@fortnightly": use @yearly/);
    expect(() => parseCron("")).toThrow(/5 fields .*found 0/);
  });

  it("cronProblem - the same verdicts as parseCron, as text without the expression", () => {
    expect(cronProblem("0 2 * * MON")).toBeUndefined();
    expect(cronProblem("@DAILY")).toBeUndefined();
    expect(cronProblem("60 * * * *")).toBe('minute "60": values must be 0..59');
    expect(cronProblem("0 2 * *")).toMatch(/^must have 5 fields/);
    expect(cronProblem("0 2 * * funday")).toMatch(/^day of week "funday": use numbers, names/);
    expect(cronProblem("0 2 * x *")).toMatch(/^month "x": use numbers, names/);
    expect(cronProblem("x 2 * * *")).toBe('minute "x": use numbers, *, ranges (1-5), lists (1,3) and steps (*/15)');
  });

  it("cron - day of month and day of week: either when both are restricted, both otherwise", () => {
    const either = parseCron("0 2 13 * fri");
    const t = (iso: string) => localTime(at(iso), "UTC");
    expect(cronMatches(either, t("2025-06-13T02:00:00Z"))).toBe(true); // Friday the 13th
    expect(cronMatches(either, t("2025-06-06T02:00:00Z"))).toBe(true); // a Friday
    expect(cronMatches(either, t("2025-05-13T02:00:00Z"))).toBe(true); // a Tuesday the 13th
    expect(cronMatches(either, t("2025-06-10T02:00:00Z"))).toBe(false);
    const both = parseCron("0 2 * * fri");
    expect(cronMatches(both, t("2025-05-13T02:00:00Z"))).toBe(false);
    expect(cronMatches(both, t("2025-06-06T02:00:00Z"))).toBe(true);
  });

  it("dueSlots - weekday mask and time in UTC over two weeks", () => {
    const slots = dueSlots({ days: "1111100", time: "02:30" }, at("2025-06-01T00:00:00Z"), at("2025-06-15T00:00:00Z"), { timeZone: "UTC", maxWindowMs: 15 * 86_400_000 });
    // 2025-06-02 is a Monday: Mon-Fri of two weeks.
    expect(isos(slots)).toEqual(
      ["02", "03", "04", "05", "06", "09", "10", "11", "12", "13"].map((d) => `2025-06-${d}T02:30:00.000Z`),
    );
  });

  it("dueSlots - window is (from, to]: a slot at `from` is not repeated, a slot at `to` is due", () => {
    const s = { days: "1111111", time: "02:00" };
    expect(dueSlots(s, at("2025-06-02T02:00:00Z"), at("2025-06-02T03:00:00Z"), { timeZone: "UTC" })).toEqual([]);
    expect(isos(dueSlots(s, at("2025-06-02T01:59:30Z"), at("2025-06-02T02:00:00Z"), { timeZone: "UTC" }))).toEqual(["2025-06-02T02:00:00.000Z"]);
  });

  it("dueSlots - reads times in the configured zone", () => {
    // 02:00 in Berlin in June (UTC+2) is 00:00 UTC.
    const slots = dueSlots({ cron: "0 2 * * *" }, at("2025-06-01T12:00:00Z"), at("2025-06-03T12:00:00Z"), { timeZone: "Europe/Berlin" });
    expect(isos(slots)).toEqual(["2025-06-02T00:00:00.000Z", "2025-06-03T00:00:00.000Z"]);
  });

  it("dueSlots - a due time skipped by the spring-forward jump runs right after it, once", () => {
    // Berlin 2025-03-30: 02:00 → 03:00 local (01:00 UTC).
    const slots = dueSlots({ days: "1111111", time: "02:30" }, at("2025-03-28T12:00:00Z"), at("2025-03-31T12:00:00Z"), { timeZone: "Europe/Berlin" });
    expect(isos(slots)).toEqual(["2025-03-29T01:30:00.000Z", "2025-03-30T01:00:00.000Z", "2025-03-31T00:30:00.000Z"]);
    const every15 = dueSlots({ cron: "*/15 2 * * *" }, at("2025-03-30T00:00:00Z"), at("2025-03-30T02:00:00Z"), { timeZone: "Europe/Berlin" });
    expect(isos(every15)).toEqual(["2025-03-30T01:00:00.000Z"]);
  });

  it("dueSlots - a wall time repeated by the fall-back is due only once", () => {
    // Berlin 2025-10-26: 03:00 → 02:00 local (01:00 UTC); 02:30 happens at 00:30 and 01:30 UTC.
    const slots = dueSlots({ days: "1111111", time: "02:30" }, at("2025-10-25T12:00:00Z"), at("2025-10-26T12:00:00Z"), { timeZone: "Europe/Berlin" });
    expect(isos(slots)).toEqual(["2025-10-26T00:30:00.000Z"]);
    // A later run whose window starts inside the repeated hour does not publish it again.
    const later = dueSlots({ days: "1111111", time: "02:30" }, at("2025-10-26T01:10:00Z"), at("2025-10-26T02:00:00Z"), { timeZone: "Europe/Berlin" });
    expect(later).toEqual([]);
  });

  it("dueSlots - Berlin 2026-03-29 (spring forward 02:00 → 03:00): the 02:30 daily slot runs once, at 03:00 local", () => {
    // Cron convention (Vixie cron): a due time inside the skipped hour runs at the first minute after the jump.
    const slots = dueSlots({ days: "1111111", time: "02:30" }, at("2026-03-28T00:00:00Z"), at("2026-03-30T12:00:00Z"), { timeZone: "Europe/Berlin" });
    expect(isos(slots)).toEqual(["2026-03-28T01:30:00.000Z", "2026-03-29T01:00:00.000Z", "2026-03-30T00:30:00.000Z"]);
    expect(localTime(slots[1]!, "Europe/Berlin")).toMatchObject({ day: 29, hour: 3, minute: 0 });
    // The same with cron, and a slot outside the gap is untouched by it.
    const cron = dueSlots({ cron: "30 2 * * *" }, at("2026-03-29T00:00:00Z"), at("2026-03-29T06:00:00Z"), { timeZone: "Europe/Berlin" });
    expect(isos(cron)).toEqual(["2026-03-29T01:00:00.000Z"]);
    expect(isos(dueSlots({ cron: "30 1,3 * * *" }, at("2026-03-28T23:00:00Z"), at("2026-03-29T06:00:00Z"), { timeZone: "Europe/Berlin" }))).toEqual(["2026-03-29T00:30:00.000Z", "2026-03-29T01:30:00.000Z"]);
  });

  it("dueSlots - Berlin 2026-10-25 (fall back 03:00 → 02:00): the 02:30 daily slot runs once, at the first 02:30 (CEST)", () => {
    const slots = dueSlots({ days: "1111111", time: "02:30" }, at("2026-10-24T12:00:00Z"), at("2026-10-26T12:00:00Z"), { timeZone: "Europe/Berlin" });
    expect(isos(slots)).toEqual(["2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"]);
    // Run minute by minute like the daemon (ten-minute windows): still once.
    const once: string[] = [];
    for (let t = Date.parse("2026-10-24T22:00:00Z"); t < Date.parse("2026-10-25T04:00:00Z"); t += 600_000) {
      once.push(...isos(dueSlots({ days: "1111111", time: "02:30" }, new Date(t), new Date(t + 600_000), { timeZone: "Europe/Berlin" })));
    }
    expect(once).toEqual(["2026-10-25T00:30:00.000Z"]);
  });

  it("dueSlots - America/New_York 2026-03-08 and 2026-11-01: skipped 02:30 runs at 03:00 EDT, repeated 01:30 runs once", () => {
    const spring = dueSlots({ days: "1111111", time: "02:30" }, at("2026-03-08T00:00:00Z"), at("2026-03-08T12:00:00Z"), { timeZone: "America/New_York" });
    expect(isos(spring)).toEqual(["2026-03-08T07:00:00.000Z"]); // 03:00 EDT
    const fall = dueSlots({ days: "1111111", time: "01:30" }, at("2026-11-01T00:00:00Z"), at("2026-11-01T12:00:00Z"), { timeZone: "America/New_York" });
    expect(isos(fall)).toEqual(["2026-11-01T05:30:00.000Z"]); // 01:30 EDT, not again at 01:30 EST (06:30 UTC)
  });

  it("dueSlots - the weekday of a slot is the local one: Monday 00:30 in Berlin is Sunday in UTC", () => {
    const mondays = dueSlots({ days: "1000000", time: "00:30" }, at("2026-10-25T12:00:00Z"), at("2026-10-26T12:00:00Z"), { timeZone: "Europe/Berlin" });
    expect(isos(mondays)).toEqual(["2026-10-25T23:30:00.000Z"]);
    expect(dueSlots({ days: "1000000", time: "00:30" }, at("2026-10-25T12:00:00Z"), at("2026-10-26T12:00:00Z"), { timeZone: "UTC" }).map((d) => d.toISOString())).toEqual(["2026-10-26T00:30:00.000Z"]);
  });

  it("dueSlots - rejects bad masks, times, zones and overlong windows", () => {
    const from = at("2025-06-01T00:00:00Z");
    const to = at("2025-06-02T00:00:00Z");
    expect(() => dueSlots({ days: "11111", time: "02:00" }, from, to)).toThrow(/7 characters/);
    expect(() => dueSlots({ days: "1111111", time: "2:00" }, from, to)).toThrow(/HH:MM/);
    expect(() => dueSlots({ days: "1111111", time: "02:00" }, from, to, { timeZone: "Mars/Olympus" })).toThrow(/unknown time zone/);
    expect(() => dueSlots({ days: "1111111", time: "02:00" }, from, at("2026-06-01T00:00:00Z"))).toThrow(/longer than/);
  });

  it("slotKey - one key per VM and slot, stable across runs", () => {
    const slot = at("2025-06-02T02:30:00.000Z");
    expect(slotKey("web01", slot)).toBe("web01:2025-06-02T02:30:00Z");
    expect(slotKey("web01", new Date(slot.getTime()))).toBe(slotKey("web01", slot));
    expect(slotKey("x".repeat(255), slot).length).toBeLessThanOrEqual(255);
    expect(slotClaimKey("a..b", slot)).toMatch(/^slot\.[A-Za-z0-9_-]+\.20250602T023000Z$/);
  });

  it("isoWeekKey - ISO weeks start on Monday and week 1 holds the first Thursday", () => {
    const k = (iso: string) => isoWeekKey(localTime(at(iso), "UTC"));
    expect(k("2024-12-30T12:00:00Z")).toBe("2025-W01");
    expect(k("2025-01-05T12:00:00Z")).toBe("2025-W01");
    expect(k("2025-01-06T12:00:00Z")).toBe("2025-W02");
    expect(k("2021-01-03T12:00:00Z")).toBe("2020-W53");
  });
});
