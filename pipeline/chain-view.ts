/**
 * The chain as the backup functions see it. There is one chain store: adapters/store's
 * `chainsKv` (KV ferry-chains, compare-and-set); the unit tests run it over
 * adapters/nats/testing/memory-kv.ts. `chainViewOf` is what backup-requested's decision and
 * incremental download need from a record.
 */
import { summarizeChain, tipLayer, type ChainRecord } from "../domain/chain/mod.ts";
import type { ChainsKv } from "../adapters/store/mod.ts";
import type { ChainView } from "./ports.ts";

/** The part of the chain store a function uses. */
export type ChainStore = Pick<ChainsKv, "read" | "change" | "list">;

/** `verifiedIn`: the store's manifest, where `ferry verify` records its verdicts. */
export function chainViewOf(record: ChainRecord | undefined, verifiedIn?: ChainRecord): ChainView {
  const diskLayers = new Map<string, { path: string; digestsFile: string }>();
  if (record) {
    const ids = new Set(record.restorePoints.flatMap((p) => p.disks.map((d) => d.diskId)));
    for (const id of ids) {
      const tip = tipLayer(record, id);
      if (tip) diskLayers.set(id, { path: tip.layer, digestsFile: tip.digestsFile });
    }
  }
  return { summary: summarizeChain(record, verifiedIn), diskLayers };
}
