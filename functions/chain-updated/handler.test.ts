import { describe, expect, it } from "vitest";
import { emptyChain, addRestorePoint, type ChainRecord } from "../../domain/chain/mod.ts";
import { chainsKv } from "../../adapters/store/mod.ts";
import { memoryKv } from "../../adapters/nats/testing/memory-kv.ts";
import { checkpointsToRelease, createChainUpdatedHandler, type ChainUpdatedEngine } from "./handler.ts";

const sum = { algorithm: "sha256" as const, blockSize: 4194304, value: "a".repeat(64) };
function point(rec: ChainRecord, n: number, parent?: string): ChainRecord {
  const layer = `web01/d1/2025013${n}T020000Z.cp${n}.${parent ? "incremental" : "full"}.qcow2`;
  return addRestorePoint(rec, {
    id: `rp${n}`, time: `2025-01-3${n}T02:00:00Z`, checkpointId: `cp${n}`,
    disks: [{ diskId: "d1", alias: "d1", virtualSize: 1, layer, ...(parent ? { parentLayer: parent } : {}), kind: parent ? "incremental" : "full", size: 10, checksum: sum, digestsFile: `web01/blockhashes/cp${n}.d1` }],
  });
}

describe("chain-updated handler", () => {
  it("chain-updated - only checkpoints of older points Ferry recorded are released, never the newest", () => {
    let rec = point(emptyChain({ id: "vm-1", name: "web01" }), 0);
    rec = point(rec, 1, "web01/d1/20250130T020000Z.cp0.full.qcow2");
    rec = point(rec, 2, "web01/d1/20250131T020000Z.cp1.incremental.qcow2");
    expect(checkpointsToRelease(rec)).toEqual(["cp0", "cp1"]);
    rec = { ...rec, restorePoints: rec.restorePoints.map((p) => (p.id === "rp0" ? { ...p, checkpointReleased: true } : p)) };
    expect(checkpointsToRelease(rec)).toEqual(["cp1"]);
  });

  it("chain-updated - applies retention, releases old checkpoints, posts a normal audit event and emits backup.completed", async () => {
    const chains = chainsKv(memoryKv());
    await chains.change({ id: "vm-1", name: "web01" }, (r) => point(point(r, 0), 1, "web01/d1/20250130T020000Z.cp0.full.qcow2"));
    const calls: string[] = [];
    const engine: ChainUpdatedEngine = {
      async removeCheckpoint(_vm, cp) { calls.push(`remove ${cp}`); },
      async postEvent(e) { calls.push(`event ${e.severity} ${e.description}`); },
    };
    const handle = createChainUpdatedHandler({
      chains, engineFor: async () => engine, policy: () => ({ keepLast: 5 }), replicates: () => false, clock: () => new Date("2025-01-31T02:10:00Z"),
      retention: { async apply() { calls.push("retention"); return { removed: ["rp-old"] }; } },
      pointInStore: async () => true,
      log: { info() {}, warn() {}, error() {} },
    });
    const out = await handle({
      id: "x", time: "2025-01-31T02:05:00Z", correlationId: "run-1", runId: "run-1", vm: { id: "vm-1", name: "web01" },
      restorePoint: { id: "rp1", checkpointId: "cp1", time: "2025-01-31T02:00:00Z", kind: "incremental", disks: [{ id: "d1", layer: { path: "web01/d1/20250131T020000Z.cp1.incremental.qcow2", size: 10 }, checksum: sum }] },
    });
    expect(calls[0]).toBe("retention");
    expect(calls[1]).toBe("remove cp0");
    expect(calls[2]).toMatch(/^event normal Ferry: backup of VM web01 completed: restore point 2 \(incremental\)/);
    expect(out[0]!.event).toMatchObject({ id: "vm-1:rp1:backup.completed", vm: "web01", restorePoint: "rp1", kind: "incremental", bytes: 10, seconds: 600, retention: { removed: ["rp-old"] } });
    expect((await chains.read("vm-1"))?.restorePoints.find((p) => p.id === "rp0")?.checkpointReleased).toBe(true);
  });

  it("chain-updated - a VM that replicates to DR gets a restore.requested (mode replicate) for the new point, valid by its contract", async () => {
    const chains = chainsKv(memoryKv());
    await chains.change({ id: "vm-1", name: "web01" }, (r) => point(r, 0));
    const handle = createChainUpdatedHandler({
      chains, policy: () => ({ keepLast: 5 }), replicates: (vm) => vm === "web01", clock: () => new Date("2025-01-31T02:10:00Z"),
      engineFor: async () => ({ async removeCheckpoint() {}, async postEvent() {} }),
      retention: { async apply() { return { removed: [] }; } },
      pointInStore: async () => true,
      log: { info() {}, warn() {}, error() {} },
    });
    const out = await handle({ id: "x", time: "2025-01-31T02:05:00Z", correlationId: "run-1", runId: "run-1", vm: { id: "vm-1", name: "web01" }, restorePoint: { id: "rp0", time: "2025-01-31T02:00:00Z", kind: "full", disks: [{ id: "d1", layer: { path: "web01/d1/x.full.qcow2", size: 1 }, checksum: sum }] } });
    expect(out.map((o) => o.subject)).toEqual(["restore.requested", "backup.completed"]);
    expect(out[0]!.event).toMatchObject({ vm: "web01", restorePoint: "rp0", target: "dr", mode: "replicate", correlationId: "run-1" });
    const { restoreRequested } = await import("../../contracts/restore-requested.ts");
    expect(restoreRequested.validateOutbound(out[0]!.event).ok).toBe(true);
  });

  it("chain-updated - a permanent failure rethrows and posts nothing itself (functions/alerts alerts from backup.failed)", async () => {
    const calls: string[] = [];
    const handle = createChainUpdatedHandler({
      chains: chainsKv(memoryKv()), policy: () => ({ keepLast: 5 }), replicates: () => false, clock: () => new Date(),
      engineFor: async () => ({ async removeCheckpoint() {}, async postEvent(e) { calls.push(e.severity); } }),
      retention: { async apply() { const { PermanentError } = await import("../../contracts/errors.ts"); throw new PermanentError("STORE_BROKEN", "layer missing"); } },
      pointInStore: async () => true,
      log: { info() {}, warn() {}, error() {} },
    });
    await expect(handle({ id: "x", time: "2025-01-31T02:05:00Z", correlationId: "c", vm: { id: "vm-1", name: "web01" }, restorePoint: { id: "rp1", time: "2025-01-31T02:00:00Z", kind: "full", disks: [{ id: "d1", layer: { path: "a/b", size: 1 }, checksum: sum }] } })).rejects.toThrow(/layer missing/);
    expect(calls).toEqual([]);
  });

  it("chain-updated - a point the store does not hold (a forged event) is refused: no retention, no audit event, no backup.completed", async () => {
    const calls: string[] = [];
    const handle = createChainUpdatedHandler({
      chains: chainsKv(memoryKv()), policy: () => ({ keepLast: 5 }), replicates: () => false, clock: () => new Date(),
      engineFor: async () => ({ async removeCheckpoint() { calls.push("remove"); }, async postEvent(e) { calls.push(e.severity); } }),
      retention: { async apply() { calls.push("retention"); return { removed: [] }; } },
      pointInStore: async (_vm, point) => { calls.push(`check ${point.id} ${point.disks.join(",")}`); return false; },
      log: { info() {}, warn() {}, error() {} },
    });
    await expect(
      handle({ id: "x", time: "2025-01-31T02:05:00Z", correlationId: "c", runId: "r", vm: { id: "vm-1", name: "web01" }, restorePoint: { id: "rp-forged", time: "2025-01-31T02:00:00Z", kind: "full", disks: [{ id: "d1", layer: { path: "web01/d1/x.full.qcow2", size: 123456789 }, checksum: sum }] } }),
    ).rejects.toMatchObject({ code: "CHAIN_POINT_UNKNOWN" });
    expect(calls).toEqual(["check rp-forged d1"]);
  });
});
