/**
 * chain-updated's real deps: retention = domain/retention planned and executed by adapters/store
 * (write-ahead intent in the manifest, idempotent steps) under the VM lease (no backup of the VM
 * runs while layers are merged) and the store's VM folder lock; then the KV record follows.
 */
import { join } from "node:path";
import { qemuImg } from "../../adapters/qemu/mod.ts";
import { withDirLock } from "../../adapters/store/lock.ts";
import { readManifestFile } from "../../adapters/store/manifest.ts";
import { StorePaths } from "../../adapters/store/paths.ts";
import { runRetention } from "../../adapters/store/retention.ts";
import type { BackupSettings, BackupWiring } from "../reconciler/wiring.ts";
import type { ChainUpdatedDeps, Retention } from "./handler.ts";

type Log = ChainUpdatedDeps["log"];

export function createStoreRetention(w: BackupWiring, storePath: string): Retention {
  const paths = new StorePaths(storePath);
  return {
    async apply(vm, policy, now) {
      const lease = await w.leases.acquire({ vmId: vm.id, runId: `retention-${vm.id}`, owner: w.owner });
      try {
        const fromKv = await w.chains.read(vm.id);
        if (!fromKv) return { removed: [] };
        return await withDirLock(join(paths.root, vm.name), "retention", async () => {
          // An interrupted retention run left its intent in the manifest: finish that first.
          const manifest = await readManifestFile(paths, vm.name).catch(() => undefined);
          const current = manifest?.pending ? { ...manifest, incoming: fromKv.incoming } : fromKv;
          const res = await runRetention({ paths, qemu: qemuImg }, current, policy, { now });
          if (res.removed.length || manifest?.pending) {
            await w.chains.change(vm, (cur) => {
              const next = { ...res.record, updatedAt: now.toISOString() };
              if (cur.incoming) next.incoming = cur.incoming;
              else delete next.incoming;
              return next;
            }, now);
          }
          return { removed: res.removed };
        });
      } finally {
        await lease.release();
      }
    },
  };
}

export function createChainUpdatedDeps(w: BackupWiring, s: BackupSettings, log: Log, clock: () => Date = () => new Date()): ChainUpdatedDeps {
  return {
    chains: w.chains,
    retention: createStoreRetention(w, s.storePath),
    // The VM's engine is the one its backup run used (journal), else the default 'prd'.
    engineFor: async (_vmId, runId) => {
      const run = runId ? await w.runs.get(runId).catch(() => undefined) : undefined;
      return w.engines.get(run?.engine ?? "prd");
    },
    policy: s.retention,
    clock,
    log,
  };
}
