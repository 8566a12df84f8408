/** restore-requested process wiring: the process's pipeline (pipeline/composition.ts), restore side. */
import type { LoadedConfig } from "../../config/load.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { pipelineFor, restoreFunctionDeps } from "../../pipeline/composition.ts";
import { restoreRequestedFunction } from "./definition.ts";

const create: FunctionFactory<LoadedConfig> = async (ctx) => {
  return restoreRequestedFunction(restoreFunctionDeps(await pipelineFor(ctx), ctx.log));
};
export default create;
