/** restore-requested process wiring: the process's pipeline (pipeline/composition.ts), restore side. */
import type { LoadedConfig } from "../../config/load.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { pipelineFor, restoreFunctionDeps } from "../../pipeline/composition.ts";
import { restoreRequestedFunction } from "./definition.ts";
import { sweepScratch } from "../../dataplane/mod.ts";

const create: FunctionFactory<LoadedConfig> = async (ctx) => {
  // NBD socket dirs of a worker that was killed mid-upload (nobody else removes them).
  void sweepScratch()
    .then((removed) => removed.length && ctx.log.info({ removed }, "removed scratch dirs of transfer processes that are gone"))
    .catch((err: unknown) => ctx.log.warn({ err }, "scratch sweep failed"));
  return restoreRequestedFunction(restoreFunctionDeps(await pipelineFor(ctx), ctx.log));
};
export default create;
