import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { backupKind, checksum, engineName, envelope, id, isoTime, layer, nonNegInt, relativePath, vmIdentity } from "./fields.ts";

const example = {
  id: "b-42:d-1:disk.transferred",
  time: "2025-01-31T02:10:00Z",
  correlationId: "run-7",
  runId: "run-7",
  backupId: "b-42",
  vm: { id: "vm-1", name: "web01" },
  disk: { id: "d-1", alias: "web01_Disk1", virtualSize: 10737418240 },
  diskCount: 1,
  restorePoint: "rp-20250131T020000Z",
  checkpointId: "c-9",
  fromCheckpointId: "c-8",
  takenAt: "2025-01-31T02:00:00Z",
  mode: "incremental",
  layer: { path: "web01/d-1/20250131T020000Z.c-9.incremental.qcow2", size: 1048576, parent: "web01/d-1/20250130T020000Z.c-8.full.qcow2" },
  checksum: { algorithm: "sha256", blockSize: 4194304, value: "0123abcd" },
  digestsFile: "web01/blockhashes/c-9.d-1",
  transfer: { bytes: 1048576, seconds: 2.5 },
};

const fullExample = {
  ...example,
  fromCheckpointId: undefined,
  mode: "full",
  reason: "no previous checkpoint",
  layer: { path: "web01/d-1/x.full.qcow2", size: 0 },
  skippedDisks: [{ id: "d-2", alias: "web01_shared", reason: "shareable disk (no consistent point in time)" }],
};

export const diskTransferred = defineContract({
  subject: "disk.transferred",
  kind: "event",
  title: "disk.transferred",
  description: "Fact: one disk of a backup run was downloaded into a new qcow2 layer in the store and verified. One per disk.",
  schema: z.looseObject({
    ...envelope,
    runId: id.describe("The backup run (key in ferry-runs)."),
    backupId: id.describe("The engine's backup id."),
    engine: engineName
      .optional()
      .describe("The engine the VM was backed up from (name from the Ferry config). Carried so that a failure of a later step is alerted on that engine."),
    vm: vmIdentity,
    disk: z.object({ id, alias: z.string().max(255), virtualSize: nonNegInt.describe("Guest-visible size in bytes.") }).describe("The disk."),
    diskCount: z.number().int().positive().describe("How many disks this backup has (the chain function waits for all)."),
    restorePoint: id.describe("The restore point id this run creates."),
    checkpointId: id
      .optional()
      .describe("Engine checkpoint id of the restore point (the checkpoint this backup created); absent when the engine gave none (snapshot-based backup)."),
    fromCheckpointId: id
      .optional()
      .describe("For an incremental layer: the engine checkpoint it was taken from (the previous restore point's checkpointId). Absent for a full layer."),
    takenAt: isoTime.describe("When the backup run started (ISO-8601): the restore point's time. `time` is when this event was produced."),
    mode: backupKind.describe("What was actually taken for this disk."),
    reason: z.string().max(1000).optional().describe("Why this mode, e.g. 'no previous checkpoint'."),
    layer,
    checksum,
    digestsFile: relativePath.describe(
      "Store-relative path of the per-block digests of this disk's guest image at this point (sha256 of each checksum block): <vm-name>/blockhashes/<checkpoint>.<disk-id>.",
    ),
    transfer: z
      .object({
        bytes: nonNegInt.describe("Bytes of guest data downloaded from imageio for this layer."),
        seconds: z.number().nonnegative().describe("Wall time of the download, in seconds."),
      })
      .describe("What moved for this disk."),
    skippedDisks: z
      .array(
        z.object({
          id: id.describe("Disk id."),
          alias: z.string().max(255).describe("Disk alias on the engine."),
          reason: z.string().min(1).max(1000).describe("Why the disk is not backed up, e.g. 'shareable disk (no consistent point in time)'."),
        }),
      )
      .optional()
      .describe("Disks of the VM this backup does not take, and why. Present only when some were skipped; the same list on every disk.transferred of the run."),
  }),
  examples: {
    valid: [example, fullExample, { ...example, engine: "prd", checkpointId: undefined, fromCheckpointId: undefined, transfer: { bytes: 0, seconds: 0 } }],
    invalid: [
      {},
      { ...example, layer: { ...example.layer, path: "/etc/passwd" } },
      { ...example, layer: { ...example.layer, path: "web01/../../etc" } },
      { ...example, checksum: { ...example.checksum, algorithm: "md5" } },
      { ...example, diskCount: 0 },
      { ...example, id: undefined },
      { ...example, digestsFile: undefined },
      { ...example, digestsFile: "/web01/blockhashes/c-9.d-1" },
      { ...example, takenAt: "yesterday" },
      { ...example, transfer: { bytes: -1, seconds: 1 } },
      { ...example, transfer: undefined },
      { ...example, skippedDisks: [{ id: "d-2" }] },
      { ...example, engine: "a/b" },
    ],
  },
});
export type DiskTransferred = Infer<typeof diskTransferred>;
