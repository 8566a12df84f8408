/**
 * Shared shape of `backup.failed` and `restore.failed`: which VM, a stable code, one redacted line,
 * and where the alert for the failure goes (`engine`, `vmId`: the engine's audit log, on that VM).
 */
import { z } from "zod";
import { engineName, envelope, errorCode, id, nonNegInt, vmRef } from "./fields.ts";

export const failureFields = {
  ...envelope,
  vm: vmRef.describe("VM name (or the id, when the name is unknown)."),
  code: errorCode,
  message: z.string().max(2000).describe("One line for humans; secrets redacted."),
  runId: id.optional().describe("The run, when one was started."),
  step: z.string().max(255).optional().describe("The subject whose handling failed, e.g. 'disk.transferred'."),
  attempts: nonNegInt.optional().describe("How many deliveries were tried."),
  engine: engineName
    .optional()
    .describe(
      "Where the alert for this failure goes: the engine (name from the Ferry config) whose audit log gets it. " +
        "Absent when the failed input named no engine.",
    ),
  vmId: id
    .optional()
    .describe("Where the alert for this failure goes: the VM's id on that engine. Absent when the failed input knew the VM only by name."),
} as const;

export const failureExample = {
  id: "FERRY_COMMANDS:12:backup.failed",
  time: "2025-01-31T02:05:00Z",
  correlationId: "c-1",
  vm: "web01",
  code: "TRANSFER_TIMEOUT",
  message: "image transfer 5b1e did not reach 'transferring' within 300 s",
};

export const failureInvalidExamples = [
  {},
  { ...failureExample, code: "" },
  { ...failureExample, code: "has space" },
  { ...failureExample, vm: "../x" },
  { ...failureExample, message: 42 },
  { ...failureExample, engine: "a/b" },
  { ...failureExample, vmId: "" },
];
