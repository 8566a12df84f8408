/** VM snapshots, for the snapshot-based backup fallback (ovirt-api.md §10). */
import { Disks, Snapshot, Snapshots } from "./models.ts";
import type { CallOptions } from "./ops-vms.ts";
import type { EngineApi } from "./transport.ts";

const seg = encodeURIComponent;

export interface CreateSnapshot {
  readonly description: string;
  /** Only these disks; `[]` snapshots the configuration only; omitted = every disk. */
  readonly diskIds?: readonly string[];
}

export function snapshotOps(api: EngineApi) {
  const base = (vmId: string) => `/vms/${seg(vmId)}/snapshots`;
  return {
    /** Always without memory (`persist_memorystate` defaults to true and pauses the VM longer). */
    create(vmId: string, spec: CreateSnapshot, o: CallOptions = {}) {
      const body: Record<string, unknown> = { description: spec.description, persist_memorystate: "false" };
      if (spec.diskIds !== undefined) {
        body.disk_attachments = { disk_attachment: spec.diskIds.map((id) => ({ disk: { id } })) };
      }
      return api.json({ method: "POST", path: base(vmId), body, signal: o.signal }, Snapshot);
    },
    get(vmId: string, snapshotId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `${base(vmId)}/${seg(snapshotId)}`, signal: o.signal }, Snapshot);
    },
    list(vmId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: base(vmId), signal: o.signal }, Snapshots);
    },
    /** The snapshot's disks; `image_id` is the volume id to put in `snapshot.id` of an image transfer. */
    disks(vmId: string, snapshotId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `${base(vmId)}/${seg(snapshotId)}/disks`, signal: o.signal }, Disks);
    },
    /** DELETE (a live merge); wait with waitForSnapshotGone. */
    remove(vmId: string, snapshotId: string, o: CallOptions = {}) {
      return api.send({ method: "DELETE", path: `${base(vmId)}/${seg(snapshotId)}`, signal: o.signal });
    },
  };
}
