/**
 * Ferry's oVirt / OLVM engine client (ovirt-api.md §1-§10): the REST operations, the zod models
 * of what Ferry reads, typed errors, the phase waits, and the CA download.
 */
export { createEngineClient, EngineClient, type EngineClientOptions } from "./client.ts";
export type { SessionOptions } from "./transport.ts";
export { sanitizeCorrelationId } from "./transport.ts";
export { CaNotVerifiedError, CaUnreachableError, chainsTo, fetchEngineCa, parseCaPem, peerCertificate, pemCertificates, PKI_RESOURCE_PATH, type EngineCa, type FetchEngineCaOptions, type PeerCertificate } from "./ca.ts";
export type { CallOptions, CreateVmFromOvf, AttachDisk } from "./ops-vms.ts";
export type { CreateDisk, UpdateDisk } from "./ops-disks.ts";
export type { AddNic, UpdateNic } from "./ops-nics.ts";
export type { StartBackup } from "./ops-backups.ts";
export type { DownloadSpec, UploadSpec } from "./ops-transfers.ts";
export type { CreateSnapshot } from "./ops-snapshots.ts";
export { nextCustomId, type PostEvent } from "./ops-events.ts";
export * from "./errors.ts";
export * from "./models.ts";
export { bool, collection, date, int, ref, type Ref } from "./json.ts";
export {
  WAIT_DEFAULTS,
  createDisk,
  deleteCheckpoint,
  deleteSnapshot,
  finalizeBackup,
  finalizeTransfer,
  openTransfer,
  takeSnapshot,
  waitForBackupPhase,
  waitForCheckpointGone,
  waitForDiskOk,
  waitForSnapshotGone,
  waitForSnapshotOk,
  waitForTransfer,
  waitForTransferFinished,
  waitForTransferReady,
  waitForVmStatus,
  withBackup,
  type BackupSession,
  type OpenTransferSpec,
  type TransferOutcome,
  type WaitOptions,
} from "./waits.ts";
