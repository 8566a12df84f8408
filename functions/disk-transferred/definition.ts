/** The disk-transferred function for the runtime. Quick KV/file work: a few deliveries, short waits. */
import { diskTransferred } from "../../contracts/disk-transferred.ts";
import { defineFunction, type FunctionDefinition } from "../runtime/mod.ts";
import { createDiskTransferredHandler, type DiskTransferredDeps } from "./handler.ts";

export function diskTransferredFunction(deps: DiskTransferredDeps, p: { ackWaitMs?: number; maxDeliver?: number; backoffMs?: readonly number[] } = {}): FunctionDefinition {
  const handle = createDiskTransferredHandler(deps);
  return defineFunction({
    name: "disk-transferred",
    contract: diskTransferred,
    concurrency: 4,
    ackWaitMs: p.ackWaitMs ?? 30_000,
    maxDeliver: p.maxDeliver ?? 6,
    backoffMs: p.backoffMs ?? [1_000, 5_000, 15_000],
    handler: async (event, ctx) => ({
      publish: await handle(event, {
        lastAttempt: ctx.delivery.deliveryCount >= ctx.delivery.maxDeliver,
        publish: async (subject, e) => {
          await ctx.publish({ subject, event: e });
        },
      }),
    }),
  });
}
