/**
 * backup-requested process wiring: the process's pipeline (pipeline/composition.ts). Every
 * backup-requested process also runs the reconciler (pipeline/reconcile.ts: at start, then every
 * 3 minutes) and, at start, the store's sweep of stale temp files a crashed worker left. It runs
 * up to concurrency.backupsPerEngine backups per engine at once, under the engine slots.
 */
import type { LoadedConfig } from "../../config/load.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { createReconciler } from "../../pipeline/reconcile.ts";
import { backupConcurrencyOf, backupFunctionDeps, pipelineFor } from "../../pipeline/composition.ts";
import { backupRequestedFunction } from "./definition.ts";
import { createPublisher } from "../runtime/mod.ts";

const RECONCILE_EVERY_MS = 3 * 60_000;

const create: FunctionFactory<LoadedConfig> = async (ctx) => {
  const wiring = await pipelineFor(ctx);
  const deps = backupFunctionDeps(wiring, ctx.log);
  void wiring.store.volume
    .sweep()
    .then((r) => r.removedTemp.length && ctx.log.info({ removedTemp: r.removedTemp, orphans: r.orphans }, "store sweep removed stale temp files"))
    .catch((err: unknown) => ctx.log.warn({ err }, "store sweep failed"));
  const publisher = createPublisher(ctx.nc, ctx.js);
  const announceFailure = async (event: { id: string } & Record<string, unknown>) => void (await publisher.publish({ subject: "backup.failed", event }));
  ctx.background("reconciler", createReconciler({ ...deps.reconciler, announceFailure }).start(RECONCILE_EVERY_MS, ctx.signal));
  // Several backups at once per process (concurrency.backupsPerEngine per engine); the engine slots
  // (KV ferry-slots) bound them across every process, so a request beyond the limit waits for one.
  return backupRequestedFunction(deps.backupRequested, { concurrency: backupConcurrencyOf(wiring.settings) });
};
export default create;
