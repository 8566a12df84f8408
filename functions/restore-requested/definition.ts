/** The restore-requested function for the runtime: retry policy + the handler bound to the runtime's context. */
import { restoreRequested } from "../../contracts/restore-requested.ts";
import { defineFunction, type FunctionDefinition } from "../runtime/mod.ts";
import { createRestoreHandler, type RestoreDeps } from "./handler.ts";

export interface RestorePolicy {
  readonly ackWaitMs?: number;
  readonly maxDeliver?: number;
  readonly backoffMs?: readonly number[];
}

export function restoreRequestedFunction(deps: RestoreDeps, p: RestorePolicy = {}): FunctionDefinition {
  const handle = createRestoreHandler(deps);
  return defineFunction({
    name: "restore-requested",
    contract: restoreRequested,
    // Restores move whole disks: one at a time per process, scale with processes.
    concurrency: 1,
    ackWaitMs: p.ackWaitMs ?? 60_000,
    maxDeliver: p.maxDeliver ?? 3,
    backoffMs: p.backoffMs ?? [15_000, 120_000],
    handler: async (event, ctx) => ({
      publish: await handle(event, {
        signal: ctx.signal,
        lastAttempt: ctx.delivery.deliveryCount >= ctx.delivery.maxDeliver,
        working: () => ctx.working(),
        // Core NATS, best effort: progress must never fail a restore.
        progress: (ev) => void ctx.publish({ subject: "transfer.progress", event: ev }).catch(() => undefined),
      }),
    }),
  });
}
