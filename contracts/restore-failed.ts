import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { engineName } from "./fields.ts";
import { failureExample, failureFields, failureInvalidExamples } from "./failure.ts";

export const restoreFailed = defineContract({
  subject: "restore.failed",
  kind: "event",
  title: "restore.failed",
  description: "Outcome: a restore failed permanently or ran out of retries; what it created was cancelled or removed.",
  schema: z.looseObject({ ...failureFields, target: engineName.optional().describe("The target engine.") }),
  examples: {
    valid: [failureExample, { ...failureExample, target: "dr", code: "UPLOAD_VERIFY_MISMATCH", engine: "dr" }],
    invalid: failureInvalidExamples,
  },
});
export type RestoreFailed = Infer<typeof restoreFailed>;
