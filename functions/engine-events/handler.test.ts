import { describe, expect, it } from "vitest";
import { addRestorePoint, emptyChain, type ChainRecord } from "../../domain/chain/mod.ts";
import { chainsKv } from "../../adapters/store/mod.ts";
import { memoryKv } from "../../adapters/nats/testing/memory-kv.ts";
import { createChainGuard } from "../../pipeline/chain-guard.ts";
import { chainViewOf } from "../../pipeline/chain-view.ts";
import type { OvirtEvent } from "../../contracts/mod.ts";
import { emitEvent } from "../runtime/envelope.ts";
import type { HandlerContext, Outbound } from "../runtime/mod.ts";
import { createEngineEventHandler, eventReason } from "./handler.ts";

const sum = { algorithm: "sha256" as const, blockSize: 4194304, value: "a".repeat(64) };
const VM = { id: "5ad2b4f1-9c31-4a4e-8c57-7d1d4c0b9e01", name: "web01" };
function fullPoint(rec: ChainRecord, time: string): ChainRecord {
  const n = rec.nextSeq;
  return addRestorePoint(rec, {
    id: `rp${n}`, time, checkpointId: `cp${n}`,
    disks: [{ diskId: "d1", alias: "d1", virtualSize: 1, layer: `${rec.vm.name}/d1/${time.replace(/[-:]/g, "").slice(0, 15)}Z.cp${n}.full.qcow2`, kind: "full", size: 10, checksum: sum, digestsFile: `${rec.vm.name}/blockhashes/cp${n}.d1` }],
  });
}

function event(over: Partial<OvirtEvent> & { index?: number } = {}): OvirtEvent & { id: string; time: string; correlationId: string } {
  const index = over.index ?? 4711;
  return {
    id: `prd:event:${index}`, time: "2025-01-31T04:00:00Z", correlationId: `prd:event:${index}`,
    engine: "prd", source: "poller", kind: "snapshot-restored", vm: { id: VM.id },
    engineEvent: { index, code: 100, description: "VM web01 restoring from Snapshot has been completed." },
    ...over,
  };
}

function world(now = new Date("2025-01-31T04:00:05Z")) {
  const kv = memoryKv();
  const guard = createChainGuard(kv);
  const chains = chainsKv(memoryKv());
  const published: Outbound[] = [];
  const lines: { level: string; msg: string }[] = [];
  const log = { info: (_o: object, msg: string) => lines.push({ level: "info", msg }), warn: (_o: object, msg: string) => lines.push({ level: "warn", msg }), debug() {}, error() {}, child: () => log };
  const ctx = (ev: { id: string; time: string; correlationId: string }): HandlerContext => ({
    log: log as never,
    signal: new AbortController().signal,
    delivery: { fn: "engine-events", subject: "ovirt.event", stream: "FERRY_EVENTS", seq: 1, deliveryCount: 1, maxDeliver: 10 },
    working() {},
    emit: (contract, body, opts) => emitEvent(ev, contract, body as Record<string, unknown>, { ...opts, now }),
    publish: async (out) => (published.push(out), { stream: "FERRY_EVENTS", seq: published.length, duplicate: false }),
  });
  const handle = createEngineEventHandler({ guard, chains, engineOf: (vm) => (vm === "db01" ? "other" : "prd"), clock: () => now });
  return { guard, chains, published, lines, run: (ev: ReturnType<typeof event>) => handle(ev, ctx(ev)) };
}

describe("engine-events handler", () => {
  it("eventReason - the engine event index, code, engine and the engine's own words", () => {
    expect(eventReason(event())).toBe("engine event 4711 (100) on prd: VM web01 restoring from Snapshot has been completed.");
    expect(eventReason(event({ source: "hook", engineEvent: { description: "after_vm_restore_snapshot" } }))).toBe("hook event on prd: after_vm_restore_snapshot");
  });

  it("chain-breaking event - marks the VM; its chain view makes the next layer a full with the event as reason, until a full is taken", async () => {
    const w = world();
    await w.chains.change(VM, (r) => fullPoint(r, "2025-01-30T02:00:00Z"));
    await w.run(event());
    const mark = await w.guard.mark(VM.id);
    expect(mark).toMatchObject({ vm: VM, kind: "snapshot-restored", engine: "prd", more: 0, events: ["prd:event:4711"] });
    const record = await w.chains.read(VM.id);
    expect(chainViewOf(record, undefined, mark).summary.broken).toBe("engine event 4711 (100) on prd: VM web01 restoring from Snapshot has been completed.");

    // A redelivery changes nothing; a second event is counted under the first reason.
    await w.run(event());
    await w.run(event({ index: 4712, kind: "disk-added", engineEvent: { index: 4712, code: 97, description: "disk added" } }));
    const again = await w.guard.mark(VM.id);
    expect(again).toMatchObject({ more: 1, events: ["prd:event:4711", "prd:event:4712"] });
    expect(chainViewOf(record, undefined, again).summary.broken).toMatch(/4711 .*\(\+1 more engine event\)$/);

    // A full taken after the mark answers it: the view no longer forces a full.
    const afterFull = await w.chains.change(VM, (r) => fullPoint(r, "2025-01-31T05:00:00Z"));
    expect(chainViewOf(afterFull, undefined, again).summary.broken).toBeUndefined();
  });

  it("chain-breaking event - a VM Ferry has no chain of, or one backed up from another engine, is left alone", async () => {
    const w = world();
    await w.run(event({ vm: { id: "00000000-0000-4000-8000-000000000001" } }));
    await w.chains.change({ id: "11111111-0000-4000-8000-000000000001", name: "db01" }, (r) => fullPoint(r, "2025-01-30T02:00:00Z"));
    await w.run(event({ vm: { name: "db01" } }));
    expect(await w.guard.mark("00000000-0000-4000-8000-000000000001")).toBeUndefined();
    expect(await w.guard.mark("11111111-0000-4000-8000-000000000001")).toBeUndefined();
  });

  it("a hook event names the VM only: found by name in the chains", async () => {
    const w = world();
    await w.chains.change(VM, (r) => fullPoint(r, "2025-01-30T02:00:00Z"));
    await w.run(event({ id: "hook:abc", source: "hook", vm: { name: "web01" }, disks: ["d1"], engineEvent: { description: "disk resized by hook" } }));
    expect(await w.guard.mark(VM.id)).toMatchObject({ disks: ["d1"], reason: "hook event on prd: disk resized by hook" });
  });

  it("vm-removed - marked and reported once (one warning, one backup.failed VM_REMOVED without a VM link)", async () => {
    const w = world();
    await w.chains.change(VM, (r) => fullPoint(r, "2025-01-30T02:00:00Z"));
    const removed = event({ index: 5000, kind: "vm-removed", engineEvent: { index: 5000, code: 113, description: "VM web01 was successfully removed." } });
    await w.run(removed);
    await w.run(removed);
    await w.run(event({ id: "hook:x", source: "hook", kind: "vm-removed", vm: { name: "web01" }, engineEvent: { description: "removed" } }));
    expect(w.published).toHaveLength(2); // the redelivery republishes under the same msgID (deduplicated by JetStream)
    expect(new Set(w.published.map((p) => p.msgId ?? p.event.id)).size).toBe(1);
    expect(w.published[0]!.subject).toBe("backup.failed");
    expect(w.published[0]!.event).toMatchObject({ vm: "web01", code: "VM_REMOVED", engine: "prd", step: "ovirt.event" });
    expect(w.published[0]!.event).not.toHaveProperty("vmId");
    expect(await w.guard.removed("web01")).toMatchObject({ engine: "prd", event: "prd:event:5000" });
    expect([...(await w.guard.removedVms()).keys()]).toEqual(["web01"]);
  });
});
