import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { failureExample, failureFields, failureInvalidExamples } from "./failure.ts";

export const backupFailed = defineContract({
  subject: "backup.failed",
  kind: "event",
  title: "backup.failed",
  description: "Outcome: a backup run (any of its steps) failed permanently or ran out of retries. `code` is stable (contracts/errors.ts).",
  schema: z.looseObject(failureFields),
  examples: {
    valid: [failureExample, { ...failureExample, runId: "run-7", step: "disk.transferred", attempts: 5, engine: "prd", vmId: "vm-1" }],
    invalid: failureInvalidExamples,
  },
});
export type BackupFailed = Infer<typeof backupFailed>;
