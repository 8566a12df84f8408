/** chain-updated process wiring: chain KV, store retention, engine clients for checkpoints and the audit log. */
import type { LoadedConfig } from "../../config/load.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { buildBackupWiring, readCaFiles, settingsFromConfig } from "../../pipeline/composition.ts";
import { chainUpdatedFunction } from "./definition.ts";
import { createChainUpdatedDeps } from "./wiring.ts";

const create: FunctionFactory<LoadedConfig> = async ({ config, log, kvm, signal }) => {
  const settings = settingsFromConfig(config, await readCaFiles(config.engines));
  const wiring = await buildBackupWiring(settings, (b) => kvm.open(b));
  signal.addEventListener("abort", () => void wiring.close(), { once: true });
  return chainUpdatedFunction(createChainUpdatedDeps(wiring, settings, log));
};
export default create;
