/**
 * The cert-expiring function for the runtime: one durable consumer on `cert.expiring`. An engine
 * that cannot be reached is retried (about 40 minutes); a refusal is an answer (cert.failed,
 * acked), not a retry. A failure the handler did not answer (retries exhausted, a file that
 * cannot be written) becomes cert.failed here, so functions/alerts posts it.
 */
import { certExpiring, certFailed } from "../../contracts/mod.ts";
import { defineFunction, type FunctionDefinition } from "../runtime/mod.ts";
import { createCertExpiringHandler, type CertExpiringDeps } from "./handler.ts";

export interface CertExpiringPolicy {
  readonly ackWaitMs?: number;
  readonly maxDeliver?: number;
  readonly backoffMs?: readonly number[];
}

export function certExpiringFunction(deps: CertExpiringDeps, p: CertExpiringPolicy = {}): FunctionDefinition {
  const handle = createCertExpiringHandler(deps);
  return defineFunction({
    name: "cert-expiring",
    contract: certExpiring,
    concurrency: 1,
    ackWaitMs: p.ackWaitMs ?? 60_000,
    maxDeliver: p.maxDeliver ?? 6,
    backoffMs: p.backoffMs ?? [10_000, 60_000, 300_000, 900_000],
    handler: async (event, ctx) => ({ publish: await handle(event, ctx) }),
    onFailure: (event, failure, ctx) => [
      ctx.emit(certFailed, {
        vm: event.engine,
        certEngine: event.engine,
        engine: deps.alertEngine(event.engine, false),
        code: failure.code,
        message: `engine ${event.engine}: ${failure.message}`.slice(0, 2000),
        step: "cert.expiring",
        attempts: failure.attempts,
      }),
    ],
  });
}
