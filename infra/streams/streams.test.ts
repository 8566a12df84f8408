import { describe, expect, it } from "vitest";
import { allContracts, subjects } from "../../contracts/mod.ts";
import { bucketDefinitions, buckets, coreOnlySubjects, durableConsumer, streamFor, streams, subjectMatches } from "./mod.ts";

describe("infra/streams", () => {
  it("subjectMatches - follows NATS wildcard rules", () => {
    expect(subjectMatches("backup.requested", "backup.requested")).toBe(true);
    expect(subjectMatches("backup.*", "backup.requested")).toBe(true);
    expect(subjectMatches("backup.*", "backup.requested.rejected")).toBe(false);
    expect(subjectMatches("backup.>", "backup.requested.rejected")).toBe(true);
    expect(subjectMatches("backup.>", "backup")).toBe(false);
    expect(subjectMatches("*.requested", "restore.requested")).toBe(true);
  });

  it("streams - every contract subject is stored in exactly one stream, except the core-only ones", () => {
    for (const s of Object.values(subjects)) {
      const owners = Object.values(streams).filter((st) => st.subjects.some((p) => subjectMatches(p, s)));
      if ((coreOnlySubjects as readonly string[]).includes(s)) expect(owners).toHaveLength(0);
      else expect(owners.map((o) => o.name)).toHaveLength(1);
    }
    expect(streamFor("backup.requested")?.name).toBe("FERRY_COMMANDS");
    expect(streamFor("backup.completed")?.name).toBe("FERRY_EVENTS");
    expect(streamFor("backup.requested.rejected")?.name).toBe("FERRY_EVENTS");
    expect(streamFor("transfer.progress")).toBeUndefined();
    expect(allContracts.length).toBe(Object.keys(subjects).length + 1);
  });

  it("streams - no stream subject can overlap a KV bucket's $KV.<bucket>.> subjects", () => {
    for (const st of Object.values(streams)) for (const p of st.subjects) expect(p.startsWith("$") || p.includes(">") || p.startsWith("*")).toBe(false);
  });

  it("streams - de-duplication windows are at least 2 minutes", () => {
    for (const st of Object.values(streams)) expect(st.duplicateWindowMs).toBeGreaterThanOrEqual(120_000);
  });

  it("buckets - every bucket is declared once with bounded history", () => {
    expect(bucketDefinitions.map((b) => b.name).sort()).toEqual(Object.values(buckets).sort());
    expect(new Set(bucketDefinitions.map((b) => b.name)).size).toBe(bucketDefinitions.length);
    for (const b of bucketDefinitions) expect(b.history).toBeGreaterThanOrEqual(1);
  });

  it("buckets - ferry-schedule keeps one claim per slot for 8 days", () => {
    const schedule = bucketDefinitions.find((b) => b.name === "ferry-schedule");
    expect(schedule).toMatchObject({ history: 1, ttlMs: 8 * 24 * 3600 * 1000 });
  });

  it("durableConsumer - sets ack_wait, max_deliver and a backoff floored at ack_wait, no longer than max_deliver", () => {
    const c = durableConsumer({ name: "backup-requested", subject: "backup.requested", ackWaitMs: 60_000, maxDeliver: 3, backoffMs: [5_000, 120_000, 300_000, 600_000] });
    expect(c).toMatchObject({ stream: "FERRY_COMMANDS", durableName: "backup-requested", filterSubject: "backup.requested", ackWaitMs: 60_000, maxDeliver: 3 });
    expect(c.backoffMs).toEqual([60_000, 120_000, 300_000]);
  });

  it("durableConsumer - refuses a subject no stream stores", () => {
    expect(() => durableConsumer({ name: "x", subject: "transfer.progress", ackWaitMs: 1000, maxDeliver: 1, backoffMs: [1] })).toThrow(/not stored/);
  });
});
