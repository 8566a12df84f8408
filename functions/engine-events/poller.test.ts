import { describe, expect, it } from "vitest";
import { memoryKv } from "../../adapters/nats/testing/memory-kv.ts";
import type { Event } from "../../adapters/ovirt/models.ts";
import { ovirtEvent } from "../../contracts/mod.ts";
import { createChainGuard } from "../../pipeline/chain-guard.ts";
import { checkOutbound, type Outbound } from "../runtime/mod.ts";
import { createPoller, pause } from "./poller.ts";

const VM = "5ad2b4f1-9c31-4a4e-8c57-7d1d4c0b9e01";
const ev = (index: number, code: number, o: Partial<Event> = {}): Event => ({ id: String(index), index, code, severity: "normal", time: new Date(1_700_000_000_000 + index), description: `event ${index}`, vm: { id: VM }, ...o }) as Event;

function world(engineEvents: Event[]) {
  const guard = createChainGuard(memoryKv());
  const stored = new Map<string, Outbound>();
  const published: Outbound[] = [];
  let failAt: number | undefined;
  const lists: { from?: number; max?: number }[] = [];
  const poller = () =>
    createPoller({
      engine: "prd",
      // newest first, like the engine
      listEvents: async (o) => (lists.push({ from: o.from, max: o.max }), [...engineEvents].filter((e) => o.from === undefined || e.index! > o.from).reverse().slice(0, o.max ?? Infinity)),
      guard,
      vmName: async (id) => (id === VM ? "web01" : undefined),
      publish: async (out) => {
        if (failAt !== undefined && (out.event as unknown as { engineEvent: { index: number } }).engineEvent.index === failAt) throw new Error("bus down");
        checkOutbound(out);
        published.push(out);
        const key = out.msgId ?? out.event.id;
        const duplicate = stored.has(key);
        stored.set(key, out);
        return { stream: "FERRY_EVENTS", seq: stored.size, duplicate };
      },
      ownCorrelationId: "ferry-prd",
      clock: () => new Date("2025-01-31T04:00:00Z"),
      log: { info() {}, warn() {}, debug() {} } as never,
    });
  return { guard, stored, published, lists, poller, failAt: (i: number | undefined) => (failAt = i) };
}

describe("engine-events poller", () => {
  it("first start - begins at the engine's newest event and replays no history", async () => {
    const w = world([ev(1, 100), ev(2, 371)]);
    expect(await w.poller().pollOnce()).toMatchObject({ index: 2, started: true, published: 0 });
    expect(w.lists[0]).toEqual({ from: undefined, max: 1 });
    expect(w.published).toEqual([]);
    expect((await w.guard.position("prd"))?.value.index).toBe(2);
  });

  it("publishes the kinds Ferry acts on, oldest first, with msgID <engine>:event:<index>; skips others and Ferry's own", async () => {
    const events = [ev(1, 100)];
    const w = world(events);
    await w.poller().pollOnce();
    events.push(ev(2, 1032), ev(3, 100), ev(4, 10797, { correlation_id: "ferry-prd" }), ev(5, 2014, { vm: undefined }), ev(6, 113, { vm: { id: "6ad2b4f1-9c31-4a4e-8c57-7d1d4c0b9e02" } }));
    const r = await w.poller().pollOnce();
    expect(r).toMatchObject({ index: 6, seen: 5, published: 2 });
    expect(w.lists.at(-1)).toEqual({ from: 1, max: undefined });
    expect(w.published.map((p) => p.event.id)).toEqual(["prd:event:3", "prd:event:6"]);
    expect(w.published[0]!.subject).toBe(ovirtEvent.subject);
    expect(w.published[0]!.event).toMatchObject({ engine: "prd", source: "poller", kind: "snapshot-restored", vm: { id: VM, name: "web01" }, engineEvent: { index: 3, code: 100, id: "3", description: "event 3" } });
    expect(w.published[1]!.event).toMatchObject({ kind: "vm-removed", vm: { id: "6ad2b4f1-9c31-4a4e-8c57-7d1d4c0b9e02" } });
    expect((await w.guard.position("prd"))?.value.index).toBe(6);
  });

  it("a failed publish leaves the index where it was; the next poll publishes the rest, each event stored once", async () => {
    const events = [ev(1, 100)];
    const w = world(events);
    await w.poller().pollOnce();
    events.push(ev(2, 100), ev(3, 95), ev(4, 371));
    w.failAt(3);
    await expect(w.poller().pollOnce()).rejects.toThrow("bus down");
    expect((await w.guard.position("prd"))?.value.index).toBe(1);
    w.failAt(undefined);
    await w.poller().pollOnce();
    expect((await w.guard.position("prd"))?.value.index).toBe(4);
    expect([...w.stored.keys()]).toEqual(["prd:event:2", "prd:event:3", "prd:event:4"]);
    expect(w.published.map((p) => p.event.id)).toEqual(["prd:event:2", "prd:event:2", "prd:event:3", "prd:event:4"]);
  });

  it("an engine event that does not fit the contract is skipped (logged), not retried forever", async () => {
    const events = [ev(1, 100)];
    const w = world(events);
    await w.poller().pollOnce();
    events.push(ev(2, 100, { vm: { id: "x".repeat(300) } }), ev(3, 100));
    expect(await w.poller().pollOnce()).toMatchObject({ index: 3, published: 1 });
    expect([...w.stored.keys()]).toEqual(["prd:event:3"]);
  });

  it("an engine whose audit log went back behind the position is followed from its newest event (checked every 10th idle poll)", async () => {
    const events = [ev(1, 100), ev(2, 100), ev(3, 100)];
    const w = world(events);
    const poller = w.poller();
    await poller.pollOnce();
    events.splice(0, events.length, ev(1, 1032));
    for (let i = 0; i < 9; i++) expect((await poller.pollOnce()).index).toBe(3);
    expect((await poller.pollOnce()).index).toBe(1);
    events.push(ev(2, 100));
    expect(await poller.pollOnce()).toMatchObject({ index: 2, published: 1 });
  });

  it("two pollers of one engine: the index moves by compare-and-set; facts are deduplicated by msgID", async () => {
    const events = [ev(1, 100)];
    const w = world(events);
    await w.poller().pollOnce();
    events.push(ev(2, 100));
    const [a, b] = await Promise.all([w.poller().pollOnce(), w.poller().pollOnce()]);
    expect(a.index).toBe(2);
    expect(b.index).toBe(2);
    expect([...w.stored.keys()]).toEqual(["prd:event:2"]);
  });
});

describe("engine-events poller run", () => {
  it("run - polls on its interval until the signal, without an onPoll callback too", async () => {
    const events = [ev(1, 100)];
    const w = world(events);
    const ac = new AbortController();
    const running = w.poller().run({ intervalMs: 100, signal: ac.signal });
    const until = Date.now() + 10_000;
    while (!(await w.guard.position("prd")) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    events.push(ev(2, 100));
    while (w.stored.size === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    await running;
    expect([...w.stored.keys()]).toEqual(["prd:event:2"]);
  });
});

describe("engine-event poller - stopping", () => {
  it("poller - a poll that finishes after the signal fired ends the loop at once (no interval's timer keeps the process alive)", async () => {
    const stop = new AbortController();
    let release!: () => void;
    const answered = new Promise<void>((r) => (release = r));
    const guard = createChainGuard(memoryKv());
    await guard.advance("prd", 5, undefined, new Date());
    const poller = createPoller({
      engine: "prd",
      // An engine call that does not honour the signal: it answers after the stop.
      listEvents: async () => (await answered, []),
      guard,
      vmName: async () => undefined,
      publish: async () => ({ stream: "FERRY_EVENTS", seq: 1, duplicate: false }),
      ownCorrelationId: "ferry-prd",
      clock: () => new Date(),
      log: { info() {}, warn() {}, debug() {} } as never,
    });
    const run = poller.run({ intervalMs: 60_000, signal: stop.signal });
    await new Promise((r) => setTimeout(r, 20));
    stop.abort();
    release();
    const t0 = performance.now();
    const ended = await Promise.race([run.then(() => "ended"), new Promise((r) => setTimeout(() => r("still waiting"), 2_000))]);
    expect(ended).toBe("ended");
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  it("pause - returns at once on a signal that already fired, and at the abort otherwise", async () => {
    const fired = AbortSignal.abort();
    const t0 = performance.now();
    await pause(60_000, fired);
    expect(performance.now() - t0).toBeLessThan(100);
    const later = new AbortController();
    const p = pause(60_000, later.signal);
    setTimeout(() => later.abort(), 10);
    await p;
    expect(performance.now() - t0).toBeLessThan(1_000);
  });
});
