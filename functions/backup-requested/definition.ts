/** The backup-requested function for the runtime: retry policy + the handler bound to the runtime's context. */
import { backupRequested } from "../../contracts/backup-requested.ts";
import { defineFunction, type FunctionDefinition, type HandlerContext } from "../runtime/mod.ts";
import { createBackupRequestedHandler, type BackupRequestedDeps, type DeliveryContext } from "./handler.ts";

export interface BackupRequestedPolicy {
  /** A crashed worker's message comes back after this long (heartbeats keep a live one). */
  readonly ackWaitMs?: number;
  readonly maxDeliver?: number;
  readonly backoffMs?: readonly number[];
  /** Backups at once in this process (default 1; main.ts: concurrency.backupsPerEngine per engine, bounded across processes by the engine slots). */
  readonly concurrency?: number;
}

export function toDeliveryContext(ctx: HandlerContext): DeliveryContext {
  return {
    signal: ctx.signal,
    log: ctx.log,
    lastAttempt: ctx.delivery.deliveryCount >= ctx.delivery.maxDeliver,
    working: () => ctx.working(),
    async publish(subject, event) {
      await ctx.publish({ subject, event });
    },
    progress(event) {
      // Core NATS, best effort: progress must never fail a backup.
      ctx.publish({ subject: "transfer.progress", event }).catch(() => undefined);
    },
  };
}

export function backupRequestedFunction(deps: BackupRequestedDeps, p: BackupRequestedPolicy = {}): FunctionDefinition {
  const handle = createBackupRequestedHandler(deps);
  return defineFunction({
    name: "backup-requested",
    contract: backupRequested,
    concurrency: p.concurrency ?? 1,
    ackWaitMs: p.ackWaitMs ?? 60_000,
    maxDeliver: p.maxDeliver ?? 4,
    backoffMs: p.backoffMs ?? [5_000, 30_000, 120_000],
    handler: async (event, ctx) => {
      await handle(event, toDeliveryContext(ctx));
    },
  });
}
