/**
 * Move one disk: open a download transfer (of the engine backup or of the fallback snapshot),
 * stream it into a new qcow2 layer in the store, compare the layer's block checksum with
 * imageio's own checksum of the same transfer, save the block digests, and journal the placed
 * layer with the disk.transferred event that announces it. The transfer is closed on every way out.
 */
import type { DiskTransferred } from "../../contracts/disk-transferred.ts";
import { pointFileKey } from "../../domain/chain/naming.ts";
import type { EngineDisk, LayerMode } from "../../domain/backup/decide.ts";
import type { ChainView } from "../../pipeline/ports.ts";
import { withDisk, withTransfer } from "../../pipeline/run-journal.ts";
import { ChecksumMismatchError } from "./errors.ts";
import type { AttemptScope } from "./scope.ts";

export const DEFAULT_BLOCK = 4 * 1024 * 1024;

export interface DiskJob {
  readonly disk: EngineDisk;
  readonly mode: LayerMode;
  readonly reason?: string | undefined;
  /** Where the bytes come from: the engine backup, or one volume of the fallback snapshot. */
  readonly source: { readonly backupId?: string; readonly snapshotImageId?: string };
  /** How many disks the restore point has, and which were skipped (for the event). */
  readonly diskCount: number;
  readonly skipped: readonly { id: string; alias: string; reason: string }[];
}

export async function moveDisk(s: AttemptScope, chain: ChainView, job: DiskJob): Promise<void> {
  const { deps, engine, vm, ctx } = s;
  const d = job.disk;
  const blockSize = deps.blockSize ?? DEFAULT_BLOCK;
  const prev = job.mode === "incremental" ? chain.diskLayers.get(d.id) : undefined;
  const key = pointFileKey({ id: s.run.restorePoint!, checkpointId: s.run.checkpointId });
  const target = await deps.store.layerTarget({ vmName: vm.name, diskId: d.id, time: s.run.startedAt, key, mode: job.mode });
  // A layer of this run that was placed but never recorded (crash in between) is not referenced anywhere.
  await deps.store.removeUnrecorded(target.finalPath);
  const transfer = await engine.createDownload({ diskId: d.id, ...job.source }, ctx.signal);
  await s.change((r) => withDisk(withTransfer(r, { id: transfer.id, diskId: d.id, state: "open" }), { id: d.id, state: "downloading", tmpPath: target.finalPath }));
  let result;
  let last = 0;
  try {
    const previousDigests = prev ? await deps.store.readDigests(prev.digestsFile) : undefined;
    result = await deps.transfers.download({
      transferUrl: transfer.transferUrl,
      caPem: engine.caPem,
      output: target.finalPath,
      incremental: job.mode === "incremental",
      backing: prev ? { path: deps.store.absolute(prev.path) } : undefined,
      previousDigests,
      onProgress: (bytes, total) => {
        const t = Date.now();
        if (t - last < 1000 && bytes < total) return;
        last = t;
        const run = s.run;
        ctx.progress?.({ id: `${run.runId}:${d.id}:${t}`, time: new Date(t).toISOString(), correlationId: run.correlationId ?? run.runId, runId: run.runId, vm: vm.name, disk: d.id, alias: d.alias, bytes, total, phase: "download" });
      },
      signal: ctx.signal,
    });
    const sourceSum = await deps.transfers.sourceChecksum({ transferUrl: transfer.transferUrl, caPem: engine.caPem, blockSize, signal: ctx.signal });
    if (sourceSum !== result.checksum) throw new ChecksumMismatchError(d.id, result.checksum, sourceSum);
  } catch (err) {
    await deps.store.removeUnrecorded(target.finalPath).catch(() => undefined);
    throw err;
  } finally {
    await engine.finishTransfer(transfer.id, { signal: ctx.signal }).then(
      () => s.change((r) => withTransfer(r, { id: transfer.id, diskId: d.id, state: "closed" })),
      (err: unknown) => s.log.warn({ err, transfer: transfer.id }, "could not finalize the transfer; the reconciler will"),
    );
  }
  const size = await deps.store.fileSize(target.finalPath);
  const digestsFile = await deps.store.saveDigests(vm.name, key, d.id, { blockSize, virtualSize: result.virtualSize, digests: result.digests });
  const run = s.run;
  const event: DiskTransferred = {
    id: `${run.backupId}:${d.id}:disk.transferred`,
    time: deps.clock().toISOString(),
    correlationId: run.correlationId ?? run.runId,
    runId: run.runId,
    backupId: run.backupId!,
    vm: { id: vm.id, name: vm.name },
    disk: { id: d.id, alias: d.alias, virtualSize: result.virtualSize || d.provisionedSize },
    diskCount: job.diskCount,
    restorePoint: run.restorePoint!,
    mode: job.mode,
    ...(job.reason ? { reason: job.reason.slice(0, 1000) } : {}),
    layer: { path: target.relPath, size, ...(prev ? { parent: prev.path } : {}) },
    checksum: { algorithm: "sha256", blockSize, value: result.checksum },
    ...(run.checkpointId ? { checkpointId: run.checkpointId } : {}),
    digestsFile,
    takenAt: run.startedAt,
    transfer: { bytes: result.bytes, seconds: Math.round(result.seconds * 1000) / 1000 },
    ...(run.fromCheckpointId && job.mode === "incremental" ? { fromCheckpointId: run.fromCheckpointId } : {}),
    ...(job.skipped.length ? { skippedDisks: [...job.skipped] } : {}),
  };
  await s.change((r) => withDisk(r, { id: d.id, state: "placed", layer: target.relPath, event: event as unknown as Record<string, unknown> }));
  s.log.info({ vm: vm.name, disk: d.id, mode: job.mode, bytes: result.bytes, seconds: result.seconds }, "disk transferred");
}
