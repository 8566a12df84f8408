/** Image transfers, engine side (ovirt-api.md §6). Always `format: raw` (the NBD backend). */
import { actionResult } from "./json.ts";
import { ImageTransfer, ImageTransfers } from "./models.ts";
import type { CallOptions } from "./ops-vms.ts";
import type { EngineApi } from "./transport.ts";

const seg = encodeURIComponent;

interface TransferTuning {
  /** Seconds without a client connection before the engine applies timeout_policy (engine default 60; 0 disables). */
  readonly inactivityTimeout?: number;
  readonly timeoutPolicy?: "legacy" | "pause" | "cancel";
  readonly hostId?: string;
}

/** A download of a disk inside a backup, of a disk outside a backup (VM down), or of one snapshot volume. */
export type DownloadSpec = TransferTuning &
  (
    | { readonly diskId: string; readonly backupId?: string; readonly snapshotId?: never; readonly shallow?: boolean }
    | {
        /** The disk-snapshot (volume) id, i.e. the snapshot disk's `image_id`, not the VM snapshot id. */
        readonly snapshotId: string;
        readonly diskId?: never;
        readonly backupId?: never;
        readonly shallow?: boolean;
      }
  );

export type UploadSpec = TransferTuning & { readonly diskId: string };

function tuning(t: TransferTuning): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (t.inactivityTimeout !== undefined) out.inactivity_timeout = String(t.inactivityTimeout);
  if (t.timeoutPolicy !== undefined) out.timeout_policy = t.timeoutPolicy;
  if (t.hostId !== undefined) out.host = { id: t.hostId };
  return out;
}

export function transferOps(api: EngineApi) {
  const action = (id: string, name: string, o: CallOptions) =>
    api.json({ method: "POST", path: `/imagetransfers/${seg(id)}/${name}`, body: {}, signal: o.signal }, actionResult);

  return {
    /** POST /imagetransfers for a download; wait for `transferring` with openTransfer/waitForTransfer. */
    createDownload(spec: DownloadSpec, o: CallOptions = {}) {
      const target: Record<string, unknown> =
        spec.snapshotId !== undefined
          ? { snapshot: { id: spec.snapshotId } }
          : { disk: { id: spec.diskId }, ...(spec.backupId ? { backup: { id: spec.backupId } } : {}) };
      const body = {
        ...target,
        direction: "download",
        format: "raw",
        ...(spec.shallow === undefined ? {} : { shallow: String(spec.shallow) }),
        ...tuning(spec),
      };
      return api.json({ method: "POST", path: "/imagetransfers", body, signal: o.signal }, ImageTransfer);
    },

    /** POST /imagetransfers for an upload into an existing (new, `ok`) disk. Timeout policy defaults to cancel. */
    createUpload(spec: UploadSpec, o: CallOptions = {}) {
      const body = {
        disk: { id: spec.diskId },
        direction: "upload",
        format: "raw",
        ...tuning({ timeoutPolicy: "cancel", ...spec }),
      };
      return api.json({ method: "POST", path: "/imagetransfers", body, signal: o.signal }, ImageTransfer);
    },

    get(id: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `/imagetransfers/${seg(id)}`, signal: o.signal }, ImageTransfer);
    },

    list(o: CallOptions = {}) {
      return api.json({ method: "GET", path: "/imagetransfers", signal: o.signal }, ImageTransfers);
    },

    /** After all data moved and the imageio connections are closed. */
    finalize: (id: string, o: CallOptions = {}) => action(id, "finalize", o),
    /** For an upload the engine then deletes the disk. */
    cancel: (id: string, o: CallOptions = {}) => action(id, "cancel", o),
    /** Keepalive of the engine entity only; it does not extend the imageio ticket. */
    extend: (id: string, o: CallOptions = {}) => action(id, "extend", o),
  };
}
