/**
 * What the backup functions need from the outside world, reduced to the calls they make.
 * pipeline/composition.ts adapts the real clients (adapters/ovirt, adapters/imageio, dataplane,
 * adapters/store, KV) to these; unit tests fake only the engine edge.
 */
import type { EngineCheckpoint, EngineDisk, LayerMode } from "../domain/backup/decide.ts";
import type { BlockDigests } from "../dataplane/blkhash.ts";

export interface EngineVm {
  readonly id: string;
  readonly name: string;
  readonly status: string;
  /** The host it runs on (none while it is down). */
  readonly hostId?: string | undefined;
}

export interface EngineBackup {
  readonly id: string;
  readonly phase: string;
  readonly toCheckpointId?: string | undefined;
  readonly description?: string | undefined;
  /** The engine's own snapshot of a hybrid backup ("Auto-generated for Backup VM"). */
  readonly snapshotId?: string | undefined;
}

export interface EngineTransfer {
  readonly id: string;
  readonly transferUrl: string;
  readonly proxyUrl?: string | undefined;
}

/** The engine calls of one backup (ovirt-api.md §4, §5, §6, §9, §10). Each wait has its own deadline. */
export interface BackupEngine {
  readonly name: string;
  readonly caPem?: string | undefined;
  findVm(nameOrId: string): Promise<EngineVm | undefined>;
  vmOvf(vmId: string): Promise<string>;
  vmDisks(vmId: string): Promise<EngineDisk[]>;
  /** The VM's checkpoints; undefined when the engine has no checkpoint API (no incremental backup). */
  checkpoints(vmId: string): Promise<EngineCheckpoint[] | undefined>;
  removeCheckpoint(vmId: string, checkpointId: string): Promise<void>;
  /** POST /vms/{id}/backups with a client-chosen id, then wait for `ready`. */
  startBackup(vmId: string, o: { id: string; fromCheckpointId?: string | undefined; description: string; diskIds: string[] }, signal?: AbortSignal): Promise<EngineBackup>;
  getBackup(vmId: string, backupId: string): Promise<EngineBackup | undefined>;
  listBackups(vmId: string): Promise<EngineBackup[]>;
  /** Per-disk backup_mode of a ready backup. */
  backupDisks(vmId: string, backupId: string): Promise<{ id: string; backupMode?: string | undefined }[]>;
  /** Finalize and wait for a final phase; already final → no-op. */
  finalizeBackup(vmId: string, backupId: string, signal?: AbortSignal): Promise<void>;
  /** Create a download transfer and wait for `transferring`. */
  createDownload(o: { diskId: string; backupId?: string | undefined; snapshotImageId?: string | undefined }, signal?: AbortSignal): Promise<EngineTransfer>;
  /** Finalize (or cancel when `cancel`) and wait for a final phase; unknown/finished → no-op. */
  finishTransfer(transferId: string, o?: { cancel?: boolean; signal?: AbortSignal }): Promise<void>;
  /** Snapshot-based fallback (§10). */
  createSnapshot(vmId: string, o: { description: string; diskIds: string[] }, signal?: AbortSignal): Promise<{ id: string; disks: { id: string; imageId: string }[] }>;
  removeSnapshot(vmId: string, snapshotId: string, signal?: AbortSignal): Promise<void>;
  /** POST /events; a duplicate custom_id counts as done. */
  postEvent(o: { description: string; severity: "normal" | "warning" | "alert" | "error"; customId: number; vmId?: string | undefined }): Promise<void>;
}

/** What the reconciler needs besides a backup's calls: the engine-wide lists. */
export interface ReconcileEngine extends BackupEngine {
  listTransfers(): Promise<{ id: string; phase: string; diskId?: string | undefined }[]>;
  listVmIds(): Promise<string[]>;
  /** The ids of a VM's snapshots (to find a hybrid backup's snapshot the engine left behind). */
  listSnapshotIds(vmId: string): Promise<string[]>;
}

export interface DownloadResult {
  readonly bytes: number;
  readonly seconds: number;
  readonly virtualSize: number;
  readonly digests: Buffer;
  /** imageio-compatible block checksum of the whole guest image (hex), computed locally. */
  readonly checksum: string;
}

/** dataplane download (temp name, check, place) + imageio's own checksum of the same transfer. */
export interface Transfers {
  download(o: {
    transferUrl: string;
    caPem?: string | undefined;
    /** Final path; the dataplane writes a temp name beside it and places it when complete. */
    output: string;
    backing?: { path: string } | undefined;
    previousDigests?: BlockDigests | undefined;
    incremental: boolean;
    onProgress?: (bytes: number, total: number) => void;
    signal?: AbortSignal | undefined;
  }): Promise<DownloadResult>;
  sourceChecksum(o: { transferUrl: string; caPem?: string | undefined; blockSize: number; signal?: AbortSignal | undefined }): Promise<string>;
}

export interface BackupStore {
  readonly root: string;
  /** Where a layer goes (architecture §5 names); creates the disk directory (0700). */
  layerTarget(o: { vmName: string; diskId: string; time: string; key: string; mode: LayerMode }): Promise<{ relPath: string; finalPath: string }>;
  /** Remove a layer that no restore point references yet, and its partial temp files. */
  removeUnrecorded(finalPath: string): Promise<void>;
  fileSize(path: string): Promise<number>;
  saveOvf(vmName: string, key: string, ovf: string): Promise<string>;
  saveDigests(vmName: string, key: string, diskId: string, digests: BlockDigests): Promise<string>;
  readDigests(relPath: string): Promise<BlockDigests | undefined>;
  absolute(relPath: string): string;
}

/** The VM's chain as the decision and the incremental download need it. */
export interface ChainView {
  readonly summary: import("../domain/backup/decide.ts").ChainSummary;
  /** Latest layer per disk: relative path and its block digests file. */
  readonly diskLayers: ReadonlyMap<string, { readonly path: string; readonly digestsFile: string }>;
}

export interface ChainReader {
  view(vmId: string, vmName: string): Promise<ChainView>;
}
