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
      .enum(["restore", "replicate", "test"])
      .optional()
      .describe(
        "Optional. Default: 'restore' (a new VM). 'replicate' refreshes the standing DR copy in place. 'test' restores under a temporary name, boots it, records the verdict on the restore point and removes it again.",
      ),
    name: vmRef.optional().describe("Optional. Default: the VM name plus the configured suffix (restore settings). Name of the restored VM."),
    start: z.boolean().optional().describe("Optional. Default: the config's restore setting (start after restore). Start the VM when done."),
    replace: z
      .boolean()
      .optional()
      .describe("Optional. Default: the config's restore.replaceExisting. A powered-off VM of that name on the target is removed once the new disks are uploaded and verified."),
    disks: z
      .array(z.string().min(1).max(255))
      .min(1)
      .max(64)
      .optional()
      .describe("Optional. Only these disks (aliases or ids), restored as floating disks unless the whole VM is restored."),
    mappings: z
      .strictObject({
        clusters: z.record(z.string().min(1).max(255), z.string().min(1).max(255)).optional().describe("Source cluster name → target cluster name ('*' for any)."),
        storageDomains: z.record(z.string().min(1).max(255), z.string().min(1).max(255)).optional().describe("'*' → target storage domain name."),
        vnicProfiles: z.record(z.string().min(1).max(255), z.string().min(1).max(255)).optional().describe("Source network name → target vNIC profile name."),
      })
      .optional()
      .describe("Optional. Where things go on the target; by default the config's restore.cluster and restore.storageDomain, and for each NIC the vNIC profile of the same network."),
  }),
  defaults: { checkpoint: "latest", target: "dr", mode: "restore" },
  examples: {
    valid: [
      { vm: "web01" },
      { vm: "web01", checkpoint: 3, target: "dr", mode: "restore", name: "web01_restored", start: false },
      { vm: "web01", checkpoint: "latest", mode: "replicate", restorePoint: "rp-20250131T020000Z" },
      { vm: "web01", checkpoint: 2, mode: "test" },
      { vm: "web01", disks: ["web01_Disk2"], mappings: { storageDomains: { "*": "dr-data" }, vnicProfiles: { ovirtmgmt: "dr-lan" } }, replace: true },
    ],
    invalid: [{}, { vm: "" }, { vm: "web01", checkpoint: -1 }, { vm: "web01", checkpoint: "first" }, { vm: "web01", checkpoint: 1.5 },
      { vm: "web01", mode: "clone" }, { vm: "web01", name: "../x" }, { vm: "web01", start: "yes" }, { vm: "web01", disks: [] },
      { vm: "web01", mappings: { networks: {} } }],
  },
});
export type RestoreRequested = Infer<typeof restoreRequested>;
