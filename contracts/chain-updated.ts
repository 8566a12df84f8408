import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { backupKind, checksum, engineName, envelope, id, isoTime, layer, vmIdentity } from "./fields.ts";

const example = {
  id: "rp-20250131T020000Z:chain.updated",
  time: "2025-01-31T02:12:00Z",
  correlationId: "run-7",
  vm: { id: "vm-1", name: "web01" },
  restorePoint: {
    id: "rp-20250131T020000Z",
    checkpointId: "c-9",
    time: "2025-01-31T02:00:00Z",
    kind: "incremental",
    disks: [
      {
        id: "d-1",
        layer: { path: "web01/d-1/20250131T020000Z.c-9.incremental.qcow2", size: 1048576, parent: "web01/d-1/20250130T020000Z.c-8.full.qcow2" },
        checksum: { algorithm: "sha256", blockSize: 4194304, value: "0123abcd" },
      },
    ],
  },
};

export const chainUpdated = defineContract({
  subject: "chain.updated",
  kind: "event",
  title: "chain.updated",
  description: "Fact: a complete restore point (every disk) was recorded in the VM's chain (KV ferry-chains and restore-points.json).",
  schema: z.looseObject({
    ...envelope,
    runId: id.optional().describe("The backup run that produced the restore point."),
    engine: engineName
      .optional()
      .describe("The engine the VM was backed up from (name from the Ferry config). Carried so that a failure of a later step is alerted on that engine."),
    vm: vmIdentity,
    restorePoint: z
      .object({
        id: id.describe("Restore point id."),
        checkpointId: id.optional().describe("Engine checkpoint id of the restore point; absent when the engine gave none (snapshot-based backup)."),
        time: isoTime.describe("When the backup was taken."),
        kind: backupKind.describe("'full' when every disk layer is full; 'incremental' when any disk builds on an older layer."),
        disks: z.array(z.object({ id: id.describe("Disk id."), layer, checksum }).describe("One disk of the point: its layer and block checksum.")).min(1),
      })
      .describe("The restore point now in the chain."),
    reason: z
      .string()
      .max(1000)
      .optional()
      .describe("Why the point, or some of its disks, is full, e.g. 'no previous checkpoint'; several disks' reasons are joined with '; '. Absent when nothing needed explaining."),
  }),
  examples: {
    valid: [
      example,
      { ...example, runId: "run-7", engine: "prd", restorePoint: { ...example.restorePoint, checkpointId: undefined, kind: "full" }, reason: "no previous checkpoint" },
    ],
    invalid: [
      {},
      { ...example, restorePoint: { ...example.restorePoint, disks: [] } },
      { ...example, vm: "web01" },
      { ...example, reason: "x".repeat(1001) },
      { ...example, engine: "" },
    ],
  },
});
export type ChainUpdated = Infer<typeof chainUpdated>;
