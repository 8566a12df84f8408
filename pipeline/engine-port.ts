/**
 * The backup functions' engine port over adapters/ovirt. Every phase wait is the adapter's typed
 * state machine (waits.ts); this layer only adds what a pipeline step needs on top: idempotent
 * "close" operations (a transfer or backup already final, or gone, counts as closed), resuming a
 * backup a redelivery already created, and the port's own deadlines.
 */
import {
  AlreadyFinalizedError,
  BackupFailedError,
  DuplicateEventError,
  DuplicateIdError,
  NotFoundError,
  TransferFailedError,
  deleteCheckpoint,
  isEngineOutage,
  deleteSnapshot,
  finalizeBackup,
  openTransfer,
  takeSnapshot,
  waitForBackupPhase,
  waitForTransferFinished,
  type Backup,
  type EngineClient,
} from "../adapters/ovirt/mod.ts";
import { setTimeout as sleep } from "node:timers/promises";
import type { EngineDisk } from "../domain/backup/decide.ts";
import type { EngineBackup, ReconcileEngine } from "./ports.ts";

export interface EnginePortOptions {
  readonly name: string;
  /** The engine CA for imageio transfers; a function is asked at each use (pipeline/trust.ts: a renewed CA without a restart). */
  readonly caPem?: string | (() => string | undefined) | undefined;
  /** Poll interval of every wait (default: the client's). */
  readonly pollMs?: number | undefined;
  readonly readyTimeoutMs?: number;
  readonly finalizeTimeoutMs?: number;
  readonly transferTimeoutMs?: number;
  /** Seconds an idle download may sit before the engine cancels it (engine default 60). */
  readonly inactivityTimeoutSec?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FINAL_BACKUP = new Set(["succeeded", "failed"]);

function toEngineBackup(b: Backup): EngineBackup {
  return { id: b.id, phase: b.phase, toCheckpointId: b.to_checkpoint_id, description: b.description, ...(b.snapshot?.id ? { snapshotId: b.snapshot.id } : {}) };
}

/** undefined for a 404, the value otherwise. */
async function unlessGone<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

export type EnginePort = ReconcileEngine & { readonly client: EngineClient };

export function createEnginePort(client: EngineClient, o: EnginePortOptions): EnginePort {
  const wait = (timeoutMs: number, signal?: AbortSignal) => ({ intervalMs: o.pollMs, timeoutMs, signal });
  const readyTimeout = o.readyTimeoutMs ?? 300_000;
  const finalizeTimeout = o.finalizeTimeoutMs ?? 300_000;
  const transferTimeout = o.transferTimeoutMs ?? 120_000;

  const port: EnginePort = {
    name: o.name,
    get caPem() {
      return typeof o.caPem === "function" ? o.caPem() : o.caPem;
    },
    client,

    async findVm(nameOrId) {
      const byId = UUID.test(nameOrId) ? await unlessGone(client.vms.get(nameOrId)) : undefined;
      const v = byId ?? (await client.vms.findByName(nameOrId));
      // The host (for concurrency.backupsPerHost) only while the VM runs somewhere.
      return v ? { id: v.id, name: v.name, status: v.status, ...(v.host?.id ? { hostId: v.host.id } : {}) } : undefined;
    },

    vmOvf: (vmId) => client.vms.getOvf(vmId),

    async vmDisks(vmId): Promise<EngineDisk[]> {
      const list = await client.diskAttachments.listWithDisks(vmId);
      return list
        .filter((a) => a.attachment.active !== false)
        .map(({ disk }) => ({
          id: disk.id,
          alias: disk.alias ?? disk.name ?? disk.id,
          format: disk.format ?? "cow",
          qcowVersion: disk.qcow_version,
          backup: disk.backup,
          contentType: disk.content_type,
          storageType: disk.storage_type,
          shareable: disk.shareable,
          provisionedSize: disk.provisioned_size,
          // For concurrency.backupsPerStorageDomain (pipeline/engine-slots.ts).
          storageDomainIds: disk.storage_domains?.map((sd) => sd.id),
        }));
    },

    async checkpoints(vmId) {
      // An engine without the checkpoints collection has no incremental backup (§0): undefined.
      const cps = await unlessGone(client.checkpoints.list(vmId));
      return cps?.map((c) => ({ id: c.id, state: c.state ?? "created", description: c.description }));
    },

    removeCheckpoint: (vmId, cpId) => deleteCheckpoint(client, vmId, cpId, wait(60_000)),

    async startBackup(vmId, spec, signal) {
      try {
        await client.backups.start(vmId, { id: spec.id, description: spec.description, diskIds: spec.diskIds, ...(spec.fromCheckpointId ? { fromCheckpointId: spec.fromCheckpointId } : {}) }, { signal });
      } catch (err) {
        // A redelivery that already created this id goes on with that backup instead of another.
        if (!(err instanceof DuplicateIdError)) throw err;
      }
      return toEngineBackup(await waitForBackupPhase(client, vmId, spec.id, "ready", wait(readyTimeout, signal)));
    },

    async getBackup(vmId, backupId) {
      const b = await unlessGone(client.backups.get(vmId, backupId));
      return b && toEngineBackup(b);
    },

    async listBackups(vmId) {
      return (await client.backups.list(vmId)).map(toEngineBackup);
    },

    async backupDisks(vmId, backupId) {
      return (await client.backups.disks(vmId, backupId)).map((d) => ({ id: d.id, backupMode: d.backup_mode }));
    },

    async finalizeBackup(vmId, backupId, signal) {
      const cur = await port.getBackup(vmId, backupId);
      if (!cur || FINAL_BACKUP.has(cur.phase)) return;
      try {
        await finalizeBackup(client, vmId, backupId, wait(finalizeTimeout, signal));
      } catch (err) {
        // Ended failed or vanished while finalizing: it is closed, which is all a close asks.
        if (err instanceof BackupFailedError || err instanceof AlreadyFinalizedError) return;
        throw err;
      }
    },

    async createDownload(spec, signal) {
      const tuning = { inactivityTimeout: o.inactivityTimeoutSec ?? 120, timeoutPolicy: "cancel" as const };
      const t = await openTransfer(
        client,
        spec.snapshotImageId
          ? { direction: "download", snapshotId: spec.snapshotImageId, ...tuning }
          : { direction: "download", diskId: spec.diskId, ...(spec.backupId ? { backupId: spec.backupId } : {}), ...tuning },
        wait(transferTimeout, signal),
      );
      return { id: t.id, transferUrl: (t.transfer_url ?? t.proxy_url)!, proxyUrl: t.proxy_url };
    },

    async finishTransfer(id, opts = {}) {
      const cur = await unlessGone(client.imageTransfers.get(id));
      if (!cur || cur.phase.startsWith("finished_")) return;
      if (!cur.phase.startsWith("finalizing_") && !cur.phase.startsWith("cancelled")) {
        const ask = opts.cancel ? client.imageTransfers.cancel(id) : client.imageTransfers.finalize(id);
        if ((await unlessGone(ask.then(() => true))) === undefined) return;
      }
      const diskId = cur.image?.id ?? cur.disk?.id ?? "";
      try {
        await waitForTransferFinished(client, id, diskId, wait(finalizeTimeout, opts.signal));
      } catch (err) {
        // finished_failure / finished_cleanup (a cancel) / gone: closed either way.
        if (err instanceof TransferFailedError) return;
        throw err;
      }
    },

    async listTransfers() {
      return (await client.imageTransfers.list()).map((t) => ({ id: t.id, phase: t.phase, diskId: t.image?.id ?? t.disk?.id }));
    },

    async listVmIds() {
      return (await client.vms.list()).map((v) => v.id);
    },

    async listSnapshotIds(vmId) {
      return (await client.snapshots.list(vmId)).map((s) => s.id);
    },

    async createSnapshot(vmId, spec, signal) {
      const s = await takeSnapshot(client, vmId, { description: spec.description, diskIds: spec.diskIds }, wait(readyTimeout, signal));
      const disks = await client.snapshots.disks(vmId, s.id, { signal });
      return { id: s.id, disks: disks.filter((d) => d.image_id).map((d) => ({ id: d.id, imageId: d.image_id! })) };
    },

    removeSnapshot: (vmId, snapshotId, signal) => deleteSnapshot(client, vmId, snapshotId, wait(finalizeTimeout, signal)),

    async postEvent(e) {
      try {
        await client.events.post({ description: e.description, severity: e.severity, origin: "ferry", customId: e.customId, ...(e.vmId ? { vmId: e.vmId } : {}) });
      } catch (err) {
        if (err instanceof DuplicateEventError) return; // posted before: a redelivery
        throw err;
      }
    },
  };
  return port;
}

export interface OutagePatience {
  /** How long one call waits for the engine to come back (from its first outage error). */
  readonly budgetMs: number;
  /** Longest pause between tries (the backoff doubles from 1 s up to this). Default 30 s. */
  readonly maxDelayMs?: number;
  readonly signal?: AbortSignal | undefined;
  /** Each pause (for the log). */
  readonly onWait?: (o: { err: unknown; waitedMs: number; delayMs: number; call: string }) => void;
}

/**
 * The same port, but a call that meets an engine outage (adapters/ovirt `isEngineOutage`:
 * unreachable, 502/503/504) is tried again with capped backoff until the engine answers or
 * `budgetMs` has passed since its first outage error; then that error is thrown. An outage
 * costs time, not delivery attempts: the run goes on where it stood (its engine backup, its
 * placed disks, its VM lease renewed by the caller's heartbeat) once the engine is back.
 * Every call of a port is safe to repeat: client-chosen backup ids, idempotent closes, reads;
 * a transfer whose POST reached an engine that then failed to answer is cancelled by the
 * engine's inactivity timeout (timeoutPolicy cancel).
 */
export function withOutagePatience<T extends object>(port: T, o: OutagePatience): T {
  const maxDelay = o.maxDelayMs ?? 30_000;
  return new Proxy(port, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      return async (...args: unknown[]) => {
        let first: number | undefined;
        for (let delay = Math.min(1_000, maxDelay); ; delay = Math.min(maxDelay, delay * 2)) {
          try {
            return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } catch (err) {
            if (!isEngineOutage(err) || o.signal?.aborted) throw err;
            const now = Date.now();
            first ??= now;
            const left = first + o.budgetMs - now;
            if (left <= 0) throw err;
            const pause = Math.min(delay, left);
            o.onWait?.({ err, waitedMs: now - first, delayMs: pause, call: String(prop) });
            await sleep(pause, undefined, o.signal ? { signal: o.signal } : {}).catch(() => {
              throw err;
            });
          }
        }
      };
    },
  });
}
