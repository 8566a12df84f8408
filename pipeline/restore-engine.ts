/**
 * The restore side's engine port (ovirt-api.md §8) over adapters/ovirt: look up the target's
 * clusters, storage domains and vNIC profiles, create and remove disks, open and close upload
 * and download transfers, import a VM from an OVF, attach disks, map NICs, power the VM on and
 * off. Every wait is the adapter's typed state machine; closes are idempotent (gone = done).
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  DiskTimeoutError,
  DuplicateEventError,
  NotFoundError,
  TransferFailedError,
  createDisk,
  finalizeTransfer,
  openTransfer,
  waitForTransferFinished,
  waitForVmStatus,
  type AttachDisk,
  type EngineClient,
} from "../adapters/ovirt/mod.ts";

export interface TargetVm {
  readonly id: string;
  readonly name: string;
  readonly status: string;
}

export interface RestoreEngine {
  readonly name: string;
  readonly caPem?: string | undefined;
  /** TLS is verified with a known CA (or insecure mode was chosen explicitly). */
  readonly trusted: boolean;
  findCluster(name: string): Promise<{ id: string; name: string } | undefined>;
  findStorageDomain(name: string): Promise<{ id: string; name: string; available?: number | undefined } | undefined>;
  /** Every vNIC profile with the name of its network. */
  vnicProfiles(): Promise<{ id: string; name: string; network: string }[]>;
  findVm(name: string): Promise<TargetVm | undefined>;
  getVm(id: string): Promise<TargetVm | undefined>;
  /** A new sparse qcow2 disk (incremental backup enabled), waited until `ok`. */
  createDisk(o: { id: string; alias: string; provisionedSize: number; initialSize: number; storageDomainId: string; signal?: AbortSignal | undefined }): Promise<void>;
  /** Remove a disk; one already gone counts as removed. */
  removeDisk(id: string): Promise<void>;
  /** An upload (or download) transfer of a disk, waited until `transferring`. */
  openTransfer(diskId: string, direction: "upload" | "download", signal?: AbortSignal): Promise<{ id: string; transferUrl: string }>;
  /** Finalize and wait for `finished_success` (and, for an upload, the disk `ok`). */
  finalizeTransfer(id: string, diskId: string, direction: "upload" | "download", signal?: AbortSignal): Promise<void>;
  /** Cancel a transfer (an upload's disk is then removed by the engine); one already gone is fine. */
  cancelTransfer(id: string): Promise<void>;
  /** Cancel a transfer that is still active and wait until it is over (finished, or gone), so its disk is unlocked. */
  closeTransfer(id: string): Promise<void>;
  /**
   * Close every transfer of a disk that is not over. A transfer id is the engine's, known only
   * once the POST returns: a worker killed in between never journaled it, so cleanup asks the engine.
   */
  closeTransfersOf(diskId: string): Promise<void>;
  createVmFromOvf(o: { clusterId: string; name: string; ovf: string; signal?: AbortSignal | undefined }): Promise<TargetVm>;
  attachedDiskIds(vmId: string): Promise<string[]>;
  attachDisk(vmId: string, a: AttachDisk): Promise<void>;
  nics(vmId: string): Promise<{ id: string; name: string; vnicProfileId?: string | undefined }[]>;
  setNicProfile(vmId: string, nicId: string, vnicProfileId: string | null): Promise<void>;
  /** Start and wait for `up` (VmStatusError when it ends `down`, timeout after `timeoutMs`). */
  startVm(vmId: string, o: { timeoutMs: number; signal?: AbortSignal | undefined }): Promise<void>;
  /** Power off and wait for `down`. */
  stopVm(vmId: string, o: { timeoutMs: number }): Promise<void>;
  /** Remove a VM and its disks; one already gone counts as removed. */
  removeVm(vmId: string): Promise<void>;
  postEvent(o: { description: string; severity: "normal" | "warning" | "alert" | "error"; customId: number; vmId?: string | undefined }): Promise<void>;
}

async function gone<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/** `caPem`: the engine CA, or a function asked at each use (pipeline/trust.ts: a renewed CA without a restart). */
export function createRestoreEngine(client: EngineClient, o: { name: string; caPem?: string | (() => string | undefined) | undefined; insecure?: boolean | undefined; pollMs?: number | undefined }): RestoreEngine {
  const ca = () => (typeof o.caPem === "function" ? o.caPem() : o.caPem);
  const wait = (timeoutMs?: number, signal?: AbortSignal) => ({ intervalMs: o.pollMs, ...(timeoutMs ? { timeoutMs } : {}), signal });
  const vm = (v: { id: string; name: string; status: string }): TargetVm => ({ id: v.id, name: v.name, status: v.status });
  return {
    name: o.name,
    get caPem() {
      return ca();
    },
    get trusted() {
      return !!ca() || o.insecure === true;
    },
    async findCluster(name) {
      const c = await client.clusters.findByName(name);
      return c && { id: c.id, name: c.name };
    },
    async findStorageDomain(name) {
      const sd = await client.storageDomains.findByName(name);
      return sd && { id: sd.id, name: sd.name, available: sd.available };
    },
    async vnicProfiles() {
      const [profiles, networks] = await Promise.all([client.vnicProfiles.list(), client.networks.list()]);
      const netName = new Map(networks.map((n) => [n.id, n.name]));
      return profiles.map((p) => ({ id: p.id, name: p.name, network: (p.network && netName.get(p.network.id)) ?? "" }));
    },
    async findVm(name) {
      const v = await client.vms.findByName(name);
      return v && vm(v);
    },
    async getVm(id) {
      const v = await gone(client.vms.get(id));
      return v && vm(v);
    },
    async createDisk(d) {
      await createDisk(
        client,
        {
          id: d.id, name: d.alias, provisionedSize: d.provisionedSize, initialSize: d.initialSize, format: "cow", sparse: true,
          backup: "incremental", contentType: "data", storageDomain: { id: d.storageDomainId }, description: "restored by Ferry",
        },
        wait(undefined, d.signal),
      );
    },
    async removeDisk(id) {
      // A disk still being created or written is locked: wait for it (bounded), then remove it.
      const deadline = performance.now() + 300_000;
      for (;;) {
        const d = await gone(client.disks.get(id));
        if (!d) return;
        if (d.status !== "locked") break;
        if (performance.now() > deadline) throw new DiskTimeoutError(id, "locked");
        await sleep(o.pollMs ?? 1000);
      }
      await gone(client.disks.remove(id));
    },
    async openTransfer(diskId, direction, signal) {
      const spec = { diskId, inactivityTimeout: 120, timeoutPolicy: "cancel" as const };
      const t = await openTransfer(client, direction === "upload" ? { direction, ...spec } : { direction, ...spec }, wait(120_000, signal));
      return { id: t.id, transferUrl: (t.transfer_url ?? t.proxy_url)! };
    },
    async finalizeTransfer(id, diskId, direction, signal) {
      await finalizeTransfer(client, { id, direction }, { ...wait(undefined, signal), diskId });
    },
    async cancelTransfer(id) {
      const t = await gone(client.imageTransfers.get(id));
      if (!t || t.phase.startsWith("finished_") || t.phase.startsWith("cancelled") || t.phase.startsWith("finalizing_")) return;
      try {
        await gone(client.imageTransfers.cancel(id));
      } catch (err) {
        if (!(err instanceof TransferFailedError)) throw err;
      }
    },
    async closeTransfer(id) {
      const t = await gone(client.imageTransfers.get(id));
      if (!t || t.phase.startsWith("finished_")) return;
      if (!t.phase.startsWith("finalizing_") && !t.phase.startsWith("cancelled")) await gone(client.imageTransfers.cancel(id));
      try {
        // A finalize or cancel in progress holds the disk locked until it is over.
        await waitForTransferFinished(client, id, t.image?.id ?? t.disk?.id ?? "", wait(300_000));
      } catch (err) {
        if (!(err instanceof TransferFailedError)) throw err; // ended failed or cancelled: over all the same
      }
    },
    async closeTransfersOf(diskId) {
      for (const t of await client.imageTransfers.list()) {
        if ((t.image?.id ?? t.disk?.id) === diskId && !t.phase.startsWith("finished_")) await this.closeTransfer(t.id);
      }
    },
    async createVmFromOvf(v) {
      const created = await client.vms.createFromOvf({ cluster: { id: v.clusterId }, name: v.name, ovf: v.ovf, regenerateIds: true }, { signal: v.signal });
      return vm(created);
    },
    async attachedDiskIds(vmId) {
      return (await client.diskAttachments.list(vmId)).map((a) => a.disk.id);
    },
    async attachDisk(vmId, a) {
      await client.diskAttachments.attach(vmId, a);
    },
    async nics(vmId) {
      return (await client.nics.list(vmId)).map((n) => ({ id: n.id, name: n.name, vnicProfileId: n.vnic_profile?.id }));
    },
    async setNicProfile(vmId, nicId, vnicProfileId) {
      await client.nics.update(vmId, nicId, { vnicProfileId });
    },
    async startVm(vmId, s) {
      await client.vms.start(vmId, { signal: s.signal });
      await waitForVmStatus(client, vmId, "up", wait(s.timeoutMs, s.signal));
    },
    async stopVm(vmId, s) {
      const cur = await gone(client.vms.get(vmId));
      if (!cur || cur.status === "down") return;
      await client.vms.stop(vmId, { force: true });
      await waitForVmStatus(client, vmId, "down", wait(s.timeoutMs));
    },
    async removeVm(vmId) {
      await gone(client.vms.remove(vmId));
    },
    async postEvent(e) {
      try {
        await client.events.post({ description: e.description, severity: e.severity, origin: "ferry", customId: e.customId, ...(e.vmId ? { vmId: e.vmId } : {}) });
      } catch (err) {
        if (!(err instanceof DuplicateEventError)) throw err; // posted before: a redelivery
      }
    },
  };
}

export const newDiskId = (): string => randomUUID();
