import { describe, expect, it } from "vitest";
import {
  addRestorePoint,
  baseName,
  digestsPath,
  emptyChain,
  layerPath,
  ovfPath,
  type ChainRecord,
  type ChainRecordBody,
  type DiskLayer,
  type RetentionStep,
} from "../chain/mod.ts";
import { planRetention, selectKept, type RetentionPolicy } from "./mod.ts";

const DAY = 86_400_000;
const VM = { id: "vm-1", name: "web01" };
const HEX = "0".repeat(64);

// --- A model of qcow2 files: a layer is a map cluster → value plus a backing file name ----------

interface FakeFile {
  backing?: string;
  data: Map<number, string>;
}
type FakeFs = Map<string, FakeFile>;

function view(fs: FakeFs, path: string): Map<number, string> {
  const chain: FakeFile[] = [];
  const dir = path.slice(0, path.lastIndexOf("/") + 1);
  for (let f = fs.get(path); f; f = f.backing ? fs.get(dir + f.backing) : undefined) {
    chain.push(f);
    if (f.backing && !fs.has(dir + f.backing)) throw new Error(`${path}: backing ${f.backing} missing`);
    if (chain.length > 1000) throw new Error("loop");
  }
  if (!chain.length) throw new Error(`${path} missing`);
  const out = new Map<number, string>();
  for (const f of chain.reverse()) for (const [k, v] of f.data) out.set(k, v);
  return out;
}

/** The executor's semantics for each step (adapters/store/retention-executor.ts), on the model. */
function applyStep(fs: FakeFs, s: RetentionStep): void {
  switch (s.op) {
    case "commit": {
      const base = fs.get(s.base);
      if (!base) return;
      const dir = s.top.slice(0, s.top.lastIndexOf("/") + 1);
      const above: FakeFile[] = [];
      for (let f = fs.get(s.top)!; f !== base; f = fs.get(dir + f.backing!)!) above.push(f);
      const topView = view(fs, s.top);
      for (const f of above) for (const k of f.data.keys()) base.data.set(k, topView.get(k)!);
      return;
    }
    case "replace": {
      const f = fs.get(s.from);
      if (!f) return;
      fs.set(s.to, f);
      fs.delete(s.from);
      return;
    }
    case "link":
      if (!fs.has(s.to)) fs.set(s.to, fs.get(s.from)!);
      return;
    case "rebase": {
      const f = fs.get(s.layer);
      if (f) f.backing = baseName(s.backing);
      return;
    }
  }
}

// --- Nightly backups of a VM whose disks change a little every day -------------------------------

interface World {
  record: ChainRecord;
  fs: FakeFs;
  /** point id → disk id → expected guest content */
  truth: Map<string, Map<string, Map<number, string>>>;
  guest: Map<string, Map<number, string>>;
  last: Map<string, Map<number, string>>;
}

function newWorld(): World {
  return { record: emptyChain(VM, new Date(0)), fs: new Map(), truth: new Map(), guest: new Map(), last: new Map() };
}

function nightly(w: World, day: number, o: { full: boolean; disks: string[]; time?: Date; rand: () => number }): string {
  const time = o.time ?? new Date(Date.UTC(2025, 0, 1, 2, 0) + day * DAY);
  const id = `rp${day}`;
  const key = `c${day}`;
  const disks: DiskLayer[] = [];
  const truth = new Map<string, Map<number, string>>();
  for (const d of o.disks) {
    const g = w.guest.get(d) ?? new Map<number, string>();
    w.guest.set(d, g);
    const before = new Map(g);
    for (let i = 0; i < 3; i++) g.set(Math.floor(o.rand() * 16), `${d}@${day}#${i}`);
    const prev = [...w.record.restorePoints].reverse().flatMap((p) => p.disks.filter((x) => x.diskId === d))[0];
    const incremental = !o.full && prev !== undefined;
    const kind = incremental ? "incremental" : "full";
    const path = layerPath(VM.name, d, time.toISOString(), key, kind);
    const data = new Map<number, string>();
    for (const [k, v] of g) if (!incremental || before.get(k) !== v) data.set(k, v);
    w.fs.set(path, { ...(incremental ? { backing: baseName(prev!.layer) } : {}), data });
    const digests = digestsPath(VM.name, key, d);
    w.fs.set(digests, { data: new Map() });
    disks.push({
      diskId: d, alias: d, virtualSize: 16 << 16, layer: path, kind, size: data.size, checksum: { algorithm: "sha256", blockSize: 4 << 20, value: HEX },
      digestsFile: digests, ...(incremental ? { parentLayer: prev!.layer } : {}),
    });
    truth.set(d, new Map(g));
  }
  w.fs.set(ovfPath(VM.name, key), { data: new Map() });
  const parent = disks.some((d) => d.kind === "incremental") ? w.record.restorePoints.at(-1)?.id : undefined;
  w.record = addRestorePoint(w.record, { id, time: time.toISOString(), checkpointId: key, ...(parent ? { parentId: parent } : {}), ovfFile: ovfPath(VM.name, key), disks });
  w.truth.set(id, truth);
  return id;
}

/** Every kept point reads its own content through the file backing chain, and the manifest agrees with the files. */
function assertRestorable(w: World, record: ChainRecordBody): void {
  for (const p of record.restorePoints) {
    for (const d of p.disks) {
      expect(view(w.fs, d.layer), `${p.id}/${d.diskId}`).toEqual(w.truth.get(p.id)!.get(d.diskId));
      expect(w.fs.get(d.layer)!.backing, `${d.layer} backing`).toBe(d.parentLayer ? baseName(d.parentLayer) : undefined);
    }
  }
}

function retain(w: World, policy: RetentionPolicy, now: Date, crashAfter?: number): ReturnType<typeof planRetention> {
  const plan = planRetention(w.record, policy, { now });
  const kept = new Set(plan.target.restorePoints.map((p) => p.id));
  if (crashAfter !== undefined) {
    // Crash after a prefix of the steps: every kept point must still read correctly, then replay all.
    plan.steps.slice(0, crashAfter).forEach((s) => applyStep(w.fs, s));
    for (const p of w.record.restorePoints.filter((x) => kept.has(x.id))) {
      for (const d of p.disks) {
        const path = w.fs.has(d.layer) ? d.layer : plan.target.restorePoints.find((x) => x.id === p.id)!.disks.find((x) => x.diskId === d.diskId)!.layer;
        expect(view(w.fs, path), `mid-plan ${p.id}/${d.diskId}`).toEqual(w.truth.get(p.id)!.get(d.diskId));
      }
    }
  }
  plan.steps.forEach((s) => applyStep(w.fs, s));
  plan.steps.forEach((s) => applyStep(w.fs, s)); // replay is harmless
  for (const f of plan.cleanup) w.fs.delete(f);
  w.record = { ...plan.target };
  assertRestorable(w, w.record);
  const referenced = new Set(w.record.restorePoints.flatMap((p) => [...p.disks.flatMap((d) => [d.layer, d.digestsFile]), ...(p.ovfFile ? [p.ovfFile] : [])]));
  expect([...w.fs.keys()].filter((f) => !referenced.has(f)), "files left behind").toEqual([]);
  return plan;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// --- Independent reference for the keep rules -----------------------------------------------------

/** Straight from the rule text, by walking calendar days/weeks backwards from the newest point (UTC). */
function expectedKept(times: Date[], policy: RetentionPolicy, now: Date): Set<number> {
  const keep = new Set<number>();
  const idx = times.map((t, i) => ({ t, i })).sort((a, b) => b.t.getTime() - a.t.getTime());
  if (policy.keepLast) idx.slice(0, policy.keepLast).forEach((x) => keep.add(x.i));
  if (policy.keepDays !== undefined) idx.filter((x) => x.t.getTime() >= now.getTime() - policy.keepDays! * DAY).forEach((x) => keep.add(x.i));
  const byPeriod = (n: number | undefined, period: (t: Date) => string) => {
    if (!n) return;
    const periods: string[] = [];
    for (const x of idx) if (!periods.includes(period(x.t))) periods.push(period(x.t));
    for (const p of periods.slice(0, n)) keep.add(idx.find((x) => period(x.t) === p)!.i);
  };
  byPeriod(policy.keepDaily, (t) => t.toISOString().slice(0, 10));
  byPeriod(policy.keepWeekly, (t) => {
    const monday = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate() - ((t.getUTCDay() + 6) % 7)));
    return monday.toISOString().slice(0, 10);
  });
  byPeriod(policy.keepMonthly, (t) => t.toISOString().slice(0, 7));
  if (![policy.keepLast, policy.keepDays, policy.keepDaily, policy.keepWeekly, policy.keepMonthly].some((v) => v !== undefined)) idx.forEach((x) => keep.add(x.i));
  if (policy.maxAgeDays !== undefined) for (const x of idx) if (x.t.getTime() < now.getTime() - policy.maxAgeDays * DAY) keep.delete(x.i);
  keep.add(idx[0]!.i);
  return keep;
}

describe("retention", () => {
  it("selectKept - keep_daily 7 + keep_weekly 4 over 60 days matches the rule definition", () => {
    const times = Array.from({ length: 60 }, (_, i) => new Date(Date.UTC(2025, 0, 1, 2, 0) + i * DAY));
    const now = new Date(times.at(-1)!.getTime() + 3_600_000);
    const policy = { keepDaily: 7, keepWeekly: 4 };
    const d = selectKept(times.map((t, i) => ({ id: `p${i}`, time: t.toISOString() })), policy, now);
    const expected = [...expectedKept(times, policy, now)].sort((a, b) => a - b).map((i) => `p${i}`);
    expect([...d.keep.keys()].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))).toEqual(expected);
    // Mar 1 2025 is a Saturday: 7 daily (Feb 23..Mar 1) + the Sundays Feb 16 and Feb 9 (the newest
    // points of ISO weeks 09 and 08 are already daily ones).
    expect(expected).toHaveLength(9);
    expect(expected.slice(0, 2)).toEqual(["p46", "p39"].sort());
    expect(d.keep.get("p59")).toContain("daily 2025-03-01");
  });

  it("selectKept - several points per day: only the newest of the day counts as the daily one", () => {
    const times = ["2025-01-01T01:00:00Z", "2025-01-01T13:00:00Z", "2025-01-02T01:00:00Z", "2025-01-02T13:00:00Z"].map((t) => new Date(t));
    const d = selectKept(times.map((t, i) => ({ id: `p${i}`, time: t.toISOString() })), { keepDaily: 2 }, new Date("2025-01-03T00:00:00Z"));
    expect([...d.keep.keys()].sort()).toEqual(["p1", "p3"]);
    expect(d.remove.get("p0")).toBe("not kept by any rule");
  });

  it("selectKept - keep_last, keep_days, monthly, max_age, and the newest point is always kept", () => {
    const times = Array.from({ length: 100 }, (_, i) => new Date(Date.UTC(2025, 0, 1, 2, 0) + i * DAY));
    const points = times.map((t, i) => ({ id: `p${i}`, time: t.toISOString() }));
    const now = new Date(times.at(-1)!.getTime() + 3_600_000);
    for (const policy of [{ keepLast: 5 }, { keepDays: 10 }, { keepMonthly: 3, keepLast: 2 }, { keepDaily: 30, maxAgeDays: 14 }, { maxAgeDays: 20 }, {}, { keepLast: 0 }]) {
      const got = [...selectKept(points, policy, now).keep.keys()].sort();
      const want = [...expectedKept(times, policy, now)].map((i) => `p${i}`).sort();
      expect(got, JSON.stringify(policy)).toEqual(want);
    }
    // Only the newest survives an aggressive max age, even with nothing recent.
    const late = new Date(times.at(-1)!.getTime() + 365 * DAY);
    expect([...selectKept(points, { keepLast: 10, maxAgeDays: 1 }, late).keep.keys()]).toEqual(["p99"]);
  });

  it("selectKept - calendar days follow the configured time zone", () => {
    // 23:30 UTC on Jan 1 is already Jan 2 in Berlin.
    const points = [{ id: "a", time: "2025-01-01T20:00:00Z" }, { id: "b", time: "2025-01-01T23:30:00Z" }];
    const now = new Date("2025-01-02T12:00:00Z");
    expect([...selectKept(points, { keepDaily: 2 }, now, "UTC").keep.keys()].sort()).toEqual(["b"]);
    expect([...selectKept(points, { keepDaily: 2 }, now, "Europe/Berlin").keep.keys()].sort()).toEqual(["a", "b"]);
  });

  it("selectKept - local days, weeks and months around midnight and both DST changes (Europe/Berlin 2026)", () => {
    const kept = (times: string[], policy: RetentionPolicy, now: string, zone: string) =>
      Object.fromEntries(selectKept(times.map((t, i) => ({ id: `p${i}`, time: t })), policy, new Date(now), zone).keep);
    // Spring forward, Sun 2026-03-29 has 23 hours. Berlin wall times:
    // p0 Sat 23:30 CET, p1 Sun 00:30 CET, p2 Sun 03:00 CEST (the 02:30 slot), p3 Sun 23:59 CEST, p4 Mon 00:01 CEST.
    const spring = ["2026-03-28T22:30:00Z", "2026-03-28T23:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T21:59:00Z", "2026-03-29T22:01:00Z"];
    expect(kept(spring, { keepDaily: 3 }, "2026-03-30T06:00:00Z", "Europe/Berlin")).toEqual({ p4: ["daily 2026-03-30"], p3: ["daily 2026-03-29"], p0: ["daily 2026-03-28"] });
    // Read in UTC the same points fall on other days (p4 is still Mar 29 there).
    expect(kept(spring, { keepDaily: 3 }, "2026-03-30T06:00:00Z", "UTC")).toEqual({ p4: ["daily 2026-03-29"], p1: ["daily 2026-03-28"] });

    // Fall back, Sun 2026-10-25 has 25 hours and 02:30 twice:
    // p0 Sat 23:59 CEST, p1 Sun 00:01 CEST, p2 Sun 02:30 CEST, p3 Sun 02:30 CET, p4 Sun 23:59 CET, p5 Mon 00:01 CET.
    const fall = ["2026-10-24T21:59:00Z", "2026-10-24T22:01:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T22:59:00Z", "2026-10-25T23:01:00Z"];
    expect(kept(fall, { keepDaily: 3 }, "2026-10-26T06:00:00Z", "Europe/Berlin")).toEqual({ p5: ["daily 2026-10-26"], p4: ["daily 2026-10-25"], p0: ["daily 2026-10-24"] });
    expect(kept(fall, { keepDaily: 3 }, "2026-10-26T06:00:00Z", "UTC")).toEqual({ p5: ["daily 2026-10-25"], p1: ["daily 2026-10-24"] });
    // ISO weeks start on the local Monday: p5 (Mon 00:01 in Berlin) opens week 44, p4 closes week 43.
    expect(kept(fall, { keepWeekly: 2 }, "2026-10-26T06:00:00Z", "Europe/Berlin")).toEqual({ p5: ["weekly 2026-W44"], p4: ["weekly 2026-W43"] });
    expect(kept(fall, { keepWeekly: 2 }, "2026-10-26T06:00:00Z", "UTC")).toEqual({ p5: ["weekly 2026-W43"] });

    // Months: Sat 2026-10-31 23:30 CET is still October, 00:30 CET is November in Berlin (both October in UTC).
    const monthEnd = ["2026-10-31T22:30:00Z", "2026-10-31T23:30:00Z"];
    expect(kept(monthEnd, { keepMonthly: 2 }, "2026-11-01T06:00:00Z", "Europe/Berlin")).toEqual({ p1: ["monthly 2026-11"], p0: ["monthly 2026-10"] });
    expect(kept(monthEnd, { keepMonthly: 2 }, "2026-11-01T06:00:00Z", "UTC")).toEqual({ p1: ["monthly 2026-10"] });
    // New York: 2026-11-01 00:30 EDT (04:30 UTC) and 23:30 EST (2026-11-02 04:30 UTC) are one local day, two UTC days.
    const ny = ["2026-11-01T04:30:00Z", "2026-11-02T04:30:00Z"];
    expect(kept(ny, { keepDaily: 2 }, "2026-11-02T12:00:00Z", "America/New_York")).toEqual({ p1: ["daily 2026-11-01"] });
    expect(kept(ny, { keepDaily: 2 }, "2026-11-02T12:00:00Z", "UTC")).toEqual({ p1: ["daily 2026-11-02"], p0: ["daily 2026-11-01"] });
  });

  it("planRetention - merges an unkept base forward and keeps every kept point restorable", () => {
    const w = newWorld();
    const rand = rng(1);
    for (let day = 0; day < 5; day++) nightly(w, day, { full: day === 0, disks: ["d1"], rand });
    const plan = retain(w, { keepLast: 2 }, new Date(Date.UTC(2025, 0, 6)));
    expect(plan.remove.map((r) => r.id)).toEqual(["rp0", "rp1", "rp2"]);
    expect(plan.merges).toEqual([
      expect.objectContaining({ into: "rp3", from: ["rp0", "rp1", "rp2"], result: "web01/d1/20250104T020000Z.c3.full.qcow2" }),
    ]);
    expect(plan.steps.map((s) => s.op)).toEqual(["commit", "link", "rebase"]);
    const p3 = w.record.restorePoints[0]!;
    expect(p3.kind).toBe("full");
    expect(p3.parentId).toBeUndefined();
    expect(p3.disks[0]!.mergedFrom).toEqual(["rp0", "rp1", "rp2"]);
    expect(w.record.restorePoints[1]!.parentId).toBe("rp3");
    expect(plan.checkpointsToRemove).toEqual(["c0", "c1", "c2", "c3"]);
  });

  it("planRetention - a middle incremental is rolled into its kept child by rename (same name, crash-safe)", () => {
    const w = newWorld();
    const rand = rng(3);
    // Days 0..3; times chosen so keepDaily keeps rp0's day and the last two days, rp1 is an older point of rp2's day.
    nightly(w, 0, { full: true, disks: ["d1"], rand, time: new Date("2025-01-01T02:00:00Z") });
    nightly(w, 1, { full: false, disks: ["d1"], rand, time: new Date("2025-01-02T02:00:00Z") });
    nightly(w, 2, { full: false, disks: ["d1"], rand, time: new Date("2025-01-02T14:00:00Z") });
    nightly(w, 3, { full: false, disks: ["d1"], rand, time: new Date("2025-01-03T02:00:00Z") });
    const plan = planRetention(w.record, { keepDaily: 3 }, { now: new Date("2025-01-04T00:00:00Z") });
    expect(plan.remove.map((r) => r.id)).toEqual(["rp1"]);
    expect(plan.steps).toEqual([
      { op: "commit", diskId: "d1", top: "web01/d1/20250102T140000Z.c2.incremental.qcow2", base: "web01/d1/20250102T020000Z.c1.incremental.qcow2" },
      { op: "replace", from: "web01/d1/20250102T020000Z.c1.incremental.qcow2", to: "web01/d1/20250102T140000Z.c2.incremental.qcow2" },
    ]);
    for (let crash = 0; crash <= plan.steps.length; crash++) {
      const copy = newWorld();
      const r = rng(3);
      nightly(copy, 0, { full: true, disks: ["d1"], rand: r, time: new Date("2025-01-01T02:00:00Z") });
      nightly(copy, 1, { full: false, disks: ["d1"], rand: r, time: new Date("2025-01-02T02:00:00Z") });
      nightly(copy, 2, { full: false, disks: ["d1"], rand: r, time: new Date("2025-01-02T14:00:00Z") });
      nightly(copy, 3, { full: false, disks: ["d1"], rand: r, time: new Date("2025-01-03T02:00:00Z") });
      retain(copy, { keepDaily: 3 }, new Date("2025-01-04T00:00:00Z"), crash);
      expect(copy.record.restorePoints.map((p) => [p.id, p.parentId])).toEqual([["rp0", undefined], ["rp2", "rp0"], ["rp3", "rp2"]]);
    }
  });

  it("planRetention - a rebased child that a later merge renames replays cleanly after a crash at any step", () => {
    const times = ["2025-01-01T02:00:00Z", "2025-01-02T02:00:00Z", "2025-01-03T02:00:00Z", "2025-01-03T14:00:00Z"];
    const build = () => {
      const w = newWorld();
      const r = rng(9);
      times.forEach((t, day) => nightly(w, day, { full: day === 0, disks: ["d1"], rand: r, time: new Date(t) }));
      return w;
    };
    const plan = planRetention(build().record, { keepDaily: 2 }, { now: new Date("2025-01-04T00:00:00Z") });
    expect(plan.steps.map((s) => s.op)).toEqual(["commit", "link", "rebase", "commit", "replace"]);
    // The rebased layer (rp2's) is renamed over rp3's by the last step: a replay must not trip on it.
    expect(plan.steps[2]).toMatchObject({ op: "rebase", layer: plan.steps[4]!.op === "replace" ? (plan.steps[4] as { from: string }).from : "" });
    for (let crash = 0; crash <= plan.steps.length; crash++) {
      const w = build();
      retain(w, { keepDaily: 2 }, new Date("2025-01-04T00:00:00Z"), crash);
      expect(w.record.restorePoints.map((p) => p.id)).toEqual(["rp1", "rp3"]);
    }
  });

  it("planRetention - per-disk chains: a disk added later keeps its own full base", () => {
    const w = newWorld();
    const rand = rng(4);
    for (let day = 0; day < 8; day++) nightly(w, day, { full: day === 0, disks: day >= 3 ? ["d1", "d2"] : ["d1"], rand });
    const plan = retain(w, { keepLast: 2 }, new Date(Date.UTC(2025, 0, 9)));
    expect(plan.merges.map((m) => [m.diskId, m.into, m.from])).toEqual([
      ["d1", "rp6", ["rp0", "rp1", "rp2", "rp3", "rp4", "rp5"]],
      ["d2", "rp6", ["rp3", "rp4", "rp5"]],
    ]);
    expect(w.record.restorePoints[0]!.kind).toBe("full");
  });

  it("planRetention - nothing to remove yields no steps and the same points", () => {
    const w = newWorld();
    const rand = rng(5);
    for (let day = 0; day < 3; day++) nightly(w, day, { full: day === 0, disks: ["d1"], rand });
    const plan = planRetention(w.record, { keepLast: 5 }, { now: new Date(Date.UTC(2025, 0, 4)) });
    expect(plan.steps).toEqual([]);
    expect(plan.cleanup).toEqual([]);
    expect(plan.target.restorePoints).toEqual(w.record.restorePoints);
  });

  it("planRetention - refuses to plan over an unfinished retention run", () => {
    const w = newWorld();
    nightly(w, 0, { full: true, disks: ["d1"], rand: rng(6) });
    const pending = { id: "r1", createdAt: "2025-01-01T00:00:00Z", phase: "cleanup" as const, removing: [], steps: [], cleanup: [], target: w.record };
    expect(() => planRetention({ ...w.record, pending }, { keepLast: 1 }, { now: new Date() })).toThrow(/unfinished retention run/);
  });

  it("planRetention - random policies over 40 nightly runs never break a kept point, also when interrupted", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const rand = rng(seed);
      const w = newWorld();
      const fullEvery = 3 + Math.floor(rand() * 8);
      const pick = (n: number) => (rand() < 0.5 ? undefined : 1 + Math.floor(rand() * n));
      const policy: RetentionPolicy = { keepLast: pick(5), keepDaily: pick(8), keepWeekly: pick(4), keepDays: rand() < 0.3 ? 3 : undefined };
      if (rand() < 0.3) policy.maxAgeDays = 5 + Math.floor(rand() * 20);
      const addDiskOn = Math.floor(rand() * 40);
      for (let day = 0; day < 40; day++) {
        nightly(w, day, { full: day % fullEvery === 0, disks: day >= addDiskOn ? ["d1", "d2"] : ["d1"], rand });
        const now = new Date(Date.UTC(2025, 0, 1, 3, 0) + day * DAY);
        const crash = rand() < 0.3 ? Math.floor(rand() * 6) : undefined;
        retain(w, policy, now, crash);
      }
      // Each rule is monotone (a point dropped once would be dropped by every later run), so
      // nightly application ends exactly where the rule's definition over all 40 points does.
      const now = new Date(Date.UTC(2025, 0, 1, 3, 0) + 39 * DAY);
      const all = Array.from({ length: 40 }, (_, i) => new Date(Date.UTC(2025, 0, 1, 2, 0) + i * DAY));
      const want = [...expectedKept(all, policy, now)].sort((a, b) => a - b).map((i) => `rp${i}`);
      expect(w.record.restorePoints.map((p) => p.id), `seed ${seed} ${JSON.stringify(policy)}`).toEqual(want);
    }
  });
});

