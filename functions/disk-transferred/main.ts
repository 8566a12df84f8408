/**
 * disk-transferred process wiring: the chain KV, the store (manifest writes) and the engine
 * clients (a failure for good posts the run's alert to its source engine's audit log).
 */
import type { LoadedConfig } from "../../config/load.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { backupFunctionDeps, buildBackupWiring, readCaFiles, settingsFromConfig } from "../../pipeline/composition.ts";
import { diskTransferredFunction } from "./definition.ts";

const create: FunctionFactory<LoadedConfig> = async ({ config, log, kvm, signal }) => {
  const settings = settingsFromConfig(config, await readCaFiles(config.engines));
  const wiring = await buildBackupWiring(settings, (b) => kvm.open(b));
  signal.addEventListener("abort", () => void wiring.close(), { once: true });
  return diskTransferredFunction(backupFunctionDeps(wiring, settings, log).diskTransferred);
};
export default create;
