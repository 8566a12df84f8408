/**
 * The chain as the backup functions see it. There is one chain store: adapters/store's
 * `chainsKv` (KV ferry-chains, compare-and-set); the unit tests run it over
 * adapters/nats/testing/memory-kv.ts. `chainViewOf` is what backup-requested's decision and
 * incremental download need from a record.
 */
import { summarizeChain, tipLayer, type ChainRecord } from "../domain/chain/mod.ts";
import type { ChainsKv } from "../adapters/store/mod.ts";
import type { ChainView } from "./ports.ts";
import { activeMark, markReason, type GuardMark } from "./chain-guard.ts";

/** The part of the chain store a function uses. */
export type ChainStore = Pick<ChainsKv, "read" | "change" | "list">;

/**
 * `verifiedIn`: the store's manifest, where `ferry verify` records its verdicts. `guard`: the
 * chain guard's mark for the VM (an engine event broke the chain, pipeline/chain-guard.ts); while
 * no full was taken after it, the chain is not built on and the next layer is a full with the
 * engine event as its reason.
 */
export function chainViewOf(record: ChainRecord | undefined, verifiedIn?: ChainRecord, guard?: GuardMark): ChainView {
  const diskLayers = new Map<string, { path: string; digestsFile: string }>();
  if (record) {
    const ids = new Set(record.restorePoints.flatMap((p) => p.disks.map((d) => d.diskId)));
    for (const id of ids) {
      const tip = tipLayer(record, id);
      if (tip) diskLayers.set(id, { path: tip.layer, digestsFile: tip.digestsFile });
    }
  }
  const summary = summarizeChain(record, verifiedIn);
  const mark = activeMark(guard, summary.lastFullTime);
  return { summary: mark && !summary.broken ? { ...summary, broken: markReason(mark) } : summary, diskLayers };
}
