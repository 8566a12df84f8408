/**
 * Image transfer waits (ovirt-api.md §6.6), explicit state machines (style.md §7): one loop per
 * wait, a monotonic deadline, a switch over every phase, cleanup on every way out.
 */
import type { EngineClient } from "./client.ts";
import { NotFoundError, TransferFailedError, TransferTimeoutError } from "./errors.ts";
import type { Disk, ImageTransfer, TransferPhase } from "./models.ts";
import type { DownloadSpec, UploadSpec } from "./ops-transfers.ts";
import { waitForDiskOk } from "./entity-waits.ts";
import { WAIT_DEFAULTS, bestEffort, clock, isPollHiccup, type WaitOptions } from "./wait-clock.ts";

// ---- image transfers (ovirt-api.md §6.6) -------------------------------------------------------

/**
 * The create algorithm: poll until `transferring`. 404 or finished_failure → fail;
 * paused_system or any other phase → cancel, fail. A timeout or an abort also cancels.
 */
export async function waitForTransferReady(
  engine: EngineClient,
  transferId: string,
  o: WaitOptions = {},
): Promise<ImageTransfer> {
  const t = clock(engine, o, WAIT_DEFAULTS.transferReadyMs);
  let phase = "unknown";
  let lastError: unknown;
  let done = false;
  let cancelOnExit = true;
  try {
    for (;;) {
      let transfer: ImageTransfer | undefined;
      try {
        transfer = await engine.imageTransfers.get(transferId, { signal: o.signal });
      } catch (err) {
        if (err instanceof NotFoundError) {
          cancelOnExit = false;
          throw new TransferFailedError(transferId, phase, "the transfer was removed");
        }
        if (!isPollHiccup(err)) throw err;
        lastError = err;
      }
      if (transfer) {
        phase = transfer.phase;
        switch (transfer.phase as TransferPhase) {
          case "transferring":
            if (!transfer.transfer_url && !transfer.proxy_url) {
              throw new TransferFailedError(transferId, phase, "transferring without transfer_url or proxy_url");
            }
            done = true;
            return transfer;
          case "initializing":
            break;
          case "finished_failure":
          case "finished_success":
          case "finished_cleanup":
            cancelOnExit = false;
            throw new TransferFailedError(transferId, phase, "the transfer ended before it started");
          case "paused_system":
            throw new TransferFailedError(transferId, phase, "the engine paused the transfer (ticket or imageio failure)");
          case "unknown":
          case "resuming":
          case "paused_user":
          case "cancelled":
          case "cancelled_system":
          case "cancelled_user":
          case "finalizing_success":
          case "finalizing_failure":
          case "finalizing_cleanup":
          default:
            throw new TransferFailedError(transferId, phase, "unexpected phase while waiting for transferring");
        }
      }
      if (t.expired()) throw new TransferTimeoutError(transferId, phase, "transferring", { cause: lastError });
      await t.pause();
    }
  } finally {
    if (!done && cancelOnExit) await bestEffort((signal) => engine.imageTransfers.cancel(transferId, { signal }));
  }
}

export interface TransferOutcome {
  readonly phase: "finished_success";
  /** The last transfer entity, or undefined when the engine had already removed it (old engines; the disk said ok). */
  readonly transfer: ImageTransfer | undefined;
}

/**
 * The finalize algorithm (after POST finalize): poll until finished_success. finished_failure or
 * finished_cleanup → fail. 404 → the entity is gone, so the disk decides: ok → success,
 * 404 → removed → fail, any other status → fail. Nothing to clean up: finalize was already asked.
 */
export async function waitForTransferFinished(
  engine: EngineClient,
  transferId: string,
  diskId: string,
  o: WaitOptions = {},
): Promise<TransferOutcome> {
  const t = clock(engine, o, WAIT_DEFAULTS.transferFinishedMs);
  let phase = "finalizing_success";
  let lastError: unknown;
  for (;;) {
    let transfer: ImageTransfer | undefined;
    let gone = false;
    try {
      transfer = await engine.imageTransfers.get(transferId, { signal: o.signal });
    } catch (err) {
      if (err instanceof NotFoundError) gone = true;
      else if (isPollHiccup(err)) lastError = err;
      else throw err;
    }
    if (gone) {
      let disk: Disk | undefined;
      try {
        disk = await engine.disks.get(diskId, { signal: o.signal });
      } catch (err) {
        if (err instanceof NotFoundError) throw new TransferFailedError(transferId, phase, "the disk was removed");
        if (!isPollHiccup(err)) throw err;
        lastError = err;
      }
      if (disk) {
        if (disk.status === "ok") return { phase: "finished_success", transfer: undefined };
        throw new TransferFailedError(transferId, phase, `the transfer is gone and the disk is ${disk.status ?? "unknown"}`);
      }
    }
    if (transfer) {
      phase = transfer.phase;
      switch (transfer.phase as TransferPhase) {
        case "finished_success":
          return { phase: "finished_success", transfer };
        case "finished_failure":
          throw new TransferFailedError(transferId, phase, "the engine failed the transfer");
        case "finished_cleanup":
          throw new TransferFailedError(transferId, phase, "the transfer was cancelled");
        case "finalizing_success":
        case "transferring":
        case "initializing":
        case "resuming":
        case "unknown":
        case "paused_system":
        case "paused_user":
        case "cancelled":
        case "cancelled_system":
        case "cancelled_user":
        case "finalizing_failure":
        case "finalizing_cleanup":
        default:
          // On its way to a finished_* phase (or finalize not picked up yet).
          break;
      }
    }
    if (t.expired()) throw new TransferTimeoutError(transferId, phase, "finished_success", { cause: lastError });
    await t.pause();
  }
}

/** waitForTransferReady or waitForTransferFinished, by target. */
export function waitForTransfer(
  engine: EngineClient,
  transferId: string,
  target: { until: "transferring" } | { until: "finished"; diskId: string },
  o: WaitOptions = {},
): Promise<ImageTransfer | TransferOutcome> {
  return target.until === "transferring"
    ? waitForTransferReady(engine, transferId, o)
    : waitForTransferFinished(engine, transferId, target.diskId, o);
}

export type OpenTransferSpec =
  | ({ readonly direction: "download" } & DownloadSpec)
  | ({ readonly direction: "upload" } & UploadSpec);

/**
 * POST /imagetransfers and wait for `transferring` (cancelled on every failure). The answer
 * carries `transfer_url` and `proxy_url`: secrets, pass them to openImageio, never log them.
 */
export async function openTransfer(
  engine: EngineClient,
  spec: OpenTransferSpec,
  o: WaitOptions = {},
): Promise<ImageTransfer> {
  const created =
    spec.direction === "download"
      ? await engine.imageTransfers.createDownload(spec, { signal: o.signal })
      : await engine.imageTransfers.createUpload(spec, { signal: o.signal });
  // The session starts synchronously for an existing disk, so the POST answer may already be ready.
  if (created.phase === "transferring" && (created.transfer_url || created.proxy_url)) return created;
  return waitForTransferReady(engine, created.id, o);
}

/**
 * POST finalize, then the finalize algorithm. For an upload it also waits for the disk to be
 * `ok`, so the disk can be attached right away. `diskId` defaults to the transfer's `image.id`.
 */
export async function finalizeTransfer(
  engine: EngineClient,
  transfer: Pick<ImageTransfer, "id"> & Partial<Pick<ImageTransfer, "direction" | "image" | "disk">>,
  o: WaitOptions & { diskId?: string } = {},
): Promise<TransferOutcome> {
  const diskId = o.diskId ?? transfer.image?.id ?? transfer.disk?.id;
  if (!diskId) throw new TransferFailedError(transfer.id, "unknown", "finalizeTransfer needs the disk id");
  await engine.imageTransfers.finalize(transfer.id, { signal: o.signal });
  const outcome = await waitForTransferFinished(engine, transfer.id, diskId, o);
  if (transfer.direction === "upload") await waitForDiskOk(engine, diskId, o);
  return outcome;
}
