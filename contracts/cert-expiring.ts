import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { commandEnvelope, engineName } from "./fields.ts";

export const certExpiring = defineContract({
  subject: "cert.expiring",
  kind: "command",
  title: "cert.expiring",
  description: "Command: fetch the engine's CA certificate again, check it and store it (answered by cert.renewed).",
  schema: z.strictObject({ ...commandEnvelope, engine: engineName.describe("The engine whose CA to refresh.") }),
  examples: {
    valid: [{ engine: "prd" }, { engine: "dr", correlationId: "x" }],
    invalid: [{}, { engine: "" }, { engine: "a/b" }, { engine: "prd", force: true }],
  },
});
export type CertExpiring = Infer<typeof certExpiring>;
