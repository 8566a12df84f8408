/** The chain-updated function for the runtime. Retention may merge layers: one at a time per process. */
import { chainUpdated } from "../../contracts/chain-updated.ts";
import { defineFunction, type FunctionDefinition } from "../runtime/mod.ts";
import { createChainUpdatedHandler, type ChainUpdatedDeps } from "./handler.ts";

export function chainUpdatedFunction(deps: ChainUpdatedDeps, p: { ackWaitMs?: number; maxDeliver?: number; backoffMs?: readonly number[] } = {}): FunctionDefinition {
  const handle = createChainUpdatedHandler(deps);
  return defineFunction({
    name: "chain-updated",
    contract: chainUpdated,
    concurrency: 1,
    ackWaitMs: p.ackWaitMs ?? 60_000,
    maxDeliver: p.maxDeliver ?? 5,
    backoffMs: p.backoffMs ?? [5_000, 30_000, 120_000],
    handler: async (event, ctx) => ({
      publish: await handle(event),
    }),
  });
}
