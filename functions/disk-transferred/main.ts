/** disk-transferred process wiring: the chain KV, the store (manifest writes) and the VM leases. */
import type { LoadedConfig } from "../../config/load.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { backupFunctionDeps, pipelineFor } from "../../pipeline/composition.ts";
import { diskTransferredFunction } from "./definition.ts";

const create: FunctionFactory<LoadedConfig> = async (ctx) => {
  const wiring = await pipelineFor(ctx);
  return diskTransferredFunction(backupFunctionDeps(wiring, ctx.log).diskTransferred);
};
export default create;
