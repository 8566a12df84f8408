import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { envelope, id, nonNegInt, vmRef } from "./fields.ts";

const example = {
  id: "run-7:d-1:1738289400000",
  time: "2025-01-31T02:10:00Z",
  correlationId: "run-7",
  runId: "run-7",
  vm: "web01",
  disk: "d-1",
  alias: "web01_Disk1",
  bytes: 5242880,
  total: 10485760,
  phase: "download",
};

export const transferProgress = defineContract({
  subject: "transfer.progress",
  kind: "event",
  title: "transfer.progress",
  description:
    "Progress of one disk transfer, at most about once a second per disk. Core NATS only (not stored in a stream): subscribe to see it live.",
  schema: z.looseObject({
    ...envelope,
    runId: id,
    vm: vmRef.describe("VM name."),
    disk: id.describe("Disk id."),
    alias: z.string().max(255).optional().describe("The disk's alias (name) on the engine, what an operator knows it by."),
    bytes: nonNegInt.describe("Bytes done so far."),
    total: nonNegInt.describe("Bytes to do in total (may grow while extents are read)."),
    phase: z.enum(["download", "upload", "verify"]),
  }),
  examples: { valid: [example, { ...example, phase: "upload" }, { ...example, alias: undefined }], invalid: [{}, { ...example, phase: "copy" }, { ...example, bytes: 1.5 }] },
});
export type TransferProgress = Infer<typeof transferProgress>;
