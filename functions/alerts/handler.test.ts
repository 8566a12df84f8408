/**
 * The alerts handler with the real limiter over an in-memory KV (the same revision checks as
 * JetStream KV); only the engine edge (postAlert) is faked: it keeps what each engine has, and
 * refuses a duplicate custom_id like the engine does.
 */
import { describe, expect, it } from "vitest";
import { memoryKv } from "../../adapters/nats/testing/memory-kv.ts";
import { customIdFor } from "../../pipeline/run-ids.ts";
import { EngineUntrustedError, alertDescription, createAlerts, summaryCustomId, type AlertPost, type AlertsDeps, type FailureEvent, type RunInfo } from "./handler.ts";
import { createAlertLimiter } from "./limiter.ts";

const MIN = 60_000;
const T0 = Date.parse("2025-01-31T02:03:00Z");

function engineLog() {
  const byEngine = new Map<string, AlertPost[]>();
  let failNext = 0;
  const untrusted = new Set<string>();
  const postAlert = async (engine: string, a: AlertPost): Promise<"posted" | "duplicate"> => {
    if (failNext > 0) {
      failNext--;
      throw new Error("engine unreachable");
    }
    if (untrusted.has(engine)) throw new EngineUntrustedError(engine);
    const list = byEngine.get(engine) ?? [];
    byEngine.set(engine, list);
    if (list.some((x) => x.customId === a.customId)) return "duplicate";
    list.push(a);
    return "posted";
  };
  return { byEngine, postAlert, failOnce: () => (failNext = 1), untrust: (e: string) => untrusted.add(e), on: (e: string) => byEngine.get(e) ?? [] };
}

const quiet = { info() {}, warn() {}, error() {} };

function setup(o: { runs?: Record<string, RunInfo>; engines?: string[]; limit?: number; noFallback?: boolean } = {}) {
  const kv = memoryKv();
  let now = T0 + 5_000;
  const clock = () => now;
  const engine = engineLog();
  const mk = (owner: string) =>
    createAlerts({
      postAlert: engine.postAlert,
      runs: { get: async (id) => o.runs?.[id] },
      limiter: createAlertLimiter(kv, { limit: o.limit ?? 10, windowMs: MIN, clock, owner }),
      defaultEngine: "prd",
      hasEngine: (n) => (o.engines ?? ["prd", "dr"]).includes(n),
      ...(o.noFallback ? {} : { otherEngine: (n: string) => (o.engines ?? ["prd", "dr"]).find((x) => x !== n) }),
      log: quiet,
    } satisfies AlertsDeps);
  return { kv, engine, a: mk("host-a:1"), b: mk("host-b:2"), tick: (ms: number) => (now += ms), at: (t: number) => (now = t) };
}

const failure = (n: number, extra: Partial<FailureEvent> = {}): FailureEvent => ({
  id: `FERRY_COMMANDS:${n}:backup.failed`,
  correlationId: `run-${n}`,
  vm: `web${String(n).padStart(2, "0")}`,
  code: "TRANSFER_TIMEOUT",
  message: "image transfer did not start",
  time: new Date(T0 + 5_000).toISOString(),
  ...extra,
});

describe("alerts handler", () => {
  it("alerts - one failure: one alert on the event's engine, custom_id of the run, VM linked, description as documented", async () => {
    const s = setup();
    expect(await s.a.handle("backup.failed", failure(1, { runId: "run-1", engine: "dr", vmId: "vm-1" }))).toBe("posted");
    expect(s.engine.on("prd")).toEqual([]);
    expect(s.engine.on("dr")).toEqual([
      { description: "Ferry: backup of VM web01 failed (TRANSFER_TIMEOUT): image transfer did not start", severity: "alert", customId: customIdFor("run-1", "failed"), vmId: "vm-1" },
    ]);
  });

  it("alerts - engine and VM id from the run journal when the event has none; else the default engine and no VM link", async () => {
    const s = setup({ runs: { "run-2": { engine: "dr", vm: { id: "vm-2", name: "web02" } } } });
    await s.a.handle("backup.failed", failure(2));
    expect(s.engine.on("dr")).toMatchObject([{ customId: customIdFor("run-2", "failed"), vmId: "vm-2" }]);
    await s.a.handle("restore.failed", failure(3));
    const [prd] = s.engine.on("prd");
    expect(prd).toMatchObject({ customId: customIdFor("run-3", "failed"), description: expect.stringMatching(/^Ferry: restore of VM web03 failed/) });
    expect(prd).not.toHaveProperty("vmId");
  });

  it("alerts - the run key is runId, else correlationId: the same custom_id backup-requested posted, so the engine keeps one", async () => {
    const s = setup();
    // backup-requested's own alert for run-4, already on the engine
    await s.engine.postAlert("prd", { description: "old", severity: "alert", customId: customIdFor("run-4", "failed") });
    expect(await s.a.handle("backup.failed", failure(4))).toBe("duplicate");
    expect(s.engine.on("prd")).toHaveLength(1);
  });

  it("alerts - a redelivery, or a second failure event of the same run, never posts twice nor counts twice", async () => {
    const s = setup({ limit: 2 });
    const ev = failure(5, { runId: "run-5" });
    expect(await s.a.handle("backup.failed", ev)).toBe("posted");
    expect(await s.b.handle("backup.failed", ev)).toBe("done");
    expect(await s.a.handle("backup.failed", { ...ev, id: "other", code: "MAX_DELIVER_EXCEEDED" })).toBe("done");
    // a minute later (the redelivery of a slow retry): still done
    s.tick(MIN);
    expect(await s.b.handle("backup.failed", ev)).toBe("done");
    expect(s.engine.on("prd")).toHaveLength(1);
    // the window counted it once: one more distinct failure still fits the limit of 2 in the first minute
    s.tick(-MIN);
    expect(await s.a.handle("backup.failed", failure(6))).toBe("posted");
  });

  it("alerts - the engine failing: the error reaches the runtime (retry), and the retry posts once", async () => {
    const s = setup();
    s.engine.failOnce();
    await expect(s.a.handle("backup.failed", failure(7))).rejects.toThrow(/unreachable/);
    expect(await s.b.handle("backup.failed", failure(7))).toBe("posted");
    expect(await s.a.handle("backup.failed", failure(7))).toBe("done");
    expect(s.engine.on("prd")).toHaveLength(1);
  });

  it("alerts - redacts secrets and cuts the description at 1000 characters", async () => {
    const s = setup();
    await s.a.handle("backup.failed", failure(8, { message: `GET https://h:54322/images/1f0e2c3a-ticket-9b8a?x=1 password=hunter2 ${"x".repeat(2000)}` }));
    const d = s.engine.on("prd")[0]!.description;
    expect(d.length).toBeLessThanOrEqual(1000);
    expect(d).not.toContain("hunter2");
    expect(d).not.toContain("1f0e2c3a-ticket-9b8a");
  });

  it("alerts - an engine not in the config: the alert goes to the default engine without a VM link", async () => {
    const s = setup();
    await s.a.handle("backup.failed", failure(9, { engine: "qa", vmId: "vm-9", code: "UNKNOWN_ENGINE" }));
    expect(s.engine.on("prd")).toMatchObject([{ description: expect.stringContaining("UNKNOWN_ENGINE") }]);
    expect(s.engine.on("prd")[0]).not.toHaveProperty("vmId");
    const none = setup({ engines: [] });
    expect(await none.a.handle("backup.failed", failure(9))).toBe("no-engine");
  });
});

describe("alerts rate limit", () => {
  it("alerts - a storm of 100 failures in a minute from two processes: 10 alerts, then one summary of the other 90 after the minute", async () => {
    const s = setup();
    // Two processes, four messages in flight each (the function's concurrency).
    const queue = Array.from({ length: 100 }, (_, i) => failure(100 + i, { engine: "prd" }));
    const results: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let ev = queue.shift(); ev; ev = queue.shift()) results.push(await (w % 2 ? s.a : s.b).handle("backup.failed", ev));
      }),
    );
    expect(results.filter((r) => r === "posted")).toHaveLength(10);
    expect(results.filter((r) => r === "held-back")).toHaveLength(90);
    expect(s.engine.on("prd")).toHaveLength(10);
    // Nothing before the minute is over, even with both processes flushing.
    expect(await s.a.flushSummaries()).toBe(0);
    s.at(T0 + MIN + 2_000);
    const flushed = await Promise.all([s.a.flushSummaries(), s.b.flushSummaries()]);
    expect(flushed.reduce((x, y) => x + y, 0)).toBe(1);
    const posted = s.engine.on("prd");
    expect(posted).toHaveLength(11);
    expect(posted[10]).toEqual({
      description:
        "Ferry: 90 more failures in the minute from 2025-01-31T02:03Z were not posted individually (at most 10 alerts per engine per minute); see `ferry events '*.failed' --all`",
      severity: "alert",
      customId: summaryCustomId("prd", T0),
    });
    // Posted once: later flushes find nothing; redeliveries of the storm post nothing.
    expect(await s.b.flushSummaries()).toBe(0);
    expect(await s.a.handle("backup.failed", failure(150, { engine: "prd" }))).toBe("held-back");
    expect(s.engine.on("prd")).toHaveLength(11);
  });

  it("alerts - a storm handled slowly still counts in the minute it happened", async () => {
    const s = setup({ limit: 2 });
    // Three failures of one minute, the last handled a minute later (a loaded machine).
    await s.a.handle("backup.failed", failure(300, { engine: "prd" }));
    await s.a.handle("backup.failed", failure(301, { engine: "prd" }));
    s.tick(MIN);
    expect(await s.b.handle("backup.failed", failure(302, { engine: "prd" }))).toBe("held-back");
    expect(s.engine.on("prd")).toHaveLength(2);
  });

  it("alerts - the limit is per engine, and per minute", async () => {
    const s = setup({ limit: 2 });
    for (let i = 0; i < 3; i++) await s.a.handle("backup.failed", failure(200 + i, { engine: "prd" }));
    for (let i = 0; i < 3; i++) await s.a.handle("backup.failed", failure(210 + i, { engine: "dr" }));
    expect([s.engine.on("prd").length, s.engine.on("dr").length]).toEqual([2, 2]);
    s.tick(MIN);
    // A failure of the next minute counts there: the window is the failure's time, not the handling time.
    await s.b.handle("backup.failed", failure(220, { engine: "prd", time: new Date(T0 + 5_000 + MIN).toISOString() }));
    expect(s.engine.on("prd")).toHaveLength(3);
    await s.a.flushSummaries();
    expect(s.engine.on("prd").map((x) => x.description).filter((d) => d.includes("more failure"))).toEqual([
      expect.stringMatching(/^Ferry: 1 more failure in the minute from 2025-01-31T02:03Z was not posted/),
    ]);
    expect(s.engine.on("dr").filter((x) => x.description.includes("more failure"))).toHaveLength(1);
  });

  it("alerts - a failure arriving after its minute's summary was claimed counts in the next minute, never lost", async () => {
    const s = setup({ limit: 1 });
    await s.a.handle("backup.failed", failure(300));
    await s.a.handle("backup.failed", failure(301)); // held back in minute 0
    s.at(T0 + MIN + 1_500);
    await s.a.flushSummaries(); // claims and posts minute 0's summary (1 more)
    // A process whose clock lags still thinks it is minute 0: the closed minute sends it on.
    s.at(T0 + 59_000);
    expect(await s.b.handle("backup.failed", failure(302))).toBe("posted"); // first of minute 1
    expect(await s.b.handle("backup.failed", failure(303))).toBe("held-back");
    s.at(T0 + 2 * MIN + 1_500);
    await s.b.flushSummaries();
    const summaries = s.engine.on("prd").filter((x) => x.description.includes("more failure"));
    expect(summaries.map((x) => x.customId)).toEqual([summaryCustomId("prd", T0), summaryCustomId("prd", T0 + MIN)]);
  });

  it("alerts - a summary whose poster died is posted by another process after the claim expires, once", async () => {
    const s = setup({ limit: 1 });
    await s.a.handle("backup.failed", failure(400));
    await s.a.handle("backup.failed", failure(401));
    s.at(T0 + MIN + 1_500);
    s.engine.failOnce(); // the claimant cannot reach the engine (or dies before posting)
    expect(await s.a.flushSummaries()).toBe(0);
    expect(await s.b.flushSummaries()).toBe(0); // claimed: not yet
    s.tick(61_000);
    expect(await s.b.flushSummaries()).toBe(1);
    expect(await s.a.flushSummaries()).toBe(0);
    expect(s.engine.on("prd").filter((x) => x.description.includes("more failure"))).toHaveLength(1);
  });
});

describe("alert wording", () => {
  it("alerts - a cert.failed alert names the engine's certificate check, not a VM", async () => {
    const { alertDescription } = await import("./handler.ts");
    const d = alertDescription("cert.failed", { vm: "prd", code: "CA_CHANGED", message: "the engine serves another CA" });
    expect(d).toBe("Ferry: certificate check of engine prd failed (CA_CHANGED): the engine serves another CA");
    expect(alertDescription("backup.failed", { vm: "web01", code: "E", message: "m" })).toBe("Ferry: backup of VM web01 failed (E): m");
  });

  it("alerts - an engine Ferry cannot trust (its CA replaced): the alert goes to the other engine, saying for which, without a VM link; once", async () => {
    const s = setup();
    s.engine.untrust("prd");
    const ev = failure(40, { runId: "run-40", engine: "prd", vmId: "vm-40", code: "ENGINE_TLS", message: "TLS verification of prd failed" });
    expect(await s.a.handle("backup.failed", ev)).toBe("posted");
    expect(s.engine.on("prd")).toEqual([]);
    expect(s.engine.on("dr")).toEqual([
      {
        description: "Ferry (for engine prd, which is not trusted over TLS): backup of VM web40 failed (ENGINE_TLS): TLS verification of prd failed",
        severity: "alert",
        customId: customIdFor("run-40", "failed"),
      },
    ]);
    // A redelivery is the same alert (custom_id), not a second one.
    expect(await s.b.handle("backup.failed", ev)).toBe("done");
    expect(s.engine.on("dr")).toHaveLength(1);
  });

  it("alerts - with no other engine to post to, an untrusted engine's failure is thrown (the runtime logs it), not swallowed", async () => {
    const s = setup({ noFallback: true });
    s.engine.untrust("prd");
    await expect(s.a.handle("backup.failed", failure(41, { engine: "prd" }))).rejects.toMatchObject({ code: "ALERT_ENGINE_UNTRUSTED" });
  });
});
