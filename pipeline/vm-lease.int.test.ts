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

  it("vm lease - a held lease refuses another run and is taken over by the same run", async () => {
    const kv = await new Kvm(nc).create(`leases-b-${Date.now()}`, { history: 1 });
    const leases = createLeases(kv, { ttlMs: 300_000 });
    await leases.acquire({ vmId: "vm", runId: "run-a", owner: "w1" });
    await expect(leases.acquire({ vmId: "vm", runId: "run-b", owner: "w2" })).rejects.toMatchObject({ code: "VM_BUSY" });
    const again = await leases.acquire({ vmId: "vm", runId: "run-a", owner: "w3" });
    expect(again.record.owner).toBe("w3");
  });
});
