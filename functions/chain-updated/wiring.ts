/**
 * chain-updated's real deps. Retention is adapters/store's service: planned from the store's
 * manifest and executed crash-safely under the VM folder lock (write-ahead intent, idempotent
 * steps), then the KV record follows by compare-and-set. Around it the run's VM lease (handed on
 * by backup-requested, renewed while retention works, released after), so no backup of the VM
 * starts while retention merges or renames its newest layer.
 */
import { createRetention } from "../../adapters/store/mod.ts";
import type { BackupWiring } from "../../pipeline/composition.ts";
import type { ChainUpdatedDeps, PointInStore, Retention } from "./handler.ts";

type Log = ChainUpdatedDeps["log"];

export function createStoreRetention(w: BackupWiring): Retention {
  // Days, weeks and months of keepDaily/Weekly/Monthly are those of the config's timeZone.
  const retention = createRetention({ store: w.store.volume, kv: w.chains, ...(w.settings.timeZone ? { timeZone: w.settings.timeZone } : {}) });
  const renewEvery = Math.max(500, Math.floor(w.leases.ttlMs / 3));
  return {
    async apply(vm, policy, now, runId) {
      const lease = await w.leases.acquire({ vmId: vm.id, runId, owner: w.owner, step: "chain-updated" });
      const beat = setInterval(() => void lease.renew().catch(() => undefined), renewEvery);
      try {
        const { removed } = await retention.apply(vm, policy, now);
        return { removed };
      } finally {
        clearInterval(beat);
        await lease.release();
      }
    },
  };
}

export function storePointCheck(w: BackupWiring): PointInStore {
  return async (vm, point) => {
    const manifest = await w.store.volume.readManifest(vm.name);
    const p = manifest?.restorePoints.find((x) => x.id === point.id);
    if (!p || manifest!.vm.id !== vm.id) return false;
    // Disk ids, not layer paths: retention may have renamed the point's layers since (a redelivery).
    const stored = new Set(p.disks.map((d) => d.diskId));
    return point.disks.length === stored.size && point.disks.every((d) => stored.has(d));
  };
}

export function createChainUpdatedDeps(w: BackupWiring, log: Log, clock: () => Date = () => new Date()): ChainUpdatedDeps {
  return {
    chains: w.chains,
    retention: createStoreRetention(w),
    pointInStore: storePointCheck(w),
    engineFor: (_vmId, runId) => w.engineForRun(runId),
    policy: w.settings.retention,
    replicates: w.settings.replicates ?? (() => false),
    clock,
    log,
  };
}
