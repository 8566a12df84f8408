import { describe, expect, it } from "vitest";
import { TransientError } from "../../contracts/errors.ts";
import { engineFaultError } from "../../adapters/ovirt/mod.ts";
import { createBackupRequestedHandler, type BackupRequestedDeps, type DeliveryContext } from "./handler.ts";
import { createSlots } from "../../pipeline/engine-slots.ts";
import type { BackupEngine, BackupStore, ChainView, Transfers } from "../../pipeline/ports.ts";
import type { EngineDisk } from "../../domain/backup/decide.ts";
import { createRunJournal } from "../../pipeline/run-journal.ts";
import { createLeases } from "../../pipeline/vm-lease.ts";
import { memoryKv } from "../../adapters/nats/testing/memory-kv.ts";
import { NbdError } from "../../adapters/nbd/mod.ts";
import { markRecorded } from "../../pipeline/coalesce.ts";

const disks: EngineDisk[] = [
  { id: "d1", alias: "vm_Disk1", format: "cow", qcowVersion: "qcow2_v3", backup: "incremental", contentType: "data", storageType: "image", shareable: false, provisionedSize: 1 << 20 },
  { id: "d2", alias: "vm_Disk2", format: "raw", contentType: "data", storageType: "image", shareable: false, provisionedSize: 1 << 20 },
  { id: "s", alias: "scratch", format: "cow", contentType: "backup_scratch", provisionedSize: 1 << 20 },
];

/** A fake engine recording every call in order (the far edge). */
function fakeEngine(o: { failStart?: (from?: string) => unknown; failTransferFor?: string } = {}) {
  const calls: string[] = [];
  const open = new Set<string>();
  let n = 0;
  const engine: BackupEngine = {
    name: "prd",
    async findVm(v) {
      if (v === "web02" || v === "vm-2") return { id: "vm-2", name: "web02", status: "up" };
      return v === "web01" || v === "vm-1" ? { id: "vm-1", name: "web01", status: "up" } : undefined;
    },
    async vmOvf() {
      return "<ovf/>";
    },
    async vmDisks() {
      return disks;
    },
    async checkpoints() {
      return [{ id: "cp-old", state: "invalid", description: "ferry: web01" }];
    },
    async removeCheckpoint(_vm, cp) {
      calls.push(`removeCheckpoint ${cp}`);
    },
    async startBackup(_vm, spec) {
      calls.push(`startBackup ${spec.fromCheckpointId ?? "full"}`);
      const err = o.failStart?.(spec.fromCheckpointId);
      if (err) throw err;
      open.add(spec.id);
      return { id: spec.id, phase: "ready", toCheckpointId: "cp-new" };
    },
    async getBackup(_vm, id) {
      return open.has(id) ? { id, phase: "ready" } : undefined;
    },
    async listBackups() {
      return [];
    },
    async backupDisks() {
      return [{ id: "d1", backupMode: "full" }, { id: "d2", backupMode: "full" }];
    },
    async finalizeBackup(_vm, id) {
      calls.push("finalizeBackup");
      open.delete(id);
    },
    async createDownload(spec) {
      const id = `t${++n}`;
      calls.push(`createDownload ${spec.diskId}`);
      open.add(id);
      return { id, transferUrl: `https://imageio/images/${id}` };
    },
    async finishTransfer(id) {
      calls.push(`finishTransfer ${id}`);
      open.delete(id);
    },
    async createSnapshot() {
      throw new Error("not used");
    },
    async removeSnapshot() {},
    async postEvent(e) {
      calls.push(`event ${e.severity}`);
    },
  };
  return { engine, calls, open };
}

function deps(engine: BackupEngine, transfers: Transfers, extra: Partial<BackupRequestedDeps> = {}) {
  const runsKv = memoryKv();
  const removed: string[] = [];
  const store: BackupStore = {
    root: "/store",
    async layerTarget(t) {
      const rel = `${t.vmName}/${t.diskId}/${t.key}.${t.mode}.qcow2`;
      return { relPath: rel, finalPath: `/store/${rel}` };
    },
    async removeUnrecorded(p) {
      removed.push(p);
    },
    async fileSize() {
      return 4096;
    },
    async saveOvf(vm, key) {
      return `${vm}/ovf/${key}.ovf`;
    },
    async saveDigests(vm, key, disk) {
      return `${vm}/blockhashes/${key}.${disk}`;
    },
    async readDigests() {
      return undefined;
    },
    absolute: (r) => `/store/${r}`,
  };
  const empty: ChainView = { summary: { incrementalsSinceFull: 0, ownCheckpoints: [] }, diskLayers: new Map() };
  const runs = createRunJournal(runsKv);
  const leases = createLeases(memoryKv(), { ttlMs: 60_000 });
  return {
    removed,
    runs,
    leases,
    handler: createBackupRequestedHandler({
      engines: (n) => (n === "prd" ? engine : undefined),
      chains: { view: async () => empty },
      runs,
      leases,
      transfers,
      store,
      clock: () => new Date("2025-01-31T02:00:00Z"),
      log: { info() {}, warn() {}, error() {} },
      policy: () => ({}),
      owner: "test",
      deployment: "t3st",
      heartbeatMs: 60_000,
      ...extra,
    }),
  };
}

const okTransfers: Transfers = {
  async download() {
    return { bytes: 10, seconds: 0.1, virtualSize: 1 << 20, digests: Buffer.alloc(32), checksum: "ab" };
  },
  async sourceChecksum() {
    return "ab";
  },
};

function ctx(): DeliveryContext & { published: { subject: string; event: Record<string, unknown> }[] } {
  const published: { subject: string; event: Record<string, unknown> }[] = [];
  return { published, async publish(subject, event) { published.push({ subject, event }); } };
}

const req = { id: "FERRY_COMMANDS:7", time: "2025-01-31T02:00:00Z", correlationId: "c", vm: "web01", mode: "auto" as const, engine: "prd" };

describe("backup-requested handler", () => {
  it("backup-requested - full backup: data disks only, one disk.transferred each, transfers then backup finalized", async () => {
    const { engine, calls, open } = fakeEngine();
    const { handler } = deps(engine, okTransfers);
    const c = ctx();
    await handler(req, c);
    expect(calls).toEqual([
      "event warning", // the raw disk: full copies only, said once
      "removeCheckpoint cp-old",
      "startBackup full",
      "createDownload d1",
      "finishTransfer t1",
      "createDownload d2",
      "finishTransfer t2",
      "finalizeBackup",
    ]);
    expect(open.size).toBe(0);
    expect(c.published.map((p) => [p.subject, p.event.id])).toEqual([
      ["disk.transferred", expect.stringMatching(/:d1:disk\.transferred$/)],
      ["disk.transferred", expect.stringMatching(/:d2:disk\.transferred$/)],
    ]);
    expect(c.published[1]!.event.reason).toMatch(/raw/);
    expect(c.published[0]!.event.diskCount).toBe(2);
  });

  it("backup-requested - a failing download is retried with new transfers, then every transfer and the backup are finalized and the partial layer removed", async () => {
    const { engine, calls, open } = fakeEngine();
    const failing: Transfers = { ...okTransfers, async download() { throw new TransientError("NET", "connection dropped"); } };
    const { handler, removed, runs } = deps(engine, failing);
    await expect(handler(req, ctx())).rejects.toThrow(/connection dropped/);
    // Three transfers tried (each closed), then the backup finalized.
    expect(calls.filter((c) => c.startsWith("createDownload"))).toEqual(["createDownload d1", "createDownload d1", "createDownload d1"]);
    expect(calls.slice(-2)).toEqual(["finishTransfer t3", "finalizeBackup"]);
    expect(open.size).toBe(0);
    expect(removed).toContain("/store/web01/d1/cp-new.full.qcow2");
    const run = await runs.get(req.id);
    expect(run?.transfers.map((t) => t.state)).toEqual(["closed", "closed", "closed"]);
    expect(run?.backupClosed).toBe(true);
  });

  it("backup-requested - a checksum mismatch fails the disk and is retryable", async () => {
    const { engine } = fakeEngine();
    const { handler } = deps(engine, { ...okTransfers, async sourceChecksum() { return "cd"; } });
    await expect(handler(req, ctx())).rejects.toMatchObject({ code: "CHECKSUM_MISMATCH" });
  });

  it("backup-requested - the engine's refusal becomes a permanent failure with its reason; the run ends failed and posts no alert itself", async () => {
    const fault = { status: 409, reason: "Operation Failed", detail: "[Cannot backup VM. VM is in preview]", method: "POST", path: "/vms/vm-1/backups" };
    const { engine, calls } = fakeEngine({ failStart: () => engineFaultError(fault) });
    const { handler, runs } = deps(engine, okTransfers);
    await expect(handler(req, ctx())).rejects.toMatchObject({ code: "VM_NOT_BACKUPABLE", message: expect.stringMatching(/preview/) });
    expect(calls.filter((c) => c.startsWith("event alert"))).toHaveLength(0);
    expect((await runs.get(req.id))?.phase).toBe("failed");
  });

  it("backup-requested - a VM locked by another operation stays retryable (typed VmLockedError, not a refusal)", async () => {
    const fault = { status: 409, reason: "Operation Failed", detail: "[Cannot backup VM. The VM is during a backup operation.]", method: "POST", path: "/vms/vm-1/backups" };
    const { engine } = fakeEngine({ failStart: () => engineFaultError(fault) });
    const { handler } = deps(engine, okTransfers);
    await expect(handler(req, ctx())).rejects.toMatchObject({ code: "ENGINE_VM_LOCKED" });
  });

  it("backup-requested - an unknown VM is a permanent error and nothing is created", async () => {
    const { engine, calls } = fakeEngine();
    const { handler } = deps(engine, okTransfers);
    await expect(handler({ ...req, vm: "nope" }, ctx())).rejects.toMatchObject({ code: "VM_NOT_FOUND" });
    expect(calls).toEqual([]);
  });

  it("backup-requested - a redelivery after success re-publishes the same events and creates nothing", async () => {
    const { engine, calls } = fakeEngine();
    const { handler } = deps(engine, okTransfers);
    const first = ctx();
    await handler(req, first);
    const n = calls.length;
    const second = ctx();
    await handler(req, second);
    expect(calls.length).toBe(n);
    expect(second.published.map((p) => p.event.id)).toEqual(first.published.map((p) => p.event.id));
  });

  it("backup-requested - a redelivery after the run recorded its point is acknowledged as a duplicate: no lease is taken or handed off", async () => {
    const { engine, calls } = fakeEngine();
    const { handler, runs, leases } = deps(engine, okTransfers);
    await handler(req, ctx());
    expect((await leases.get("vm-1"))?.owner).toBe(""); // handed off to disk-transferred
    // disk-transferred records the point, chain-updated releases the lease.
    await markRecorded(runs, req.id, new Date("2025-01-31T02:05:00Z"));
    await leases.releaseRun("vm-1", req.id);
    const n = calls.length;
    const again = ctx();
    await handler(req, again);
    expect(await leases.get("vm-1")).toBeUndefined();
    expect(again.published).toEqual([]);
    expect(calls.length).toBe(n);
  });

  it("backup-requested - a redelivery of a transferred run whose lease is gone (the run ended) takes no new lease", async () => {
    const { engine } = fakeEngine();
    const { handler, leases } = deps(engine, okTransfers);
    await handler(req, ctx());
    await leases.releaseRun("vm-1", req.id);
    const again = ctx();
    await handler(req, again);
    expect(await leases.get("vm-1")).toBeUndefined();
  });

  it("backup-requested - a transient failure after the first disk is stored keeps the engine backup ready; the retry moves only the missing disk", async () => {
    const { engine, calls, open } = fakeEngine();
    let failD2 = true;
    const transfers: Transfers = {
      ...okTransfers,
      async download(o) {
        if (failD2 && o.output.includes("/d2/")) throw new TransientError("NET", "connection dropped");
        return okTransfers.download(o);
      },
    };
    const { handler, runs, leases } = deps(engine, transfers);
    await expect(handler(req, ctx())).rejects.toThrow(/connection dropped/);
    const run = await runs.get(req.id);
    expect(calls).not.toContain("finalizeBackup");
    expect(open.has(run!.backupId!)).toBe(true);
    expect(run!.disks.map((d) => [d.id, d.state])).toEqual([["d1", "placed"], ["d2", "downloading"]]);
    expect(await leases.get("vm-1")).toMatchObject({ runId: req.id, owner: "", step: "backup-requested" });

    failD2 = false;
    const n = calls.length;
    const retry = ctx();
    await handler(req, retry);
    // The same engine backup (its id, journaled) is resumed: the POST with that id only finds it again.
    expect(calls.slice(n).filter((c) => c.startsWith("createDownload"))).toEqual(["createDownload d2"]);
    expect((await runs.get(req.id))?.attempt).toBe(1);
    expect(calls.at(-1)).toBe("finalizeBackup");
    expect(open.size).toBe(0);
    expect(new Set(retry.published.map((p) => p.event.backupId))).toEqual(new Set([run!.backupId]));
  });

  it("backup-requested - every disk stored and the backup finalized, but the journal write of 'transferred' failed: the retry moves nothing", async () => {
    const { engine, calls } = fakeEngine();
    const d = deps(engine, okTransfers);
    let blip = true;
    const change = d.runs.change.bind(d.runs);
    d.runs.change = async (id, fn) =>
      change(id, (cur) => {
        const next = fn(cur);
        if (blip && next?.phase === "transferred") {
          blip = false;
          throw new TransientError("KV_UNAVAILABLE", "nats blip");
        }
        return next;
      });
    await expect(d.handler(req, ctx())).rejects.toThrow(/nats blip/);
    expect(calls.filter((c) => c === "finalizeBackup")).toHaveLength(1);
    const n = calls.length;
    const retry = ctx();
    await d.handler(req, retry);
    expect(calls.slice(n).filter((c) => c.startsWith("createDownload") || c.startsWith("startBackup"))).toEqual([]);
    expect(retry.published.map((p) => p.subject)).toEqual(["disk.transferred", "disk.transferred"]);
  });

  it("backup-requested - a request for a VM whose run is in flight joins that run: nothing on the engine, listed on the run, answered when its point is recorded", async () => {
    const { engine, calls } = fakeEngine();
    const { handler, runs } = deps(engine, okTransfers);
    await handler(req, ctx()); // run 1: disks out, lease handed off to disk-transferred
    const n = calls.length;
    const second = { ...req, id: "FERRY_COMMANDS:8", correlationId: "c2" };
    const c2 = ctx();
    await handler(second, c2);
    expect(calls.length).toBe(n);
    expect(c2.published).toEqual([]);
    expect((await runs.get(req.id))?.coalesced?.map((c) => c.id)).toEqual([second.id]);
    expect(await runs.get(second.id)).toBeUndefined();
    const recorded = await markRecorded(runs, req.id, new Date("2025-01-31T02:05:00Z"));
    expect(recorded?.coalesced?.map((c) => c.correlationId)).toEqual(["c2"]);
    // After the point is recorded, a late request while the run still holds the VM is answered at once.
    const third = { ...req, id: "FERRY_COMMANDS:9", correlationId: "c3" };
    const c3 = ctx();
    await handler(third, c3);
    expect(c3.published.map((p) => [p.subject, p.event.correlationId, p.event.runId])).toEqual([["backup.completed", "c3", req.id]]);
  });

  it("backup-requested - a full request does not join an incremental-or-undecided run", async () => {
    const { engine } = fakeEngine();
    const { handler, runs } = deps(engine, okTransfers);
    await handler({ ...req, mode: "auto" }, ctx());
    await runs.change(req.id, (cur) => cur && { ...cur, mode: "incremental" });
    await expect(handler({ ...req, id: "FERRY_COMMANDS:8", mode: "full" }, ctx())).rejects.toMatchObject({ code: "VM_BUSY" });
  });

  it("backup-requested - a store without space is one final STORE_FULL naming the store; the run's layers are removed and the lease released", async () => {
    const { engine, open } = fakeEngine();
    const transfers: Transfers = {
      ...okTransfers,
      async download(o) {
        if (o.output.includes("/d2/")) throw new NbdError({ errno: "ENOSPC", errnoValue: 28, command: "WRITE", offset: 0, length: 65536 });
        return okTransfers.download(o);
      },
    };
    const { handler, runs, leases, removed } = deps(engine, transfers);
    await expect(handler(req, ctx())).rejects.toMatchObject({ code: "STORE_FULL", message: expect.stringContaining("/store") });
    expect(open.size).toBe(0); // final: the engine backup is not kept for a retry that never comes
    await expect(handler(req, ctx())).rejects.toMatchObject({ code: "STORE_FULL" }); // a redelivery: the same answer
    expect((await runs.get(req.id))?.phase).toBe("failed");
    expect(removed).toContain("/store/web01/d1/cp-new.full.qcow2");
    expect(open.size).toBe(0);
    expect(await leases.get("vm-1")).toBeUndefined();
  });
  it("backup-requested - a read-only store is one final STORE_READ_ONLY naming the store (not a raw EROFS); the lease is released", async () => {
    const { engine, open } = fakeEngine();
    const transfers: Transfers = {
      ...okTransfers,
      async download(o) {
        if (o.output.includes("/d2/")) throw Object.assign(new Error(`EROFS: read-only file system, open '${o.output}'`), { code: "EROFS" });
        return okTransfers.download(o);
      },
    };
    const { handler, runs, leases } = deps(engine, transfers);
    await expect(handler(req, ctx())).rejects.toMatchObject({ code: "STORE_READ_ONLY", message: expect.stringContaining("/store") });
    expect((await runs.get(req.id))?.phase).toBe("failed");
    expect(open.size).toBe(0);
    expect(await leases.get("vm-1")).toBeUndefined();
  });

  it("backup-requested - the VM lease is handed on before the first disk.transferred goes out, so the run's next step never meets VM_BUSY", async () => {
    const { engine } = fakeEngine();
    const { handler, leases } = deps(engine, okTransfers);
    const atPublish: unknown[] = [];
    const c: DeliveryContext = {
      async publish(subject) {
        if (subject !== "disk.transferred") return;
        atPublish.push(await leases.get("vm-1"));
        // chain-updated in another process takes the run's lease the moment the event arrives.
        const next = await leases.acquire({ vmId: "vm-1", runId: req.id, owner: "other-process", step: "chain-updated" });
        await next.handOff("chain-updated");
      },
    };
    await handler(req, c);
    expect(atPublish).toHaveLength(2);
    expect(atPublish[0]).toMatchObject({ runId: req.id, owner: "", step: "disk-transferred" });
  });

  it("backup-requested - with one slot per engine a second VM's backup waits for the first's engine work, then runs; the slot is free before the events go out", async () => {
    const { engine, calls } = fakeEngine();
    const slots = createSlots(memoryKv(), { ttlMs: 60_000, maxPollMs: 20 });
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let downloads = 0;
    const gated: Transfers = { ...okTransfers, async download(o) { if (++downloads === 1) await gate; return okTransfers.download(o); } };
    const { handler } = deps(engine, gated, { slots, slotLimits: { backupsPerEngine: 1 } });
    const holdersAtPublish: { vm: string; holders: string[] }[] = [];
    const c = (vm: string): DeliveryContext => ({ async publish() { holdersAtPublish.push({ vm, holders: (await slots.holders("engine.prd")).map((h) => h.vm) }); } });
    const first = handler(req, c("web01"));
    await new Promise((r) => setTimeout(r, 50));
    const second = handler({ ...req, id: "FERRY_COMMANDS:8", vm: "web02" }, c("web02"));
    await new Promise((r) => setTimeout(r, 150));
    // The first holds the only slot in its download; the second has not touched the engine backup.
    expect(calls.filter((x) => x.startsWith("startBackup"))).toHaveLength(1);
    expect((await slots.holders("engine.prd")).map((h) => h.vm)).toEqual(["web01"]);
    open();
    await Promise.all([first, second]);
    expect(calls.filter((x) => x.startsWith("startBackup"))).toHaveLength(2);
    // Neither run still held its slot while it published its disk events.
    expect(holdersAtPublish).toHaveLength(4);
    for (const p of holdersAtPublish) expect(p.holders).not.toContain(p.vm);
    expect(await slots.holders("engine.prd")).toEqual([]);
  });

  it("backup-requested - a run that fails for good gives its slot back", async () => {
    const fault = { status: 409, reason: "Operation Failed", detail: "[Cannot backup VM. VM is in preview]", method: "POST", path: "/vms/vm-1/backups" };
    const { engine } = fakeEngine({ failStart: () => engineFaultError(fault) });
    const slots = createSlots(memoryKv(), { ttlMs: 60_000, maxPollMs: 20 });
    const { handler } = deps(engine, okTransfers, { slots, slotLimits: { backupsPerEngine: 1 } });
    await expect(handler(req, ctx())).rejects.toMatchObject({ code: "VM_NOT_BACKUPABLE" });
    expect(await slots.holders("engine.prd")).toEqual([]);
  });
});
