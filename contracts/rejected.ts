import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { envelope } from "./fields.ts";

/** How much of the original payload a `.rejected` event keeps. */
export const REJECTED_PAYLOAD_MAX = 1024;

export const rejected = defineContract({
  subject: "<subject>.rejected",
  kind: "event",
  title: "<subject>.rejected",
  description:
    "Answer to a message that failed validation on <subject> (e.g. backup.requested.rejected). The message was terminated and is never retried.",
  schema: z.looseObject({
    ...envelope,
    subject: z.string().min(1).max(255).describe("The subject the rejected message was published on."),
    reason: z.string().min(1).max(2000).describe("One readable line, e.g. 'vm: required'."),
    errors: z
      .array(z.object({ path: z.string().describe("Dotted field path; '' for the whole message."), message: z.string() }))
      .describe("Each problem on its own."),
    payload: z.string().max(REJECTED_PAYLOAD_MAX).describe("The original payload as text (secrets redacted), truncated to 1 KiB."),
    seq: z.number().int().positive().optional().describe("Stream sequence of the rejected message."),
  }),
  examples: {
    valid: [
      {
        id: "FERRY_COMMANDS:3:rejected",
        time: "2025-01-31T02:00:01Z",
        correlationId: "FERRY_COMMANDS:3",
        subject: "backup.requested",
        reason: "vm: required",
        errors: [{ path: "vm", message: "required" }],
        payload: "{}",
        seq: 3,
      },
    ],
    invalid: [{}, { id: "x", time: "2025-01-31T02:00:01Z", correlationId: "x", subject: "backup.requested", reason: "", errors: [], payload: "" }],
  },
});
export type Rejected = Infer<typeof rejected>;

export function rejectedSubject(subject: string): string {
  return `${subject}.rejected`;
}
