import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { engineName, envelope, isoTime } from "./fields.ts";

const example = {
  id: "prd:AB:CD:cert.renewed",
  time: "2025-01-31T04:00:00Z",
  correlationId: "c-3",
  engine: "prd",
  fingerprint: "sha256:AB:CD:EF",
  notAfter: "2026-01-31T00:00:00Z",
};

export const certRenewed = defineContract({
  subject: "cert.renewed",
  kind: "event",
  title: "cert.renewed",
  description: "Outcome: the engine's CA certificate was fetched, checked and stored (KV ferry-certs).",
  schema: z.looseObject({
    ...envelope,
    engine: engineName,
    fingerprint: z.string().min(1).max(200).describe("SHA-256 fingerprint of the CA certificate."),
    notAfter: isoTime.describe("Expiry of the CA certificate."),
    changed: z.boolean().optional().describe("Whether the CA differs from the stored one."),
    previous: z.string().min(1).max(200).optional().describe("SHA-256 fingerprint of the CA trusted before, when it changed."),
    acceptedBy: z
      .string()
      .min(1)
      .max(255)
      .optional()
      .describe("Who accepted it: 'renewal' (fetched over TLS verified with the trusted CA and chaining to it), 'config' (the fingerprint pinned in the config), or the operator (user@host of `ferry cert fetch --accept`)."),
  }),
  examples: { valid: [example, { ...example, changed: true }, { ...example, changed: true, previous: "sha256:01:02", acceptedBy: "renewal" }], invalid: [{}, { ...example, notAfter: "soon" }] },
});
export type CertRenewed = Infer<typeof certRenewed>;
