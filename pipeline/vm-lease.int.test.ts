import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { Kvm } from "@nats-io/kv";
import { startNatsServer } from "../test/harness/nats-server.ts";
import { createLeases } from "./vm-lease.ts";

describe("vm lease", () => {
  let server: Awaited<ReturnType<typeof startNatsServer>>;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("vm lease - a release racing an in-flight renewal still frees the lease", async () => {
    const kv = await new Kvm(nc).create(`leases-${Date.now()}`, { history: 1 });
    const leases = createLeases(kv, { ttlMs: 300_000 });
    for (let i = 0; i < 30; i++) {
      const vmId = `vm-${i}`;
      const lease = await leases.acquire({ vmId, runId: `run-${i}`, owner: "w1" });
      // The heartbeat fires just before the handler ends: renewal and release overlap.
      const renewal = lease.renew();
      await lease.release();
      await renewal;
      expect(await leases.get(vmId)).toBeUndefined();
      // A renewal after the release must not bring the lease back.
      await lease.renew();
      expect(await leases.get(vmId)).toBeUndefined();
      await leases.acquire({ vmId, runId: `run-next-${i}`, owner: "w2" });
    }
  });

  it("vm lease - a held lease refuses another run, and the same run in a second worker, until it is handed off", async () => {
    const kv = await new Kvm(nc).create(`leases-b-${Date.now()}`, { history: 1 });
    const leases = createLeases(kv, { ttlMs: 300_000 });
    const first = await leases.acquire({ vmId: "vm", runId: "run-a", owner: "w1", step: "backup-requested" });
    await expect(leases.acquire({ vmId: "vm", runId: "run-b", owner: "w2" })).rejects.toMatchObject({ code: "VM_BUSY" });
    // The same run delivered to a second worker while the first still works: never twice at once.
    await expect(leases.acquire({ vmId: "vm", runId: "run-a", owner: "w3" })).rejects.toMatchObject({ code: "VM_BUSY" });
    await first.handOff("chain-updated");
    expect(await leases.get("vm")).toMatchObject({ runId: "run-a", owner: "", step: "chain-updated" });
    await expect(leases.acquire({ vmId: "vm", runId: "run-b", owner: "w2" })).rejects.toMatchObject({ code: "VM_BUSY" });
    const next = await leases.acquire({ vmId: "vm", runId: "run-a", owner: "w3", step: "chain-updated" });
    expect(next.record.owner).toBe("w3");
    await next.release();
    expect(await leases.get("vm")).toBeUndefined();
  });

  it("vm lease - a dead holder's lease is taken over once it expires", async () => {
    const kv = await new Kvm(nc).create(`leases-c-${Date.now()}`, { history: 1 });
    let now = Date.parse("2026-01-01T00:00:00Z");
    const leases = createLeases(kv, { ttlMs: 10_000, clock: () => new Date(now) });
    await leases.acquire({ vmId: "vm", runId: "run-a", owner: "w1" });
    await expect(leases.acquire({ vmId: "vm", runId: "run-a", owner: "w2" })).rejects.toMatchObject({ code: "VM_BUSY" });
    now += 10_001;
    const taken = await leases.acquire({ vmId: "vm", runId: "run-a", owner: "w2" });
    expect(taken.record.owner).toBe("w2");
    await leases.releaseRun("vm", "run-other");
    expect(await leases.get("vm")).toMatchObject({ runId: "run-a" });
    await leases.releaseRun("vm", "run-a");
    expect(await leases.get("vm")).toBeUndefined();
  });

  it("vm lease - resume takes back only the run's own lease and never creates one (a redelivery of an ended run locks nothing)", async () => {
    const kv = await new Kvm(nc).create(`leases-d-${Date.now()}`, { history: 1 });
    let now = Date.parse("2026-01-01T00:00:00Z");
    const leases = createLeases(kv, { ttlMs: 10_000, handOffTtlMs: 900_000, clock: () => new Date(now) });
    expect(await leases.resume({ vmId: "vm", runId: "run-a", owner: "w1" })).toBeUndefined();
    expect(await leases.get("vm")).toBeUndefined();
    const a = await leases.acquire({ vmId: "vm", runId: "run-a", owner: "w1" });
    await a.handOff("disk-transferred");
    const back = await leases.resume({ vmId: "vm", runId: "run-a", owner: "w2", step: "backup-requested" });
    expect(back?.record).toMatchObject({ runId: "run-a", owner: "w2" });
    await back!.release();
    expect(await leases.resume({ vmId: "vm", runId: "run-a", owner: "w2" })).toBeUndefined();
    // Another run's live lease: busy; once it expired: not this run's, so nothing is taken.
    await leases.acquire({ vmId: "vm", runId: "run-b", owner: "w3" });
    await expect(leases.resume({ vmId: "vm", runId: "run-a", owner: "w2" })).rejects.toMatchObject({ code: "VM_BUSY" });
    now += 10_001;
    expect(await leases.resume({ vmId: "vm", runId: "run-a", owner: "w2" })).toBeUndefined();
    expect(await leases.get("vm")).toMatchObject({ runId: "run-b" });
  });
});
