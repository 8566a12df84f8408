import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { commandEnvelope, engineName, id, vmRef } from "./fields.ts";

export const restoreRequested = defineContract({
  subject: "restore.requested",
  kind: "command",
  title: "restore.requested",
  description:
    "Command: restore a VM from the store onto an engine, or refresh its DR replica. `{\"vm\":\"web01\"}` restores the latest restore point to 'dr'.",
  schema: z.strictObject({
    ...commandEnvelope,
    vm: vmRef,
    checkpoint: z
      .union([z.number().int().nonnegative(), z.literal("latest")])
      .optional()
      .describe("Optional. Default: 'latest'. The restore point's friendly number as listed by `ferry checkpoints <vm>`, or 'latest'."),
    restorePoint: id.optional().describe("Optional. An exact restore point id; wins over checkpoint (used by the pipeline)."),
    target: engineName.optional().describe("Optional. Default: 'dr'. The engine to restore onto."),
    mode: z
      .enum(["restore", "replicate"])
      .optional()
      .describe("Optional. Default: 'restore' (a new VM). 'replicate' refreshes the standing DR copy in place."),
    name: vmRef.optional().describe("Optional. Default: the VM name plus the configured suffix (restore settings). Name of the restored VM."),
    start: z.boolean().optional().describe("Optional. Default: the config's restore setting (start after restore). Start the VM when done."),
  }),
  defaults: { checkpoint: "latest", target: "dr", mode: "restore" },
  examples: {
    valid: [
      { vm: "web01" },
      { vm: "web01", checkpoint: 3, target: "dr", mode: "restore", name: "web01_restored", start: false },
      { vm: "web01", checkpoint: "latest", mode: "replicate", restorePoint: "rp-20250131T020000Z" },
    ],
    invalid: [{}, { vm: "" }, { vm: "web01", checkpoint: -1 }, { vm: "web01", checkpoint: "first" }, { vm: "web01", checkpoint: 1.5 },
      { vm: "web01", mode: "clone" }, { vm: "web01", name: "../x" }, { vm: "web01", start: "yes" }],
  },
});
export type RestoreRequested = Infer<typeof restoreRequested>;
