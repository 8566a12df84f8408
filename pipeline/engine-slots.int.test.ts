import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { Kvm } from "@nats-io/kv";
import { startNatsServer } from "../test/harness/nats-server.ts";
import { backupScopes, createSlots, type SlotHold } from "./engine-slots.ts";

describe("engine slots", () => {
  let server: Awaited<ReturnType<typeof startNatsServer>>;
  let nc: NatsConnection;
  let nc2: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
    nc2 = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await nc?.close();
    await nc2?.close();
    await server?.stop();
  });

  const bucket = async (name: string) => {
    await new Kvm(nc).create(name, { history: 1 });
    // Two connections: as two processes would see the bucket.
    return [await new Kvm(nc).open(name), await new Kvm(nc2).open(name)] as const;
  };

  it("engine slots - with a limit of 4, four holders at once (from two connections) and the fifth waits until one is released", async () => {
    const [kvA, kvB] = await bucket(`slots-a-${Date.now()}`);
    const a = createSlots(kvA, { ttlMs: 60_000 });
    const b = createSlots(kvB, { ttlMs: 60_000 });
    const scopes = backupScopes({ engine: "prd" }, { backupsPerEngine: 4 });
    const held: SlotHold[] = [];
    for (let i = 0; i < 4; i++) held.push(await (i % 2 ? b : a).acquire({ scopes, runId: `run-${i}`, owner: i % 2 ? "B" : "A", vm: `vm${i}` }));
    expect((await a.holders("engine.prd")).map((h) => h.runId).sort()).toEqual(["run-0", "run-1", "run-2", "run-3"]);

    let waitedFor: string | undefined;
    let fifthAt = 0;
    const fifth = b.acquire({ scopes, runId: "run-4", owner: "B", vm: "vm4", onWait: (f) => (waitedFor = `${f.scope}:${f.holders.length}/${f.limit}`) }).then((h) => ((fifthAt = Date.now()), h));
    // Nothing frees a slot for 1.5 s: the fifth must still be waiting (this pause is what is tested).
    await new Promise((r) => setTimeout(r, 1500));
    expect(fifthAt).toBe(0);
    expect(waitedFor).toBe("engine.prd:4/4");
    const releasedAt = Date.now();
    await held[0]!.release();
    const h5 = await fifth;
    // Woken by the KV watch, not by a 5 s poll.
    expect(fifthAt - releasedAt).toBeLessThan(1000);
    expect(h5.waitedMs).toBeGreaterThanOrEqual(1400);
    expect((await a.holders("engine.prd")).map((h) => h.runId).sort()).toEqual(["run-1", "run-2", "run-3", "run-4"]);
    for (const h of [...held, h5]) await h.release();
    expect(await a.holders("engine.prd")).toEqual([]);
  });

  it("engine slots - many racing acquirers never exceed the limit", async () => {
    const [kvA, kvB] = await bucket(`slots-b-${Date.now()}`);
    const sides = [createSlots(kvA, { ttlMs: 60_000 }), createSlots(kvB, { ttlMs: 60_000 })];
    const scopes = backupScopes({ engine: "prd" }, { backupsPerEngine: 2 });
    let inside = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const h = await sides[i % 2]!.acquire({ scopes, runId: `r${i}`, owner: `p${i % 2}`, vm: `vm${i}` });
        inside++;
        peak = Math.max(peak, inside);
        await new Promise((r) => setTimeout(r, 30));
        inside--;
        await h.release();
      }),
    );
    expect(peak).toBe(2);
  });

  it("engine slots - a dead holder's slot frees itself at its expiry; a live holder's renewal keeps it", async () => {
    const [kv] = await bucket(`slots-c-${Date.now()}`);
    const slots = createSlots(kv, { ttlMs: 800, maxPollMs: 5_000 });
    const scopes = backupScopes({ engine: "prd" }, { backupsPerEngine: 1 });
    const live = await slots.acquire({ scopes, runId: "live", owner: "A", vm: "vm1" });
    const renewing = setInterval(() => void live.renew(), 200);
    let gotIt = false;
    const waiter = slots.acquire({ scopes, runId: "next", owner: "B", vm: "vm2" }).then((h) => ((gotIt = true), h));
    await new Promise((r) => setTimeout(r, 2000)); // 2.5 TTLs: renewals keep the slot
    expect(gotIt).toBe(false);
    // The holder dies (stops renewing, never releases): the waiter gets the slot about a TTL later.
    clearInterval(renewing);
    const diedAt = Date.now();
    const h = await waiter;
    expect(Date.now() - diedAt).toBeLessThan(2500);
    expect((await slots.holders("engine.prd")).map((x) => x.runId)).toEqual(["next"]);
    await h.release();
  });

  it("engine slots - the retry of a run replaces the slot its dead attempt left, instead of waiting for it", async () => {
    const [kv] = await bucket(`slots-d-${Date.now()}`);
    const slots = createSlots(kv, { ttlMs: 60_000 });
    const scopes = backupScopes({ engine: "prd" }, { backupsPerEngine: 1 });
    await slots.acquire({ scopes, runId: "run-a", owner: "dead", vm: "vm1" });
    const retry = await Promise.race([slots.acquire({ scopes, runId: "run-a", owner: "B", vm: "vm1" }), new Promise<undefined>((r) => setTimeout(() => r(undefined), 2000))]);
    expect(retry).toBeDefined();
    expect((await slots.holders("engine.prd")).map((x) => x.owner)).toEqual(["B"]);
    await retry!.release();
  });

  it("engine slots - all scopes or none: a full storage domain holds no engine slot while its backup waits", async () => {
    const [kv] = await bucket(`slots-e-${Date.now()}`);
    const slots = createSlots(kv, { ttlMs: 60_000 });
    const limits = { backupsPerEngine: 4, backupsPerStorageDomain: 1 };
    const first = await slots.acquire({ scopes: backupScopes({ engine: "prd", storageDomainIds: ["sd1"] }, limits), runId: "r1", owner: "A", vm: "vm1" });
    let secondIn = false;
    const second = slots.acquire({ scopes: backupScopes({ engine: "prd", storageDomainIds: ["sd1", "sd2"] }, limits), runId: "r2", owner: "A", vm: "vm2" }).then((h) => ((secondIn = true), h));
    // Another VM on another domain is not held up by the full sd1.
    const third = await slots.acquire({ scopes: backupScopes({ engine: "prd", storageDomainIds: ["sd2"] }, limits), runId: "r3", owner: "A", vm: "vm3" });
    expect(secondIn).toBe(false);
    expect((await slots.holders("engine.prd")).map((h) => h.runId).sort()).toEqual(["r1", "r3"]);
    await third.release();
    await first.release();
    const h2 = await second;
    expect((await slots.holders("sd.prd.sd1")).map((h) => h.runId)).toEqual(["r2"]);
    expect((await slots.holders("sd.prd.sd2")).map((h) => h.runId)).toEqual(["r2"]);
    await h2.release();
  });

  it("engine slots - a waiting request ends when its signal aborts, holding nothing", async () => {
    const [kv] = await bucket(`slots-f-${Date.now()}`);
    const slots = createSlots(kv, { ttlMs: 60_000 });
    const scopes = backupScopes({ engine: "prd" }, { backupsPerEngine: 1 });
    const h = await slots.acquire({ scopes, runId: "r1", owner: "A", vm: "vm1" });
    const ac = new AbortController();
    const waiting = slots.acquire({ scopes, runId: "r2", owner: "A", vm: "vm2", signal: ac.signal });
    setTimeout(() => ac.abort(new Error("shutdown")), 300);
    await expect(waiting).rejects.toThrow("shutdown");
    expect((await slots.holders("engine.prd")).map((x) => x.runId)).toEqual(["r1"]);
    await h.release();
    // A renewal after the release does not bring the holder back.
    await h.renew();
    expect(await slots.holders("engine.prd")).toEqual([]);
  });

  it("engine slots - a limit below 1 is refused before anything is taken", async () => {
    const [kv] = await bucket(`slots-g-${Date.now()}`);
    const slots = createSlots(kv, { ttlMs: 60_000 });
    await expect(slots.acquire({ scopes: [{ key: "engine.prd", limit: 0 }], runId: "r", owner: "A", vm: "v" })).rejects.toThrow(/limit of engine.prd/);
    expect(await slots.holders("engine.prd")).toEqual([]);
  });
});
