import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { commandEnvelope, engineName, vmRef } from "./fields.ts";

export const backupRequested = defineContract({
  subject: "backup.requested",
  kind: "command",
  title: "backup.requested",
  description:
    "Command: back up one VM. Published by cron (`ferry schedule`), by hand (`nats pub backup.requested '{\"vm\":\"web01\"}'`) or by an oVirt hook. `{\"vm\":\"web01\"}` is complete.",
  schema: z.strictObject({
    ...commandEnvelope,
    vm: vmRef,
    mode: z
      .enum(["auto", "full", "incremental"])
      .optional()
      .describe("Optional. Default: 'auto' (incremental when the chain allows it, else full, per the VM's policy)."),
    engine: engineName.optional().describe("Optional. Default: 'prd'. The engine the VM lives on."),
    reason: z.string().max(1000).optional().describe("Optional free text recorded with the run, e.g. 'cron' or 'before upgrade'."),
  }),
  defaults: { mode: "auto", engine: "prd" },
  examples: {
    valid: [
      { vm: "web01" },
      { vm: "db-1.prod_2", mode: "full", engine: "prd", reason: "before upgrade" },
      { vm: "6c7a3e52-9a5e-4b0e-8e49-0e0a4b1f2c11", mode: "incremental" },
      { id: "cron:web01:2025-01-31", time: "2025-01-31T02:00:00Z", correlationId: "c-1", vm: "web01", mode: "auto" },
      { vm: "a..b" },
    ],
    invalid: [{}, { vm: "" }, { vm: "../etc" }, { vm: "." }, { vm: ".." }, { vm: "a/b" }, { vm: "web 01" }, { vm: 5 },
      { vm: "x".repeat(256) }, { vm: "web01", mode: "differential" }, { vm: "web01", mdoe: "full" }, { vm: "web01", time: "yesterday" }, [], "web01", null],
  },
});
export type BackupRequested = Infer<typeof backupRequested>;
