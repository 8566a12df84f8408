/**
 * The functions process (`ferry run all`) SIGKILLed at step boundaries and started again: after
 * the engine backup started, mid-download, after the layer is in the store (disk.transferred
 * published) but before the chain is recorded; on a backup's last delivery; while retention runs.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { buckets, streams } from "../../infra/streams/mod.ts";
import type { ChaosCase } from "../case.ts";
import { backupStarted, consumerDeliveries, downloading, outcomeText, sleep, StopWaitingError, storedEvent, until } from "../steps.ts";
import { isTerminal, MiB, type World } from "../world.ts";

function killAt(name: string, summary: string, moment: (w: World, id: string) => Promise<unknown>): ChaosCase {
  return {
    name,
    summary,
    followUp: "cx01",
    // A killed worker's held lease expires after 60 s (production TTL), then the retry or the reconciler goes on.
    settleMs: 300_000,
    async run(w) {
      w.prd().control.faults.throttleImageio(1 * MiB);
      const id = await w.d.request("cx01");
      await moment(w, id);
      const faultAt = performance.now();
      await w.d.killFunctions("SIGKILL");
      w.prd().control.faults.clear();
      await w.d.startFunctions();
      const out = await w.d.outcome(id, 280_000);
      return { expect: { requests: [id] }, faultAt, outcome: out.subject };
    },
  };
}

export const killAfterBackupStart = killAt("kill-after-backup-start", "functions SIGKILLed right after the engine backup was started", (w) => backupStarted(w, "cx01"));
export const killMidDownload = killAt("kill-mid-download", "functions SIGKILLed mid-download", (w) => downloading(w, 2 * MiB));
export const killAfterStoreWrite = killAt("kill-after-store-write", "functions SIGKILLed after the layer is in the store (disk.transferred), before the chain is recorded", (w, id) =>
  storedEvent(w.d, "disk.transferred", (e) => e.subject === "disk.transferred" && e.event.correlationId === id),
);

export const restoreKillMidUpload: ChaosCase = {
  name: "restore-kill-mid-upload",
  summary: "a restore's functions process SIGKILLed mid-upload and restarted: one restore outcome, nothing half-made left on the target",
  settleMs: 300_000,
  async run(w) {
    const b = await w.d.request("cx01", { mode: "full" });
    await w.d.outcome(b);
    w.prd().control.faults.throttleImageio(1 * MiB);
    const id = `rs-${Math.random().toString(36).slice(2, 8)}`;
    await w.d.js.publish("restore.requested", JSON.stringify({ id, correlationId: id, vm: "cx01", target: "prd", name: "cx01_chaos" }), { msgID: id });
    await until("an upload in progress", () => w.prd().engine.st.transfers.find((t) => t.direction === "upload" && t.phase === "transferring"), 180_000);
    await sleep(1500);
    const faultAt = performance.now();
    await w.d.killFunctions("SIGKILL");
    w.prd().control.faults.clear();
    await w.d.startFunctions();
    const out = await w.d.outcome(id, 280_000);
    return {
      expect: { requests: [b, id] },
      faultAt,
      outcome: `${out.subject}${out.event.code ? `:${String(out.event.code)}` : ""}`,
      after: async () => {
        // A failed restore leaves no VM or disk; a completed one leaves exactly its VM.
        const vms = w.prd().engine.st.vms.filter((v) => v.name === "cx01_chaos").length;
        const want = out.subject === "restore.completed" ? 1 : 0;
        return vms === want ? [] : [`${vms} VM(s) cx01_chaos on the target after ${out.subject}, expected ${want}`];
      },
    };
  },
};

/** Thrown when the moment a case waits for has passed without it (the run ended first). */
export class MomentMissedError extends StopWaitingError {}

export const killOnLastDelivery: ChaosCase = {
  name: "kill-on-last-delivery",
  summary: "every download answered 403 (transient) until the backup's last delivery; the functions SIGKILLed mid-download on it and restarted: one backup.failed with a code, one alert, nothing stuck",
  // JetStream's backoff (5 s, 30 s, 120 s) to the last delivery, then ack_wait (60 s) before the MAX_DELIVERIES advisory.
  settleMs: 420_000,
  async run(w) {
    const imageio = () => w.prd().engine.imageio.faults!;
    // Far more 403s than three deliveries use: the fault ends by clear(), not by running out.
    imageio().failNext(403, 1_000_000, "GET");
    const id = await w.d.request("cx01");
    const last = await until(
      "the backup's last delivery",
      async () => {
        const ended = (await w.d.events()).find((e) => isTerminal(e.subject) && e.event.correlationId === id);
        if (ended) throw new MomentMissedError(`the backup ended (${outcomeText(ended)}) before its last delivery`);
        const c = await consumerDeliveries(w.d, streams.commands.name, "backup.requested");
        return c && c.maxDeliver > 0 && c.delivered >= c.maxDeliver ? c : undefined;
      },
      400_000,
      100,
    );
    imageio().clear();
    w.prd().control.faults.throttleImageio(1 * MiB);
    await downloading(w, 2 * MiB);
    const faultAt = performance.now();
    await w.d.killFunctions("SIGKILL");
    w.prd().control.faults.clear();
    await w.d.startFunctions();
    const out = await w.d.outcome(id, 300_000);
    const alerts = () => w.prd().engine.st.events.filter((e) => e.origin === "ferry" && e.severity === "alert");
    return {
      expect: { requests: [id] },
      faultAt,
      outcome: outcomeText(out),
      notes: [`killed on delivery ${last.delivered} of ${last.maxDeliver}`],
      problems: out.subject === "backup.failed" ? [] : [`expected backup.failed after the last delivery died, got ${out.subject}`],
      after: async () => {
        const n = alerts().length;
        return n === 1 ? [] : [`${n} alerts on the engine for one failed run, expected 1 (${alerts().map((e) => e.description.slice(0, 80)).join(" | ")})`];
      },
    };
  },
};

/** Restore point ids of the VM's chain as the store's manifest and the KV record hold them. */
async function pointIds(w: World, vm: string): Promise<{ store: string[]; kv: string[] }> {
  type Points = { restorePoints?: { id: string }[] } | null;
  const manifest = JSON.parse(await readFile(join(w.d.storePath, vm, "restore-points.json"), "utf8")) as Points;
  const kv = await new Kvm(w.d.nc).open(buckets.chains);
  const record = JSON.parse((await kv.get(w.vms[vm]!.id))?.string() ?? "null") as Points;
  return { store: (manifest?.restorePoints ?? []).map((p) => p.id), kv: (record?.restorePoints ?? []).map((p) => p.id) };
}

const pendingRetention = async (w: World, vm: string) => (await readFile(join(w.d.storePath, vm, "restore-points.json"), "utf8").catch(() => "")).includes('"pending"');

export const killMidRetention: ChaosCase = {
  name: "kill-mid-retention",
  summary: "keepLast 2: the third backup's retention merges the oldest full away; the functions SIGKILLed while its intent is pending in the manifest, restarted: the chain verifies, no point lost or duplicated, one outcome",
  // 96 MiB of guest data: the merge copies it, so retention lasts long enough to be caught.
  world: { vms: [{ name: "cx01", size: 256 * MiB, data: 96 * MiB, retention: { keepLast: 2 } }] },
  followUp: "cx01",
  settleMs: 300_000,
  async run(w) {
    const points: string[] = [];
    const backup = async (seed: number) => {
      await w.prd().control.writeGuestData(w.vms.cx01!.diskId, { offset: seed * MiB, length: 4 * MiB, seed });
      const id = await w.d.request("cx01");
      const out = await w.d.outcome(id);
      if (out.subject !== "backup.completed") throw new MomentMissedError(`backup ${points.length + 1} before the fault: ${outcomeText(out)}`);
      points.push(String(out.event.restorePoint));
      return id;
    };
    const ids = [await backup(1), await backup(2)];
    await w.prd().control.writeGuestData(w.vms.cx01!.diskId, { offset: 3 * MiB, length: 4 * MiB, seed: 3 });
    const third = await w.d.request("cx01");
    let looked = 0;
    await until(
      "retention's intent in the manifest",
      async () => {
        if (await pendingRetention(w, "cx01")) return true;
        // Reading the stream is slow: the manifest every 5 ms, the outcome every 500 ms.
        if (Date.now() - looked < 500) return undefined;
        looked = Date.now();
        const ended = (await w.d.events()).find((e) => isTerminal(e.subject) && e.event.correlationId === third);
        if (ended) throw new MomentMissedError(`the third backup ended (${outcomeText(ended)}) before its retention could be caught`);
        return undefined;
      },
      240_000,
      5,
    );
    const faultAt = performance.now();
    await w.d.killFunctions("SIGKILL");
    const caught = await pendingRetention(w, "cx01");
    await w.d.startFunctions();
    const out = await w.d.outcome(third, 280_000);
    if (out.subject === "backup.completed") points.push(String(out.event.restorePoint));
    return {
      expect: { requests: [...ids, third], mustComplete: [...ids, third] },
      faultAt,
      outcome: outcomeText(out),
      notes: [`killed with retention's intent ${caught ? "still pending in the manifest (mid-retention)" : "already gone (retention finished as the kill landed)"}`],
      after: async () => {
        const { store, kv } = await pointIds(w, "cx01");
        const want = points.slice(-2);
        const problems: string[] = [];
        if (new Set(store).size !== store.length) problems.push(`duplicated points in the manifest: ${store.join(", ")}`);
        if (store.join() !== want.join()) problems.push(`manifest points ${store.join(", ")}, expected the last two ${want.join(", ")}`);
        if (kv.join() !== store.join()) problems.push(`KV points ${kv.join(", ")} differ from the manifest's ${store.join(", ")}`);
        return problems;
      },
    };
  },
};
