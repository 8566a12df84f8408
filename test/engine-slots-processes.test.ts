/**
 * Parallel backups under concurrency.backupsPerEngine, with two real backup-requested worker
 * processes against one lab engine whose backups are slowed down (labTimings):
 * - limit 4, five VMs: four engine backups are open at once, never five — each process could run
 *   four, so the fifth waiting shows the limit holds across processes — and every backup completes;
 * - limit 1: the two processes back up one VM at a time.
 * Both: chain-updated (in this process) takes the lease the worker handed on without a VM_BUSY
 * retry: every chain.updated is handled at its first delivery and no VM_BUSY is logged.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Kvm } from "@nats-io/kv";
import { killWorker, startWorkerProcess } from "./harness/worker-process.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";
import { waitFor } from "./harness/wait-for.ts";
import { buckets } from "../infra/streams/mod.ts";
import type { SlotRecord } from "../pipeline/engine-slots.ts";

const MiB = 1048576;
const worker = fileURLToPath(new URL("./fixtures/backup-worker.ts", import.meta.url));
let p: Pipeline;
const children: ChildProcess[] = [];

beforeAll(async () => {
  // A backup takes ~2 s on the engine (two 1 s phases before READY): long enough to overlap.
  p = await startPipeline({ backupWorker: false, labTimings: { backupPhaseMs: 1000 }, ackWaitMs: 20_000 });
}, 120_000);

afterAll(async () => {
  for (const c of children) await killWorker(c);
  await p?.stop();
});

/** Two worker processes with this limit (each could run `limit` backups). */
async function startWorkers(limit: number, more: { backupsPerStorageDomain?: number } = {}): Promise<ChildProcess[]> {
  const cfg = JSON.parse(await readFile(p.workerConfigFile, "utf8")) as { settings: Record<string, unknown>; policy: Record<string, unknown> };
  const file = join(p.dir, `worker-limit-${limit}-${Object.keys(more).join("-")}.json`);
  await writeFile(file, JSON.stringify({ ...cfg, settings: { ...cfg.settings, slotLimits: { backupsPerEngine: limit, ...more } }, policy: { ...cfg.policy, concurrency: limit } }), { mode: 0o600 });
  return [await startWorkerProcess(worker, file, children), await startWorkerProcess(worker, file, children)];
}

async function stopWorkers(ws: ChildProcess[]): Promise<void> {
  for (const w of ws) {
    const exited = new Promise((r) => w.once("exit", r));
    w.kill("SIGTERM");
    await exited;
  }
}

interface Observed {
  /** Most engine backups open at once on the lab engine. */
  peakOpenBackups: number;
  /** Most holders of the engine's slots at once (KV ferry-slots). */
  peakHolders: number;
  /** Worker pids seen holding a slot. */
  owners: Set<string>;
  /** chain.updated → backup.completed, per run (ms; includes queueing behind other runs' retention). */
  gapsMs: number[];
  /** Delivery count of each chain.updated when chain-updated finished it. */
  chainDeliveries: number[];
}

async function backUpAll(names: string[]): Promise<Observed> {
  const control = p.lab.engines.prd!.control;
  const o: Observed = { peakOpenBackups: 0, peakHolders: 0, owners: new Set(), gapsMs: [], chainDeliveries: [] };
  const poll = setInterval(() => (o.peakOpenBackups = Math.max(o.peakOpenBackups, control.status().openBackups.length)), 20);
  const kv = await new Kvm(p.nc).open(buckets.slots);
  const watch = await kv.watch({ key: "engine.prd" });
  void (async () => {
    for await (const e of watch) {
      if (e.operation !== "PUT") continue;
      const r = e.json<SlotRecord>();
      o.peakHolders = Math.max(o.peakHolders, r.holders.length);
      for (const h of r.holders) o.owners.add(h.owner.split(":").at(-1)!);
    }
  })();
  const at = new Map<string, number>();
  const sub = p.nc.subscribe("*.*", { callback: (_e, m) => {
    if (m.subject !== "chain.updated" && m.subject !== "backup.completed") return;
    at.set(`${m.subject}:${String(m.json<{ correlationId: string }>().correlationId)}`, Date.now());
  } });
  try {
    const ids = await Promise.all(names.map((n) => p.request(n, { mode: "full" })));
    const outcomes = await Promise.all(ids.map((id) => p.outcome(id, 180_000)));
    for (const x of outcomes) expect(x.subject, JSON.stringify(x.event)).toBe("backup.completed");
    for (const id of ids) o.gapsMs.push(at.get(`backup.completed:${id}`)! - at.get(`chain.updated:${id}`)!);
    // chain-updated logs "handled" after its ack, i.e. just after backup.completed went out.
    const handled = () => {
      const lines = p.logLines.flatMap((l) => l.split("\n").filter(Boolean).map((x) => JSON.parse(x) as { fn?: string; msg?: string; deliveryCount?: number; correlationId?: string }));
      return ids.map((id) => lines.find((l) => l.fn === "chain-updated" && l.msg === "handled" && l.correlationId === id)?.deliveryCount);
    };
    o.chainDeliveries = await waitFor(() => (handled().every((d) => d !== undefined) ? (handled() as number[]) : undefined), { what: "chain-updated's 'handled' line of every run" });
    return o;
  } finally {
    clearInterval(poll);
    watch.stop();
    sub.unsubscribe();
  }
}

describe("engine slots across processes (lab)", () => {
  it("engine slots - backupsPerEngine 4, two worker processes, five VMs: four engine backups overlap, the fifth waits, all complete; no VM_BUSY", async () => {
    const control = p.lab.engines.prd!.control;
    const names = ["sa1", "sa2", "sa3", "sa4", "sa5"];
    for (const n of names) {
      const vm = await control.createVm({ name: n, disks: [{ alias: `${n}_d1`, size: 8 * MiB }], status: "up" });
      await control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: MiB, pattern: 0x41 });
    }
    const ws = await startWorkers(4);
    const o = await backUpAll(names);
    await stopWorkers(ws);
    expect(o.peakOpenBackups).toBe(4);
    expect(o.peakHolders).toBe(4);
    // Each process could have taken four: that the fifth waited is the limit holding across them.
    expect([...o.owners].sort()).toEqual(ws.map((w) => String(w.pid)).sort());
    // The run's retention step took the handed-on lease at once: first delivery, no VM_BUSY retry timer.
    expect(o.chainDeliveries, JSON.stringify(o.gapsMs)).toEqual(names.map(() => 1));
    expect(p.logLines.filter((l) => l.includes("VM_BUSY"))).toEqual([]);
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
  }, 300_000);

  it("engine slots - backupsPerEngine 1: two worker processes back up one VM at a time", async () => {
    const control = p.lab.engines.prd!.control;
    const names = ["sb1", "sb2", "sb3"];
    for (const n of names) {
      const vm = await control.createVm({ name: n, disks: [{ alias: `${n}_d1`, size: 8 * MiB }], status: "up" });
      await control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: MiB, pattern: 0x42 });
    }
    const ws = await startWorkers(1);
    const o = await backUpAll(names);
    await stopWorkers(ws);
    expect(o.peakOpenBackups).toBe(1);
    expect(o.peakHolders).toBe(1);
    // The run's retention step took the handed-on lease at once: first delivery, no VM_BUSY retry timer.
    expect(o.chainDeliveries, JSON.stringify(o.gapsMs)).toEqual(names.map(() => 1));
    expect(p.logLines.filter((l) => l.includes("VM_BUSY"))).toEqual([]);
  }, 300_000);

  it("engine slots - backupsPerStorageDomain 1 under backupsPerEngine 4: VMs whose disks share a storage domain are backed up one at a time", async () => {
    const control = p.lab.engines.prd!.control;
    const names = ["sc1", "sc2", "sc3"];
    for (const n of names) {
      const vm = await control.createVm({ name: n, disks: [{ alias: `${n}_d1`, size: 8 * MiB }], status: "up" });
      await control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: MiB, pattern: 0x43 });
    }
    const kv = await new Kvm(p.nc).open(buckets.slots);
    const sdKeys = new Set<string>();
    const watch = await kv.watch({ key: "sd.prd.>" });
    void (async () => {
      for await (const e of watch) sdKeys.add(e.key);
    })();
    const ws = await startWorkers(4, { backupsPerStorageDomain: 1 });
    const o = await backUpAll(names);
    await stopWorkers(ws);
    watch.stop();
    expect(o.peakOpenBackups).toBe(1);
    // The lab puts every disk on one domain: its scope is the one that held them back.
    expect(sdKeys.size).toBe(1);
    expect(o.chainDeliveries).toEqual(names.map(() => 1));
  }, 300_000);
});
