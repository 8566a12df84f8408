import { describe, expect, it } from "vitest";
import type { ChainRecord } from "../../domain/chain/mod.ts";
import { chainsKv } from "../../adapters/store/mod.ts";
import { memoryKv } from "../../adapters/nats/testing/memory-kv.ts";
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { createDiskTransferredHandler, type ManifestWriter } from "./handler.ts";
import type { ChainStore } from "../../pipeline/chain-view.ts";
import { createRunJournal, type BackupRun, type RunJournal } from "../../pipeline/run-journal.ts";

/** The run's journal record as backup-requested leaves it, with two requests coalesced into it. */
async function journalWithCoalesced(): Promise<RunJournal> {
  const runs = createRunJournal(memoryKv());
  const run: BackupRun = {
    runId: "run-1", kind: "backup", engine: "prd", vm: { id: "vm-1", name: "web01" }, owner: "", phase: "transferred", attempt: 1,
    startedAt: "2025-01-31T02:00:00Z", updatedAt: "2025-01-31T02:04:00Z", restorePoint: "rp-20250131T020000Z", mode: "full", transfers: [],
    disks: ["d1", "d2"].map((d) => ({ id: d, state: "placed" as const, layer: `web01/${d}/x.qcow2`, event: event(d) })),
    coalesced: [{ id: "r2", correlationId: "c2", time: "2025-01-31T02:00:01Z" }, { id: "r3", correlationId: "c3", time: "2025-01-31T02:00:02Z" }],
  };
  await runs.change("run-1", () => run);
  return runs;
}

const sum = (c: string) => ({ algorithm: "sha256" as const, blockSize: 4194304, value: c.repeat(64) });
const event = (disk: string, o: Record<string, unknown> = {}) => ({
  id: `b1:${disk}:disk.transferred`, time: "2025-01-31T02:05:00Z", correlationId: "run-1", runId: "run-1", backupId: "b1",
  vm: { id: "vm-1", name: "web01" }, disk: { id: disk, alias: disk, virtualSize: 1048576 }, diskCount: 2,
  restorePoint: "rp-20250131T020000Z", mode: "full" as const, reason: "first backup",
  layer: { path: `web01/${disk}/20250131T020000Z.cp1.full.qcow2`, size: 4096 },
  checksum: sum("a"), checkpointId: "cp1", takenAt: "2025-01-31T02:00:00Z",
  digestsFile: `web01/blockhashes/cp1.${disk}`, transfer: { bytes: 4096, seconds: 0.1 }, ...o,
});

function setup(o: { store?: ManifestWriter; chains?: (real: ChainStore) => ChainStore; runs?: RunJournal } = {}) {
  const manifests: ChainRecord[] = [];
  const released: string[] = [];
  const real = chainsKv(memoryKv());
  const chains = o.chains ? o.chains(real) : real;
  const handle = createDiskTransferredHandler({
    chains,
    store: o.store ?? { async writeManifest(r) { manifests.push(r); return r; } },
    leases: { async releaseRun(vmId, runId) { released.push(`${vmId} ${runId}`); } },
    runs: o.runs,
    clock: () => new Date("2025-01-31T02:06:00Z"),
    log: { error() {} },
  });
  return { chains: real, manifests, released, handle };
}

describe("disk-transferred handler", () => {
  it("disk-transferred - the restore point is recorded and announced only when every disk is in", async () => {
    const { chains, manifests, handle } = setup();
    expect(await handle(event("d1"))).toEqual([]);
    expect((await chains.read("vm-1"))?.restorePoints).toEqual([]);
    const out = await handle(event("d2"));
    expect(out).toHaveLength(1);
    expect(out[0]!.event.id).toBe("vm-1:rp-20250131T020000Z:chain.updated");
    const rp = (out[0]!.event as unknown as { restorePoint: { kind: string; checkpointId: string; disks: unknown[]; time: string } }).restorePoint;
    expect(rp).toMatchObject({ kind: "full", checkpointId: "cp1", time: "2025-01-31T02:00:00Z" });
    expect(rp.disks).toHaveLength(2);
    const rec = await chains.read("vm-1");
    expect(rec?.restorePoints.map((p) => [p.id, p.seq, p.reason])).toEqual([["rp-20250131T020000Z", 1, "first backup"]]);
    expect(rec?.incoming).toBeUndefined();
    expect(manifests).toHaveLength(1);
  });

  it("disk-transferred - an incomplete point of a run that ended is dropped when the next run's disk arrives", async () => {
    const { chains, handle } = setup();
    await handle(event("d1")); // run 1 never delivers d2
    expect((await chains.read("vm-1"))?.incoming?.map((p) => p.id)).toEqual(["rp-20250131T020000Z"]);
    await handle(event("d1", { id: "b2:d1:disk.transferred", backupId: "b2", runId: "run-2", restorePoint: "rp-20250201T020000Z", takenAt: "2025-02-01T02:00:00Z", layer: { path: "web01/d1/20250201T020000Z.cp2.full.qcow2", size: 4096 }, checkpointId: "cp2" }));
    expect((await chains.read("vm-1"))?.incoming?.map((p) => p.id)).toEqual(["rp-20250201T020000Z"]);
  });

  it("disk-transferred - a redelivered disk records nothing twice and re-announces with the same id", async () => {
    const { chains, handle } = setup();
    await handle(event("d1"));
    await handle(event("d1"));
    const first = await handle(event("d2"));
    const again = await handle(event("d2"));
    expect(again.map((o) => o.event.id)).toEqual(first.map((o) => o.event.id));
    expect((await chains.read("vm-1"))?.restorePoints).toHaveLength(1);
  });

  it("disk-transferred - an incremental layer must build on the disk's newest layer", async () => {
    const { handle } = setup();
    await handle(event("d1", { diskCount: 1 }));
    const inc = event("d1", {
      id: "b2:d1:disk.transferred", diskCount: 1, backupId: "b2", restorePoint: "rp-20250201T020000Z", mode: "incremental", reason: undefined,
      checkpointId: "cp2", fromCheckpointId: "cp1", takenAt: "2025-02-01T02:00:00Z",
      layer: { path: "web01/d1/20250201T020000Z.cp2.incremental.qcow2", size: 100, parent: "web01/d1/20250131T020000Z.cp1.full.qcow2" },
    });
    const out = await handle(inc);
    expect((out[0]!.event as unknown as { restorePoint: { kind: string } }).restorePoint.kind).toBe("incremental");
    await expect(handle({ ...inc, restorePoint: "rp-x", layer: { ...inc.layer, path: "web01/d1/20250202T020000Z.cp3.incremental.qcow2", parent: "web01/d1/nope.qcow2" } })).rejects.toThrow(/builds on/);
  });

  it("disk-transferred - a permanent failure ends the run: its VM lease is released and the error rethrown", async () => {
    const { handle, released } = setup({ store: { async writeManifest() { throw new PermanentError("STORE_VM_MISMATCH", "the store folder web01 belongs to another VM"); } } });
    await handle(event("d1"));
    expect(released).toEqual([]);
    await expect(handle(event("d2"))).rejects.toThrow(/belongs to another VM/);
    expect(released).toEqual(["vm-1 run-1"]);
  });

  it("disk-transferred - a transient failure keeps the lease for the retry and releases it only on the last delivery", async () => {
    const { handle, released } = setup({ store: { async writeManifest() { throw new TransientError("STORE_BUSY", "the VM folder is locked"); } } });
    await handle(event("d1"));
    await expect(handle(event("d2"))).rejects.toThrow(/locked/);
    expect(released).toEqual([]);
    await expect(handle(event("d2"), { lastAttempt: true })).rejects.toThrow(/locked/);
    expect(released).toEqual(["vm-1 run-1"]);
  });
  it("disk-transferred - the store is written before KV and a failed store write leaves KV without the point", async () => {
    let fail = true;
    const seenInKv: number[] = [];
    let chainsRef: ChainStore | undefined;
    const { chains, handle } = setup({
      chains: (real) => (chainsRef = real),
      store: {
        async writeManifest(r) {
          seenInKv.push((await chainsRef!.read("vm-1"))?.restorePoints.length ?? 0);
          if (fail) throw new PermanentError("STORE_VM_MISMATCH", "the store folder web01 belongs to another VM");
          return r;
        },
      },
    });
    await handle(event("d1"));
    await expect(handle(event("d2"))).rejects.toThrow(/belongs to another VM/);
    const after = await chains.read("vm-1");
    expect(after?.restorePoints).toEqual([]);
    expect(after?.incoming?.map((p) => p.disks.map((d) => d.diskId))).toEqual([["d1"]]);
    fail = false;
    expect(await handle(event("d2"))).toHaveLength(1);
    expect(seenInKv).toEqual([0, 0]);
    expect((await chains.read("vm-1"))?.restorePoints.map((p) => p.id)).toEqual(["rp-20250131T020000Z"]);
  });

  it("disk-transferred - a KV failure after the store write is healed by the redelivery from the store", async () => {
    const manifest: ChainRecord[] = [];
    let failCommit = true;
    const { chains, handle } = setup({
      store: { async writeManifest(r) { if (!manifest.some((m) => m.restorePoints.length)) manifest.push(r); return manifest.at(-1)!; } },
      chains: (real) => ({
        ...real,
        async change(vm, fn, now) {
          if (failCommit && manifest.length) { failCommit = false; throw new TransientError("KV_DOWN", "the KV bucket is not available"); }
          return real.change(vm, fn, now);
        },
      }),
    });
    await handle(event("d1"));
    await expect(handle(event("d2"))).rejects.toThrow(/KV bucket/);
    expect(manifest.map((m) => m.restorePoints.map((p) => p.id))).toEqual([["rp-20250131T020000Z"]]);
    expect((await chains.read("vm-1"))?.restorePoints).toEqual([]);
    const out = await handle(event("d2"));
    expect(out.map((o) => o.event.id)).toEqual(["vm-1:rp-20250131T020000Z:chain.updated"]);
    expect((await chains.read("vm-1"))?.restorePoints.map((p) => [p.id, p.seq])).toEqual([["rp-20250131T020000Z", 1]]);
    expect(manifest).toHaveLength(1);
  });

  it("disk-transferred - a store that did not record the point fails for good, KV stays without it and follows the store", async () => {
    // The store already holds a point KV never got (its commit was lost for good): it has seq 1.
    const other = { ...event("d1", { diskCount: 1, restorePoint: "rp-20250130T020000Z", checkpointId: "cp0", takenAt: "2025-01-30T02:00:00Z", layer: { path: "web01/d1/20250130T020000Z.cp0.full.qcow2", size: 4096 } }) };
    const ahead = setup();
    await ahead.handle(other);
    const storeRecord = (await ahead.chains.read("vm-1"))!;
    const { chains, handle, released } = setup({ store: { async writeManifest() { return storeRecord; } } });
    await handle(event("d1"));
    await expect(handle(event("d2"))).rejects.toMatchObject({ code: "STORE_POINT_NOT_RECORDED" });
    const after = await chains.read("vm-1");
    expect(after?.restorePoints.map((p) => p.id)).toEqual(["rp-20250130T020000Z"]);
    expect(after?.nextSeq).toBe(2);
    expect(released).toEqual(["vm-1 run-1"]);
  });

  it("disk-transferred - the committed point marks the run recorded and answers the requests coalesced into it (backup.completed, same point, runId of the run)", async () => {
    const runs = await journalWithCoalesced();
    const { handle } = setup({ runs });
    expect(await handle(event("d1"))).toEqual([]);
    const out = await handle(event("d2"));
    expect(out.map((o) => [o.subject, o.event.correlationId, o.event.restorePoint])).toEqual([
      ["chain.updated", "run-1", expect.objectContaining({ id: "rp-20250131T020000Z" })],
      ["backup.completed", "c2", "rp-20250131T020000Z"],
      ["backup.completed", "c3", "rp-20250131T020000Z"],
    ]);
    expect(out[1]!.event).toMatchObject({ id: "r2:backup.completed", runId: "run-1", vm: "web01", kind: "full", bytes: 8192 });
    expect((await runs.get("run-1"))?.recordedAt).toBe("2025-01-31T02:06:00.000Z");
    // A redelivery answers with the same ids (JetStream dedupes them).
    expect((await handle(event("d2"))).map((o) => o.event.id)).toEqual(out.map((o) => o.event.id));
  });

  it("disk-transferred - a run that fails for good here is journaled failed and its coalesced requests get backup.failed with its code", async () => {
    const runs = await journalWithCoalesced();
    const published: { subject: string; event: Record<string, unknown> }[] = [];
    const { handle } = setup({ runs, store: { async writeManifest() { throw new PermanentError("STORE_BROKEN", "store is read-only"); } } });
    await handle(event("d1"));
    await expect(handle(event("d2"), { publish: async (subject, e) => void published.push({ subject, event: e }) })).rejects.toMatchObject({ code: "STORE_BROKEN" });
    expect((await runs.get("run-1"))?.phase).toBe("failed");
    expect(published.map((p) => [p.subject, p.event.correlationId, p.event.code, p.event.runId])).toEqual([
      ["backup.failed", "c2", "STORE_BROKEN", "run-1"],
      ["backup.failed", "c3", "STORE_BROKEN", "run-1"],
    ]);
  });
});
