import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { backupKind, envelope, id, nonNegInt, vmRef } from "./fields.ts";

const example = {
  id: "run-7:backup.completed",
  time: "2025-01-31T02:12:30Z",
  correlationId: "run-7",
  vm: "web01",
  restorePoint: "rp-20250131T020000Z",
  kind: "incremental",
  bytes: 1048576,
  seconds: 12.5,
  retention: { removed: ["rp-20250101T020000Z"] },
};

export const backupCompleted = defineContract({
  subject: "backup.completed",
  kind: "event",
  title: "backup.completed",
  description: "Outcome: a backup run finished, its restore point is in the chain, and retention was applied.",
  schema: z.looseObject({
    ...envelope,
    vm: vmRef.describe("VM name."),
    vmId: id.optional().describe("VM id on the engine."),
    runId: id.optional(),
    restorePoint: id.describe("The new restore point id."),
    kind: backupKind,
    bytes: nonNegInt.describe("Bytes written to the store."),
    seconds: z.number().nonnegative().describe("Wall time of the run."),
    retention: z.object({ removed: z.array(id).describe("Restore point ids removed by retention.") }),
  }),
  examples: {
    valid: [example, { ...example, retention: { removed: [] }, runId: "run-7", vmId: "vm-1" }],
    invalid: [{}, { ...example, kind: "auto" }, { ...example, bytes: -1 }, { ...example, retention: {} }],
  },
});
export type BackupCompleted = Infer<typeof backupCompleted>;
