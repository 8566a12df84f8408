import { describe, expect, it } from "vitest";
import { runSchedule, type BackupRequest, type SlotClaims, type SlotPublisher } from "./mod.ts";

function fakes(o: { duplicateKeys?: string[]; failVm?: string } = {}) {
  const published: { event: BackupRequest; msgId: string }[] = [];
  const claimed = new Map<string, Record<string, unknown>>();
  const publisher: SlotPublisher = {
    async publish(event, msgId) {
      if (event.vm === o.failVm) throw new Error("nats down");
      published.push({ event, msgId });
      return { duplicate: o.duplicateKeys?.includes(msgId) ?? false, seq: published.length };
    },
  };
  const claims: SlotClaims = {
    has: async (k) => claimed.has(k),
    claim: async (k, v) => (claimed.has(k) ? false : (claimed.set(k, v), true)),
  };
  return { published, claimed, publisher, claims };
}

const vms = [
  { name: "web01", engine: "prd", schedule: { days: "1111100", time: "02:00" } },
  { name: "db01", schedule: { cron: "0 */12 * * *" } },
  { name: "off01", enabled: false, schedule: { days: "1111111", time: "02:00" } },
];
const from = new Date("2025-06-01T23:00:00Z"); // Sunday
const to = new Date("2025-06-02T13:00:00Z"); // Monday

describe("schedule runner", () => {
  it("runSchedule - publishes each due slot once with msgID <vm>:<slot>, skips disabled VMs", async () => {
    const f = fakes();
    const r = await runSchedule({ vms, from, to, now: to, timeZone: "UTC", publisher: f.publisher, claims: f.claims });
    expect(r.map((x) => [x.vm, x.slot, x.status])).toEqual([
      ["web01", "2025-06-02T02:00:00Z", "published"],
      ["db01", "2025-06-02T00:00:00Z", "published"],
      ["db01", "2025-06-02T12:00:00Z", "published"],
    ]);
    expect(f.published[0]).toEqual({
      msgId: "web01:2025-06-02T02:00:00Z",
      event: {
        id: "web01:2025-06-02T02:00:00Z",
        correlationId: "web01:2025-06-02T02:00:00Z",
        time: to.toISOString(),
        vm: "web01",
        engine: "prd",
        mode: "auto",
        reason: "scheduled (days 1111100 at 02:00) for 2025-06-02T02:00:00Z",
      },
    });
    expect(f.claimed.size).toBe(3);
    // A second, overlapping run finds every slot claimed and publishes nothing.
    const again = await runSchedule({ vms, from, to, now: to, timeZone: "UTC", publisher: f.publisher, claims: f.claims });
    expect(again.map((x) => x.status)).toEqual(["claimed", "claimed", "claimed"]);
    expect(f.published).toHaveLength(3);
  });

  it("runSchedule - reports JetStream duplicates and failures per slot; a failed slot is not claimed", async () => {
    const f = fakes({ duplicateKeys: ["web01:2025-06-02T02:00:00Z"], failVm: "db01" });
    const r = await runSchedule({ vms, from, to, now: to, timeZone: "UTC", publisher: f.publisher, claims: f.claims });
    expect(r.map((x) => x.status)).toEqual(["duplicate", "failed", "failed"]);
    expect(r[1]!.error).toBe("nats down");
    expect([...f.claimed.keys()]).toHaveLength(1);
  });

  it("runSchedule - without a publisher (dry run) lists what is due and touches nothing", async () => {
    const r = await runSchedule({ vms, from, to, now: to, timeZone: "UTC" });
    expect(r.map((x) => x.status)).toEqual(["due", "due", "due"]);
  });

  it("runSchedule - a bad schedule is a clear error", async () => {
    await expect(runSchedule({ vms: [{ name: "x", schedule: { cron: "61 * * * *" } }], from, to, now: to })).rejects.toThrow(/minute "61"/);
  });
});
