import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { engineName } from "./fields.ts";
import { failureExample, failureFields, failureInvalidExamples } from "./failure.ts";

const fingerprint = z.string().min(1).max(200);

const example = {
  ...failureExample,
  id: "cert-check:prd:2025-01-31:9f2c:cert.failed",
  vm: "prd",
  code: "CA_NOT_TRUSTED",
  message: "engine prd: its TLS certificate does not verify with the trusted CA (sha256 AB:CD); it now serves a CA (sha256 EF:01) that does not chain to it",
  certEngine: "prd",
  engine: "dr",
  step: "cert.expiring",
};

export const certFailed = defineContract({
  subject: "cert.failed",
  kind: "event",
  title: "cert.failed",
  description:
    "Outcome: a cert.expiring could not be settled: the engine's CA was refused (not verified, or changed without a chain to the trusted one, or not accepted yet), " +
    "or a certificate expires soon and the engine has not renewed it. Same shape as every *.failed (one alert by functions/alerts); `vm` carries the engine name.",
  schema: z.looseObject({
    ...failureFields,
    certEngine: engineName.describe("The engine whose certificate this is about (`engine` is where the alert goes: another engine when this one's TLS cannot be trusted)."),
    servedFingerprint: fingerprint.optional().describe("SHA-256 fingerprint of the CA the engine serves now (to accept: ferry cert fetch <engine> --accept <it>)."),
    trustedFingerprint: fingerprint.optional().describe("SHA-256 fingerprint of the CA Ferry trusts for the engine, when it has one."),
  }),
  examples: {
    valid: [example, { ...example, code: "CA_EXPIRING", engine: "prd", servedFingerprint: "AB:CD", trustedFingerprint: "AB:CD" }],
    invalid: [...failureInvalidExamples, { ...example, certEngine: undefined }, { ...example, certEngine: "a/b" }],
  },
});
export type CertFailed = Infer<typeof certFailed>;
