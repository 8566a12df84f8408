/** Ferry's event contracts: one module per subject, all exported here. See README.md. */
import { backupCompleted } from "./backup-completed.ts";
import { backupFailed } from "./backup-failed.ts";
import { backupRequested } from "./backup-requested.ts";
import { certExpiring } from "./cert-expiring.ts";
import { certFailed } from "./cert-failed.ts";
import { certRenewed } from "./cert-renewed.ts";
import { chainUpdated } from "./chain-updated.ts";
import type { Contract } from "./define.ts";
import { diskTransferred } from "./disk-transferred.ts";
import { ovirtEvent } from "./ovirt-event.ts";
import { rejected } from "./rejected.ts";
import { restoreCompleted } from "./restore-completed.ts";
import { restoreFailed } from "./restore-failed.ts";
import { restoreRequested } from "./restore-requested.ts";
import { transferProgress } from "./transfer-progress.ts";

export { defineContract, schemaFileName, type Contract, type FieldError, type Infer, type Validation } from "./define.ts";
export { backupRequested, type BackupRequested } from "./backup-requested.ts";
export { diskTransferred, type DiskTransferred } from "./disk-transferred.ts";
export { chainUpdated, type ChainUpdated } from "./chain-updated.ts";
export { restoreRequested, type RestoreRequested } from "./restore-requested.ts";
export { certExpiring, type CertExpiring } from "./cert-expiring.ts";
export { backupCompleted, type BackupCompleted } from "./backup-completed.ts";
export { backupFailed, type BackupFailed } from "./backup-failed.ts";
export { restoreCompleted, type RestoreCompleted } from "./restore-completed.ts";
export { restoreFailed, type RestoreFailed } from "./restore-failed.ts";
export { certRenewed, type CertRenewed } from "./cert-renewed.ts";
export { certFailed, type CertFailed } from "./cert-failed.ts";
export { transferProgress, type TransferProgress } from "./transfer-progress.ts";
export { ovirtEvent, ovirtEventKinds, chainBreakingKinds, type OvirtEvent, type OvirtEventKind } from "./ovirt-event.ts";
export { rejected, rejectedSubject, REJECTED_PAYLOAD_MAX, type Rejected } from "./rejected.ts";

/** Every subject name, for code that must not misspell one. */
export const subjects = {
  backupRequested: "backup.requested",
  diskTransferred: "disk.transferred",
  chainUpdated: "chain.updated",
  restoreRequested: "restore.requested",
  certExpiring: "cert.expiring",
  backupCompleted: "backup.completed",
  backupFailed: "backup.failed",
  restoreCompleted: "restore.completed",
  restoreFailed: "restore.failed",
  certRenewed: "cert.renewed",
  certFailed: "cert.failed",
  transferProgress: "transfer.progress",
  ovirtEvent: "ovirt.event",
} as const;
export type Subject = (typeof subjects)[keyof typeof subjects];

/** Contract per concrete subject (the generic `<subject>.rejected` is found by contractFor()). */
export const contracts: Readonly<Record<Subject, Contract<any, any>>> = Object.freeze({
  "backup.requested": backupRequested,
  "disk.transferred": diskTransferred,
  "chain.updated": chainUpdated,
  "restore.requested": restoreRequested,
  "cert.expiring": certExpiring,
  "backup.completed": backupCompleted,
  "backup.failed": backupFailed,
  "restore.completed": restoreCompleted,
  "restore.failed": restoreFailed,
  "cert.renewed": certRenewed,
  "cert.failed": certFailed,
  "transfer.progress": transferProgress,
  "ovirt.event": ovirtEvent,
});

/** All contracts including the generic rejected one (e.g. for schema generation). */
export const allContracts: readonly Contract<any, any>[] = Object.freeze([...Object.values(contracts), rejected]);

/** The contract for a concrete subject, including `<subject>.rejected`; undefined when unknown. */
export function contractFor(subject: string): Contract<any, any> | undefined {
  if (subject in contracts) return contracts[subject as Subject];
  if (subject.endsWith(".rejected")) return rejected;
  return undefined;
}

/**
 * Which `*.failed` event answers a failure while handling `subject` (a step of a backup fails
 * the backup). cert.expiring → cert.failed, built by functions/cert-expiring itself (its input
 * names an engine, not a VM, and the alert may have to go to another engine).
 */
export const failureSubjects: Readonly<Partial<Record<Subject, "backup.failed" | "restore.failed" | "cert.failed">>> = Object.freeze({
  "backup.requested": "backup.failed",
  "disk.transferred": "backup.failed",
  "chain.updated": "backup.failed",
  "restore.requested": "restore.failed",
  "cert.expiring": "cert.failed",
});
