/**
 * The chain record of one VM: its restore points and, per disk, the qcow2 layers they are made of.
 * The same JSON lives in KV `ferry-chains` (key = VM id) and in the store as
 * `<store>/<vm-name>/restore-points.json`, so either can rebuild the other.
 *
 * This zod schema is the single source of truth for that record. It checks shapes; the
 * cross-references (parents exist, paths belong to the VM, chains are linear) are checked by
 * `checkChain()` in chain.ts, because zod cannot express them as data.
 */
import { z } from "zod";
import { isoTime, relativePath, vmRef } from "../../contracts/fields.ts";

/** A name used as one path segment in the store (VM name, disk id, checkpoint id, restore point id). */
export const segmentName = vmRef;

export const checksumSchema = z.object({
  algorithm: z.literal("sha256"),
  blockSize: z.number().int().positive(),
  value: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex characters"),
});

export const layerKind = z.enum(["full", "incremental"]);

/** One disk of a restore point: the qcow2 layer holding its data at that moment. */
export const diskLayerSchema = z.object({
  diskId: segmentName,
  alias: z.string().max(255),
  /** Guest-visible size in bytes. */
  virtualSize: z.number().int().nonnegative(),
  /** Store-relative path: `<vm-name>/<disk-id>/<time>.<checkpoint>.<kind>.qcow2`. */
  layer: relativePath,
  /** Store-relative path of the backing layer (same disk, an older restore point); absent for a full layer. */
  parentLayer: relativePath.optional(),
  kind: layerKind,
  /** Size of the layer file in bytes. */
  size: z.number().int().nonnegative(),
  /** imageio-compatible block checksum of the guest image at this restore point. */
  checksum: checksumSchema,
  /** Store-relative path of the per-block digests: `<vm-name>/blockhashes/<checkpoint>.<disk-id>`. */
  digestsFile: relativePath,
  /** Why this disk got a full layer inside an incremental restore point (a new disk, a raw disk). */
  reason: z.string().max(1000).optional(),
  /** Restore points removed by retention whose data was merged into this layer. */
  mergedFrom: z.array(z.string()).optional(),
});

export const verificationSchema = z.object({
  time: isoTime,
  ok: z.boolean(),
  detail: z.string().max(2000).optional(),
});

export const restorePointSchema = z.object({
  id: segmentName,
  /** Monotonic per VM; never reused, also after retention. */
  seq: z.number().int().positive(),
  /** When the backup was taken (ISO-8601). */
  time: isoTime,
  /** 'full' when every disk layer is full; 'incremental' when any disk builds on an older layer. */
  kind: layerKind,
  /** The engine checkpoint created by this backup; absent for raw-only or snapshot-based backups. */
  checkpointId: segmentName.optional(),
  /** The restore point this one builds on (the checkpoint the incremental was taken from). */
  parentId: segmentName.optional(),
  /** Why a full was taken: 'first backup', 'checkpoint invalid', 'weekly full', 'max chain length', 'raw disk', ... */
  reason: z.string().max(1000).optional(),
  disks: z.array(diskLayerSchema).min(1),
  /** Store-relative path of the VM's OVF at this restore point. */
  ovfFile: relativePath.optional(),
  /** The engine checkpoint of this point was deleted on the engine (it is no longer needed). */
  checkpointReleased: z.boolean().optional(),
  runId: z.string().max(255).optional(),
  backupId: z.string().max(255).optional(),
  verified: verificationSchema.optional(),
  /** The last restore test: the point restored on an engine and booted (`ferry restore --test`). */
  bootTested: verificationSchema.optional(),
});

/** A restore point whose disks are still arriving (one disk.transferred per disk). KV only. */
export const incomingPointSchema = z.object({
  id: segmentName,
  time: isoTime,
  checkpointId: segmentName.optional(),
  parentId: segmentName.optional(),
  reason: z.string().max(1000).optional(),
  diskCount: z.number().int().positive(),
  disks: z.array(diskLayerSchema),
  ovfFile: relativePath.optional(),
  runId: z.string().max(255).optional(),
  backupId: z.string().max(255).optional(),
});

const chainRecordBody = z.object({
  /** Format version of this record. */
  format: z.literal(1),
  vm: z.object({ id: z.string().min(1).max(255), name: segmentName }),
  /** The seq the next restore point gets. */
  nextSeq: z.number().int().positive(),
  /** Oldest first. */
  restorePoints: z.array(restorePointSchema),
  updatedAt: isoTime,
  incoming: z.array(incomingPointSchema).optional(),
});

/** One idempotent file operation of a retention plan (replayable after a crash). */
export const retentionStepSchema = z.discriminatedUnion("op", [
  /** `qemu-img commit -b base top`: merge every layer above `base` up to `top` into `base`. Skipped when `base` is gone. */
  z.object({ op: z.literal("commit"), diskId: segmentName, top: relativePath, base: relativePath }),
  /** rename(from, to), replacing `to`. Skipped when `from` is gone. */
  z.object({ op: z.literal("replace"), from: relativePath, to: relativePath }),
  /** link(from, to): a second name for the merged layer. Skipped when `to` exists. */
  z.object({ op: z.literal("link"), from: relativePath, to: relativePath }),
  /** `qemu-img rebase -u`: point `layer` at `backing` (same content, new name). Skipped when `layer` is gone (renamed by a later step). */
  z.object({ op: z.literal("rebase"), layer: relativePath, backing: relativePath }),
]);

/** Write-ahead intent of a retention run, kept in the manifest until the run is complete. */
export const pendingRetentionSchema = z.object({
  id: z.string().min(1).max(255),
  createdAt: isoTime,
  /** 'apply': file steps may be half done, `removing` points must not be read. 'cleanup': only deletions remain. */
  phase: z.enum(["apply", "cleanup"]),
  removing: z.array(segmentName),
  steps: z.array(retentionStepSchema),
  /** Store-relative files to delete once the target record is committed. */
  cleanup: z.array(relativePath),
  /** The record after the run (sizes of merged layers are filled in when the steps are done). */
  target: chainRecordBody,
});

export const chainRecordSchema = chainRecordBody.extend({
  pending: pendingRetentionSchema.optional(),
});

export type Checksum = z.infer<typeof checksumSchema>;
export type LayerKind = z.infer<typeof layerKind>;
export type DiskLayer = z.infer<typeof diskLayerSchema>;
export type RestorePoint = z.infer<typeof restorePointSchema>;
export type RetentionStep = z.infer<typeof retentionStepSchema>;
export type PendingRetention = z.infer<typeof pendingRetentionSchema>;
export type IncomingPoint = z.infer<typeof incomingPointSchema>;
export type ChainRecord = z.infer<typeof chainRecordSchema>;
export type ChainRecordBody = z.infer<typeof chainRecordBody>;
