/**
 * backup-requested's BackupStore port over adapters/store (architecture §5 layout, directories
 * 0700, files 0600, atomic writes). Everything goes through the store's API so its rules hold
 * here too: the manifest is written under the VM lock after finishing any pending retention run,
 * new points have their files checked, points retention removed never come back, and a layer a
 * restore point records is never deleted. backup-requested calls layerTarget holding the VM
 * lease, so a new layer first clears the temp files dead runs left in the VM folder.
 */
import { StoreError, openStore, type Store } from "../adapters/store/mod.ts";
import type { ChainRecord } from "../domain/chain/mod.ts";
import { decodeDigests, encodeDigests } from "../dataplane/blkhash.ts";
import type { BackupStore } from "./ports.ts";

export interface StorePort extends BackupStore {
  /** The store itself (retention, sweep, locks) for the wiring that needs more than the port. */
  readonly volume: Store;
  /** Bring the manifest up to date with a committed KV record (Store.writeManifest). */
  writeManifest(record: ChainRecord): Promise<ChainRecord>;
}

export function createStorePort(rootOrStore: string | Store): StorePort {
  const store = typeof rootOrStore === "string" ? openStore({ root: rootOrStore }) : rootOrStore;
  return {
    root: store.root,
    volume: store,
    absolute: (rel) => store.absolute(rel),
    async layerTarget(o) {
      // The caller holds the VM lease, so a temp file in the folder is a dead run's (a partial
      // layer a read-only or full store kept): gone now, not after the orphan grace of hours.
      await store.removeDeadTemp(o.vmName);
      return store.layerTarget(o);
    },
    async removeUnrecorded(path) {
      try {
        await store.removeUnrecorded(path);
      } catch (err) {
        // A layer a restore point references is not this run's to remove: leave it.
        if (err instanceof StoreError && err.code === "STORE_LAYER_RECORDED") return;
        throw err;
      }
    },
    fileSize: (path) => store.fileSize(path),
    saveOvf: (vmName, key, ovf) => store.saveOvf(vmName, key, ovf),
    saveDigests: (vmName, key, diskId, digests) => store.saveDigests(vmName, key, diskId, encodeDigests(digests)),
    async readDigests(rel) {
      const raw = await store.readDigests(rel);
      return raw ? decodeDigests(raw, rel) : undefined;
    },
    writeManifest: (record) => store.writeManifest(record),
  };
}
