/**
 * The chain-record port the backup functions use (KV ferry-chains, key = vm id, changed only by
 * compare-and-set). Production passes adapters/store's `chainsKv` (same interface);
 * `createChainStore` is a minimal implementation over any KvLike, used by the unit tests with
 * memory-kv.ts. Also: the view of a chain that backup-requested's decision needs.
 */
import { emptyChain, parseChainRecord, summarizeChain, tipLayer, type ChainRecord } from "../../domain/chain/mod.ts";
import { casUpdate, kvKey, readRecord, type KvLike } from "./kv-record.ts";

export interface ChainStore {
  read(vmId: string): Promise<ChainRecord | undefined>;
  /**
   * Apply a pure change with compare-and-set (retried on conflict: `fn` runs again on the newer
   * record, so it must not have side effects beyond what it returns); returns the committed
   * record. `fn` returning its input writes nothing (disk-transferred uses that to write the
   * store before committing a completed restore point).
   */
  change(vm: { id: string; name: string }, fn: (cur: ChainRecord) => ChainRecord, now?: Date): Promise<ChainRecord>;
  list(): Promise<ChainRecord[]>;
}

export function createChainStore(kv: KvLike): ChainStore {
  return {
    async read(vmId) {
      const r = await readRecord<unknown>(kv, kvKey(vmId));
      return r ? parseChainRecord(r.value, `chain of VM ${vmId}`) : undefined;
    },
    async change(vm, fn, now = new Date()) {
      const res = await casUpdate<ChainRecord>(kv, kvKey(vm.id), (cur) => {
        const base = cur ? parseChainRecord(cur, `chain of VM ${vm.name}`) : emptyChain(vm, now);
        const next = fn(base);
        return next === base ? (cur ? undefined : next) : next;
      });
      return res ? res.value : emptyChain(vm, now);
    },
    async list() {
      const out: ChainRecord[] = [];
      for await (const k of await kv.keys()) {
        const r = await readRecord<unknown>(kv, k);
        if (r) out.push(parseChainRecord(r.value, `chain ${k}`));
      }
      return out;
    },
  };
}

/** backup-requested's ChainReader over the chain store. */
export function chainViewOf(record: ChainRecord | undefined) {
  const diskLayers = new Map<string, { path: string; digestsFile: string }>();
  if (record) {
    const ids = new Set(record.restorePoints.flatMap((p) => p.disks.map((d) => d.diskId)));
    for (const id of ids) {
      const tip = tipLayer(record, id);
      if (tip) diskLayers.set(id, { path: tip.layer, digestsFile: tip.digestsFile });
    }
  }
  return { summary: summarizeChain(record), diskLayers };
}
