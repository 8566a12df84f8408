/** chain-updated process wiring: chain KV, store retention, engine clients for checkpoints and the audit log. */
import type { LoadedConfig } from "../../config/load.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { pipelineFor } from "../../pipeline/composition.ts";
import { chainUpdatedFunction } from "./definition.ts";
import { createChainUpdatedDeps } from "./wiring.ts";

const create: FunctionFactory<LoadedConfig> = async (ctx) => chainUpdatedFunction(createChainUpdatedDeps(await pipelineFor(ctx), ctx.log));
export default create;
