import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { backupKind, checksum, envelope, id, layer, nonNegInt, vmIdentity } from "./fields.ts";

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
  mode: "incremental",
  layer: { path: "web01/d-1/20250131T020000Z.c-9.incremental.qcow2", size: 1048576, parent: "web01/d-1/20250130T020000Z.c-8.full.qcow2" },
  checksum: { algorithm: "sha256", blockSize: 4194304, value: "0123abcd" },
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
    vm: vmIdentity,
    disk: z.object({ id, alias: z.string().max(255), virtualSize: nonNegInt.describe("Guest-visible size in bytes.") }).describe("The disk."),
    diskCount: z.number().int().positive().describe("How many disks this backup has (the chain function waits for all)."),
    restorePoint: id.describe("The restore point id this run creates."),
    mode: backupKind.describe("What was actually taken for this disk."),
    reason: z.string().max(1000).optional().describe("Why this mode, e.g. 'no previous checkpoint'."),
    layer,
    checksum,
  }),
  examples: {
    valid: [example, { ...example, mode: "full", layer: { path: "web01/d-1/x.full.qcow2", size: 0 } }],
    invalid: [
      {},
      { ...example, layer: { ...example.layer, path: "/etc/passwd" } },
      { ...example, layer: { ...example.layer, path: "web01/../../etc" } },
      { ...example, checksum: { ...example.checksum, algorithm: "md5" } },
      { ...example, diskCount: 0 },
      { ...example, id: undefined },
    ],
  },
});
export type DiskTransferred = Infer<typeof diskTransferred>;
