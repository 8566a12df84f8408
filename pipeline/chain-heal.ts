/**
 * Self-healing chain records (issue 8 item 8): the one chain store of the backup wing
 * (backup-requested, disk-transferred, chain-updated all read through it). When KV has no record
 * for a VM whose restore points are in the store (the bus lost its data), the record is rebuilt
 * from the store's manifest first — the same rebuild as `ferry state rebuild`
 * (adapters/store `rebuildChains`) — so the next backup builds on the stored chain instead of
 * downloading a full copy that the store then refuses (STORE_POINT_NOT_RECORDED).
 */
import { rebuildChains, type ChainsKv, type Store } from "../adapters/store/mod.ts";

export interface HealingOptions {
  readonly log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void } | undefined;
}

/** `kv` with every read of a missing record healed from `store` first. Writes pass through. */
export function healingChains(kv: ChainsKv, store: Store, o: HealingOptions = {}): ChainsKv {
  /** VM id → store folder, learned from manifests (a read by id alone has no name). */
  const names = new Map<string, string>();
  /** VMs already rebuilt by this process: logged once. */
  const healed = new Set<string>();

  async function folderOf(vmId: string, hint?: string): Promise<string | undefined> {
    if (hint) {
      const m = await store.readManifest(hint);
      // Another VM's folder of the same name is not this VM's chain (the store refuses it too).
      return m && m.vm.id === vmId ? hint : undefined;
    }
    const known = names.get(vmId);
    if (known && (await store.readManifest(known).catch(() => undefined))?.vm.id === vmId) return known;
    for (const vm of await store.listVms()) {
      const m = await store.readManifest(vm).catch(() => undefined);
      if (m) names.set(m.vm.id, vm);
      if (m?.vm.id === vmId) return vm;
    }
    return undefined;
  }

  /** Rebuild the VM's record from the store (called when KV has none). */
  async function heal(vmId: string, hint?: string): Promise<void> {
    const folder = await folderOf(vmId, hint);
    if (!folder) return; // a VM the store does not know: its first backup
    const r = await rebuildChains(store, kv, { vms: [folder] });
    const item = r.items[0];
    if (item?.action === "created" && !healed.has(vmId)) {
      healed.add(vmId);
      const points = (await kv.read(vmId))?.restorePoints.length ?? 0;
      o.log?.info({ vm: folder, vmId, restorePoints: points }, "chain record rebuilt from the store (KV had none)");
    } else if (item?.action === "failed" && !(await kv.getChain(vmId))) {
      o.log?.warn({ vm: folder, vmId, rebuild: item }, "chain record missing in KV and could not be rebuilt from the store");
    }
  }

  const getChain: ChainsKv["getChain"] = async (vmId) => {
    const cur = await kv.getChain(vmId);
    if (cur) return cur;
    await heal(vmId);
    return kv.getChain(vmId);
  };

  return {
    ...kv,
    getChain,
    read: async (vmId) => (await getChain(vmId))?.record,
    async change(vm, fn, now) {
      if (!(await kv.getChain(vm.id))) await heal(vm.id, vm.name);
      return kv.change(vm, fn, now);
    },
  };
}
