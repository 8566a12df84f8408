/** Shared shape of `backup.failed` and `restore.failed`: which VM, a stable code, one redacted line. */
import { z } from "zod";
import { envelope, errorCode, id, nonNegInt, vmRef } from "./fields.ts";

export const failureFields = {
  ...envelope,
  vm: vmRef.describe("VM name (or the id, when the name is unknown)."),
  code: errorCode,
  message: z.string().max(2000).describe("One line for humans; secrets redacted."),
  runId: id.optional().describe("The run, when one was started."),
  step: z.string().max(255).optional().describe("The subject whose handling failed, e.g. 'disk.transferred'."),
  attempts: nonNegInt.optional().describe("How many deliveries were tried."),
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
];
