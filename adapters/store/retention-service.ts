/**
 * Retention for the chain-updated function: run it on the store (crash-safe, under the VM's folder
 * lock), then bring the KV record in line with the store's result by compare-and-set, so the next
 * backup builds on layers that exist. Re-running after a crash between the two steps is safe: the
 * store run is then a no-op and the KV sync happens.
 */
import { syncFromStore } from "../../domain/chain/mod.ts";
import type { RetentionPolicy } from "../../domain/retention/mod.ts";
import type { ChainsKv } from "./kv-chains.ts";
import type { RetentionResult } from "./retention.ts";
import type { Store } from "./store.ts";

export interface RetentionService {
  apply(vm: { id: string; name: string }, policy: RetentionPolicy, now: Date, o?: { signal?: AbortSignal }): Promise<RetentionResult & { checkpointsToRemove: string[] }>;
}

export function createRetention(deps: { store: Store; kv: ChainsKv; timeZone?: string }): RetentionService {
  return {
    async apply(vm, policy, now, o = {}) {
      const result = await deps.store.applyRetention(vm, policy, { now, ...(deps.timeZone ? { timeZone: deps.timeZone } : {}), ...(o.signal ? { signal: o.signal } : {}) });
      await deps.kv.change(vm, (cur) => syncFromStore(cur, result.record, now), now);
      return { ...result, checkpointsToRemove: result.plan.checkpointsToRemove };
    },
  };
}
