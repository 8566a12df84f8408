import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { engineName, envelope, id, nonNegInt, vmRef } from "./fields.ts";

const example = {
  id: "run-9:restore.completed",
  time: "2025-01-31T03:00:00Z",
  correlationId: "run-7",
  vm: "web01",
  restorePoint: "rp-20250131T020000Z",
  target: "dr",
  mode: "replicate",
  name: "web01",
  bytes: 10485760,
  seconds: 40,
};

export const restoreCompleted = defineContract({
  subject: "restore.completed",
  kind: "event",
  title: "restore.completed",
  description: "Outcome: a restore point was restored onto the target engine and verified.",
  schema: z.looseObject({
    ...envelope,
    vm: vmRef.describe("Name of the backed-up VM."),
    runId: id.optional(),
    restorePoint: id,
    target: engineName,
    mode: z.enum(["restore", "replicate", "test"]),
    name: vmRef.describe("Name of the VM on the target engine."),
    vmId: id.optional().describe("Id of the VM on the target engine."),
    started: z.boolean().optional().describe("Whether the restored VM was started."),
    bytes: nonNegInt.describe("Bytes uploaded."),
    seconds: z.number().nonnegative(),
    disks: z
      .array(
        z.strictObject({
          alias: z.string().max(255),
          sourceId: id.describe("The disk's id in the backup."),
          id: id.optional().describe("The disk's id on the target (absent after a restore test, which removes it)."),
          checksum: z.string().max(128).describe("imageio's sha256 block checksum of the restored disk, equal to the restore point's."),
        }),
      )
      .optional()
      .describe("The restored disks, each verified with imageio's checksum."),
    bootTest: z
      .strictObject({ ok: z.boolean(), seconds: z.number().nonnegative(), detail: z.string().max(1000).optional() })
      .optional()
      .describe("Mode test: whether the restored VM reached 'up' (it was removed afterwards)."),
  }),
  examples: {
    valid: [example, { ...example, mode: "restore", name: "web01_restored", vmId: "vm-77", started: true }],
    invalid: [{}, { ...example, mode: "copy" }, { ...example, target: "" }],
  },
});
export type RestoreCompleted = Infer<typeof restoreCompleted>;
