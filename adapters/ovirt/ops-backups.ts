/** Incremental backup API: backups and checkpoints (ovirt-api.md §5). */
import { actionResult } from "./json.ts";
import { Backup, Backups, Checkpoint, Checkpoints, Disk, Disks } from "./models.ts";
import type { CallOptions } from "./ops-vms.ts";
import type { EngineApi } from "./transport.ts";

const seg = encodeURIComponent;

export interface StartBackup {
  readonly diskIds: readonly string[];
  /** Omit for a full backup. */
  readonly fromCheckpointId?: string;
  /** A client-chosen backup id (recorded in the run journal before the POST, so a crash can find it). */
  readonly id?: string;
  /** Ferry marks its backups here, so the reconciler can recognise them. Max 1024 characters. */
  readonly description?: string;
  readonly requireConsistency?: boolean;
  /** Force the non-hybrid (live or cold) path on cluster level 4.7. */
  readonly legacy?: boolean;
}

export function backupOps(api: EngineApi) {
  const base = (vmId: string) => `/vms/${seg(vmId)}/backups`;
  const backups = {
    /** POST /vms/{id}/backups. The answer is usually `initializing`; wait with waitForBackupPhase. */
    start(vmId: string, spec: StartBackup, o: CallOptions = {}) {
      const body: Record<string, unknown> = { disks: { disk: spec.diskIds.map((id) => ({ id })) } };
      if (spec.id !== undefined) body.id = spec.id;
      if (spec.fromCheckpointId !== undefined) body.from_checkpoint_id = spec.fromCheckpointId;
      if (spec.description !== undefined) body.description = spec.description;
      return api.json(
        {
          method: "POST",
          path: base(vmId),
          query: {
            require_consistency: spec.requireConsistency === undefined ? undefined : String(spec.requireConsistency),
            legacy: spec.legacy ? "true" : undefined,
          },
          body,
          signal: o.signal,
        },
        Backup,
      );
    },
    get(vmId: string, backupId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `${base(vmId)}/${seg(backupId)}`, signal: o.signal }, Backup);
    },
    list(vmId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: base(vmId), signal: o.signal }, Backups);
    },
    /** The backup's disks; each carries `backup_mode` (full or incremental) while the backup runs. */
    disks(vmId: string, backupId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `${base(vmId)}/${seg(backupId)}/disks`, signal: o.signal }, Disks);
    },
    disk(vmId: string, backupId: string, diskId: string, o: CallOptions = {}) {
      return api.json(
        { method: "GET", path: `${base(vmId)}/${seg(backupId)}/disks/${seg(diskId)}`, signal: o.signal },
        Disk,
      );
    },
    /** POST finalize. 409 while a transfer of the backup is open; see finalizeBackup for the full dance. */
    finalize(vmId: string, backupId: string, o: CallOptions = {}) {
      return api.json(
        { method: "POST", path: `${base(vmId)}/${seg(backupId)}/finalize`, body: {}, signal: o.signal },
        actionResult,
      );
    },
  };

  const cpBase = (vmId: string) => `/vms/${seg(vmId)}/checkpoints`;
  const checkpoints = {
    /** The VM's checkpoint chain, in the engine's (chain) order. */
    list(vmId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: cpBase(vmId), signal: o.signal }, Checkpoints);
    },
    get(vmId: string, checkpointId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `${cpBase(vmId)}/${seg(checkpointId)}`, signal: o.signal }, Checkpoint);
    },
    disks(vmId: string, checkpointId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `${cpBase(vmId)}/${seg(checkpointId)}/disks`, signal: o.signal }, Disks);
    },
    /** DELETE only; the removal is asynchronous, wait with waitForCheckpointGone (or use deleteCheckpoint). */
    remove(vmId: string, checkpointId: string, o: CallOptions = {}) {
      return api.send({ method: "DELETE", path: `${cpBase(vmId)}/${seg(checkpointId)}`, signal: o.signal });
    },
  };

  return { backups, checkpoints };
}
