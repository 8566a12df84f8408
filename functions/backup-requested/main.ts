/**
 * backup-requested process wiring: real engine clients, dataplane, store and KV from the config.
 * Every backup-requested process also runs the reconciler (at start, then every 3 minutes) and,
 * at start, the store's sweep of stale temp files a crashed worker left.
 */
import type { LoadedConfig } from "../../config/load.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { createReconciler } from "../../pipeline/reconcile.ts";
import { backupFunctionDeps, buildBackupWiring, readCaFiles, settingsFromConfig } from "../../pipeline/composition.ts";
import { backupRequestedFunction } from "./definition.ts";

const RECONCILE_EVERY_MS = 3 * 60_000;

const create: FunctionFactory<LoadedConfig> = async ({ config, log, kvm, signal }) => {
  const settings = settingsFromConfig(config, await readCaFiles(config.engines));
  const wiring = await buildBackupWiring(settings, (b) => kvm.open(b));
  const deps = backupFunctionDeps(wiring, settings, log);
  void wiring.store.volume
    .sweep()
    .then((r) => r.removedTemp.length && log.info({ removedTemp: r.removedTemp, orphans: r.orphans }, "store sweep removed stale temp files"))
    .catch((err: unknown) => log.warn({ err }, "store sweep failed"));
  void createReconciler(deps.reconciler).start(RECONCILE_EVERY_MS, signal);
  signal.addEventListener("abort", () => void wiring.close(), { once: true });
  return backupRequestedFunction(deps.backupRequested);
};
export default create;
