/**
 * chain-updated's real deps. Retention is adapters/store's service: planned from the store's
 * manifest and executed crash-safely under the VM folder lock (write-ahead intent, idempotent
 * steps), then the KV record follows by compare-and-set. Around it the VM lease, so no backup of
 * the VM runs while retention merges or renames its newest layer.
 */
import { createRetention } from "../../adapters/store/mod.ts";
import type { BackupSettings, BackupWiring } from "../../pipeline/composition.ts";
import type { ChainUpdatedDeps, Retention } from "./handler.ts";

type Log = ChainUpdatedDeps["log"];

export function createStoreRetention(w: BackupWiring): Retention {
  const retention = createRetention({ store: w.store.volume, kv: w.chains });
  return {
    async apply(vm, policy, now) {
      const lease = await w.leases.acquire({ vmId: vm.id, runId: `retention-${vm.id}`, owner: w.owner });
      try {
        const { removed } = await retention.apply(vm, policy, now);
        return { removed };
      } finally {
        await lease.release();
      }
    },
  };
}

export function createChainUpdatedDeps(w: BackupWiring, s: BackupSettings, log: Log, clock: () => Date = () => new Date()): ChainUpdatedDeps {
  return {
    chains: w.chains,
    retention: createStoreRetention(w),
    engineFor: (_vmId, runId) => w.engineForRun(runId),
    policy: s.retention,
    clock,
    log,
  };
}
