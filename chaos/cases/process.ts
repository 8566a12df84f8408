/**
 * The functions process (`ferry run all`) SIGKILLed at step boundaries and started again: after
 * the engine backup started, mid-download, after the layer is in the store (disk.transferred
 * published) but before the chain is recorded.
 */
import type { ChaosCase } from "../case.ts";
import { backupStarted, downloading, sleep, storedEvent, until } from "../steps.ts";
import { MiB, type World } from "../world.ts";

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
