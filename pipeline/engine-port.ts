/**
 * BackupEngine over the engine REST client (adapters/ovirt). Each wait is one loop with a
 * monotonic deadline and a switch over the phases (ovirt-api.md §5.2, §6.3, §6.6, §10).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { TransientError, PermanentError } from "../contracts/errors.ts";
import type { EngineClient } from "../adapters/ovirt/client.ts";
import type { BackupEngine, EngineBackup } from "./ports.ts";
import type { EngineDisk } from "../domain/backup/decide.ts";

export class EngineWaitTimeoutError extends TransientError {
  constructor(what: string, id: string, phase: string, seconds: number) {
    super("ENGINE_WAIT_TIMEOUT", `${what} ${id} stayed in '${phase}' for ${seconds} s`, { id, phase });
  }
}

export class EnginePhaseError extends TransientError {
  constructor(what: string, id: string, phase: string) {
    super("ENGINE_PHASE_FAILED", `${what} ${id} ended in '${phase}'`, { id, phase });
  }
}

export interface EnginePortOptions {
  readonly name: string;
  readonly caPem?: string | undefined;
  readonly pollMs?: number;
  readonly readyTimeoutMs?: number;
  readonly finalizeTimeoutMs?: number;
  readonly transferTimeoutMs?: number;
  /** Seconds an idle download may sit before the engine cancels it (engine default 60). */
  readonly inactivityTimeoutSec?: number;
}

function status(err: unknown): number | undefined {
  const s = err && typeof err === "object" && "status" in err ? (err as { status: unknown }).status : undefined;
  return typeof s === "number" ? s : undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function createEnginePort(client: EngineClient, o: EnginePortOptions): BackupEngine & {
  listTransfers(): Promise<{ id: string; phase: string; diskId?: string | undefined }[]>;
  client: EngineClient;
} {
  const poll = o.pollMs ?? 500;
  const readyTimeout = o.readyTimeoutMs ?? 300_000;
  const finalizeTimeout = o.finalizeTimeoutMs ?? 300_000;
  const transferTimeout = o.transferTimeoutMs ?? 120_000;

  async function waitBackup(vmId: string, id: string, done: (phase: string) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<EngineBackup | undefined> {
    const deadline = performance.now() + timeoutMs;
    let phase = "?";
    for (;;) {
      let b;
      try {
        b = await client.backups.get(vmId, id, { signal });
      } catch (err) {
        if (status(err) === 404) return undefined;
        throw err;
      }
      phase = b.phase;
      if (done(phase)) return { id: b.id, phase, toCheckpointId: b.to_checkpoint_id, description: b.description };
      if (performance.now() > deadline) throw new EngineWaitTimeoutError("backup", id, phase, Math.round(timeoutMs / 1000));
      await sleep(poll, undefined, { signal });
    }
  }

  const port = {
    name: o.name,
    caPem: o.caPem,
    client,

    async findVm(nameOrId: string) {
      if (UUID.test(nameOrId)) {
        try {
          const v = await client.vms.get(nameOrId);
          return { id: v.id, name: v.name, status: v.status };
        } catch (err) {
          if (status(err) !== 404) throw err;
        }
      }
      const v = await client.vms.findByName(nameOrId);
      return v ? { id: v.id, name: v.name, status: v.status } : undefined;
    },

    vmOvf: (vmId: string) => client.vms.getOvf(vmId),

    async vmDisks(vmId: string): Promise<EngineDisk[]> {
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
        }));
    },

    async checkpoints(vmId: string) {
      const cps = await client.checkpoints.list(vmId);
      return cps.map((c) => ({ id: c.id, state: c.state ?? "created", description: c.description }));
    },

    async removeCheckpoint(vmId: string, cpId: string) {
      try {
        await client.checkpoints.remove(vmId, cpId);
      } catch (err) {
        if (status(err) === 404 || (status(err) === 400 && /doesn't exist/i.test(String((err as { detail?: string }).detail)))) return;
        throw err;
      }
      const deadline = performance.now() + 60_000;
      while (performance.now() < deadline) {
        try {
          await client.checkpoints.get(vmId, cpId);
        } catch (err) {
          if (status(err) === 404) return;
          throw err;
        }
        await sleep(poll);
      }
    },

    async startBackup(vmId: string, spec: { id: string; fromCheckpointId?: string | undefined; description: string; diskIds: string[] }, signal?: AbortSignal) {
      let existing: EngineBackup | undefined;
      try {
        await client.backups.start(vmId, { id: spec.id, description: spec.description, diskIds: spec.diskIds, ...(spec.fromCheckpointId ? { fromCheckpointId: spec.fromCheckpointId } : {}) }, { signal });
      } catch (err) {
        // A redelivery that already created this id: use the existing backup instead of another.
        if (status(err) === 400 && /already exists/i.test(String((err as { detail?: string }).detail))) {
          existing = await port.getBackup(vmId, spec.id);
          if (!existing) throw err;
        } else throw err;
      }
      const b = await waitBackup(vmId, spec.id, (p) => p === "ready" || p === "failed" || p === "succeeded", readyTimeout, signal);
      if (!b) throw new EnginePhaseError("backup", spec.id, "removed");
      if (b.phase === "succeeded") throw new EnginePhaseError("backup", spec.id, b.phase);
      return b;
    },

    async getBackup(vmId: string, backupId: string) {
      try {
        const b = await client.backups.get(vmId, backupId);
        return { id: b.id, phase: b.phase, toCheckpointId: b.to_checkpoint_id, description: b.description };
      } catch (err) {
        if (status(err) === 404) return undefined;
        throw err;
      }
    },

    async listBackups(vmId: string) {
      return (await client.backups.list(vmId)).map((b) => ({ id: b.id, phase: b.phase, toCheckpointId: b.to_checkpoint_id, description: b.description }));
    },

    async backupDisks(vmId: string, backupId: string) {
      return (await client.backups.disks(vmId, backupId)).map((d) => ({ id: d.id, backupMode: d.backup_mode }));
    },

    async finalizeBackup(vmId: string, backupId: string, signal?: AbortSignal) {
      const cur = await port.getBackup(vmId, backupId);
      if (!cur || cur.phase === "succeeded" || cur.phase === "failed") return;
      if (cur.phase !== "finalizing") {
        const deadline = performance.now() + 60_000;
        for (;;) {
          try {
            await client.backups.finalize(vmId, backupId, { signal });
            break;
          } catch (err) {
            const s = status(err);
            if (s === 404) return;
            // 400 "already in ... phase": someone finalized it; 409: a transfer is still closing.
            if (s === 400 && /already/i.test(String((err as { detail?: string }).detail))) break;
            if (s !== 409 || performance.now() > deadline) throw err;
            await sleep(poll, undefined, { signal });
          }
        }
      }
      await waitBackup(vmId, backupId, (p) => p === "succeeded" || p === "failed", finalizeTimeout, signal);
    },

    async createDownload(spec: { diskId: string; backupId?: string | undefined; snapshotImageId?: string | undefined }, signal?: AbortSignal) {
      const tuning = { inactivityTimeout: o.inactivityTimeoutSec ?? 120, timeoutPolicy: "cancel" as const };
      const t = spec.snapshotImageId
        ? await client.imageTransfers.createDownload({ snapshotId: spec.snapshotImageId, ...tuning }, { signal })
        : await client.imageTransfers.createDownload({ diskId: spec.diskId, ...(spec.backupId ? { backupId: spec.backupId } : {}), ...tuning }, { signal });
      const deadline = performance.now() + transferTimeout;
      let cur = t;
      for (;;) {
        switch (cur.phase) {
          case "transferring":
            if (!cur.transfer_url && !cur.proxy_url) break;
            return { id: cur.id, transferUrl: (cur.transfer_url ?? cur.proxy_url)!, proxyUrl: cur.proxy_url };
          case "initializing":
          case "resuming":
          case "unknown":
            break;
          case "paused_system":
          case "paused_user":
            await client.imageTransfers.cancel(cur.id).catch(() => undefined);
            throw new EnginePhaseError("image transfer", cur.id, cur.phase);
          default:
            // finished_failure, cancelled_*, finalizing_*: the engine gave up (e.g. a missing bitmap).
            await port.finishTransfer(cur.id).catch(() => undefined);
            throw new EnginePhaseError("image transfer", cur.id, cur.phase);
        }
        if (performance.now() > deadline) {
          await client.imageTransfers.cancel(cur.id).catch(() => undefined);
          throw new EngineWaitTimeoutError("image transfer", cur.id, cur.phase, Math.round(transferTimeout / 1000));
        }
        await sleep(poll, undefined, { signal });
        try {
          cur = await client.imageTransfers.get(cur.id, { signal });
        } catch (err) {
          if (status(err) === 404) throw new EnginePhaseError("image transfer", t.id, "removed");
          throw err;
        }
      }
    },

    async finishTransfer(id: string, opts: { cancel?: boolean; signal?: AbortSignal } = {}) {
      let cur;
      try {
        cur = await client.imageTransfers.get(id);
      } catch (err) {
        if (status(err) === 404) return;
        throw err;
      }
      if (cur.phase.startsWith("finished_") || cur.phase === "unknown") return;
      if (!cur.phase.startsWith("finalizing_") && !cur.phase.startsWith("cancelled")) {
        try {
          if (opts.cancel) await client.imageTransfers.cancel(id);
          else await client.imageTransfers.finalize(id);
        } catch (err) {
          if (status(err) !== 404) throw err;
          return;
        }
      }
      const deadline = performance.now() + finalizeTimeout;
      for (;;) {
        try {
          cur = await client.imageTransfers.get(id);
        } catch (err) {
          if (status(err) === 404) return;
          throw err;
        }
        if (cur.phase.startsWith("finished_")) return;
        if (performance.now() > deadline) throw new EngineWaitTimeoutError("image transfer", id, cur.phase, Math.round(finalizeTimeout / 1000));
        await sleep(poll);
      }
    },

    async listTransfers() {
      return (await client.imageTransfers.list()).map((t) => ({ id: t.id, phase: t.phase, diskId: t.image?.id ?? t.disk?.id }));
    },

    async createSnapshot(vmId: string, spec: { description: string; diskIds: string[] }, signal?: AbortSignal) {
      const s = await client.snapshots.create(vmId, { description: spec.description, diskIds: spec.diskIds }, { signal });
      const deadline = performance.now() + readyTimeout;
      for (;;) {
        const cur = await client.snapshots.get(vmId, s.id, { signal });
        if (cur.snapshot_status === "ok") break;
        if (performance.now() > deadline) throw new EngineWaitTimeoutError("snapshot", s.id, cur.snapshot_status ?? "?", Math.round(readyTimeout / 1000));
        await sleep(poll, undefined, { signal });
      }
      const disks = await client.snapshots.disks(vmId, s.id, { signal });
      return { id: s.id, disks: disks.filter((d) => d.image_id).map((d) => ({ id: d.id, imageId: d.image_id! })) };
    },

    async removeSnapshot(vmId: string, snapshotId: string, signal?: AbortSignal) {
      try {
        await client.snapshots.remove(vmId, snapshotId, { signal });
      } catch (err) {
        if (status(err) === 404) return;
        throw err;
      }
      const deadline = performance.now() + finalizeTimeout;
      for (;;) {
        try {
          await client.snapshots.get(vmId, snapshotId, { signal });
        } catch (err) {
          if (status(err) === 404) return;
          throw err;
        }
        if (performance.now() > deadline) throw new EngineWaitTimeoutError("snapshot removal", snapshotId, "locked", Math.round(finalizeTimeout / 1000));
        await sleep(poll, undefined, { signal });
      }
    },

    async postEvent(e: { description: string; severity: "normal" | "warning" | "alert" | "error"; customId: number; vmId?: string | undefined }) {
      try {
        await client.events.post({ description: e.description, severity: e.severity, origin: "ferry", customId: e.customId, ...(e.vmId ? { vmId: e.vmId } : {}) });
      } catch (err) {
        if (status(err) === 400 && /custom id already exists/i.test(String((err as { detail?: string }).detail))) return;
        throw err;
      }
    },
  };
  return port;
}

export { PermanentError };
