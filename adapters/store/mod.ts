/** adapters/store: the backup volume (layout, atomic placement, manifest, retention executor, verify) and the KV chain records. */
export { openStore, DEFAULT_STORE_PATH, type Store, type StoreOptions, type ResolvedPoint, type ResolvedDisk, type VerifyReport } from "./store.ts";
export { StoreError, StoreBusyError, VerifyMismatchError } from "./errors.ts";
export { StorePaths } from "./paths.ts";
export { inspectLayer, inspectChain, type LayerFacts } from "./layers.ts";
export { readManifestFile, writeManifestFile, manifestBody, MAX_MANIFEST_BYTES } from "./manifest.ts";
export { runRetention, replayPending, type RetentionResult, type RetentionContext } from "./retention.ts";
export { verifyDisk, checkLayers, digestChain, parseStoredDigests, type DiskVerification, type BadBlock, type VerifyTools } from "./verify.ts";
export { encodeDigests, decodeDigests, isDigestsFile, checkDigestGeometry, DigestsError, DIGEST_SIZE, type BlockDigests } from "./digests-file.ts";
export { sweepStore, isTempName, type SweepOptions, type SweepReport } from "./sweep.ts";
export { withDirLock, clearStaleLock, LOCK_FILE, type LockOptions } from "./lock.ts";
export { findOrphans, referencedFiles, vmFolders, type OrphanFile, type OrphanKind, type OrphanOptions } from "./orphans.ts";
export { writeFileAtomic, ensureDir, TEMP_PREFIX, DIR_MODE, FILE_MODE } from "./fs-atomic.ts";
export {
  chainsKv,
  openChainsKv,
  chainKey,
  decodeChainKey,
  CHAINS_BUCKET,
  type ChainsKv,
  type ChainsBucket,
  type VersionedChain,
} from "./kv-chains.ts";
export { rebuildChains, exportChains, importChains, type StateReport, type StateItem, type StateAction } from "./state.ts";
export { slotClaims, openSlotClaims, SCHEDULE_BUCKET, SCHEDULE_TTL_MS } from "./kv-schedule.ts";
export { createRetention, type RetentionService } from "./retention-service.ts";
