/**
 * alerts process wiring: one engine client per configured engine (audit log only), the run
 * journal and the rate-limit bucket from KV, and the summary timer. The lead's shared
 * composition root can replace the engine part: the handler only sees `postAlert`.
 */
import { hostname } from "node:os";
import type { LoadedConfig } from "../../config/load.ts";
import { CONFIG_DEFAULTS } from "../../contracts/config.ts";
import { createEngineClient } from "../../adapters/ovirt/mod.ts";
import { buckets } from "../../infra/streams/mod.ts";
import { readCaFiles } from "../../pipeline/composition.ts";
import { createRunJournal } from "../../pipeline/run-journal.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { ALERTS_PER_MINUTE, FLUSH_EVERY_MS, WINDOW_MS, alertsFunction, createAlerts, startSummaryFlusher } from "./definition.ts";
import { createPostAlert } from "./engine-alerts.ts";
import { createAlertLimiter } from "./limiter.ts";

const create: FunctionFactory<LoadedConfig> = async ({ config, log, kvm, signal }) => {
  const caPems = await readCaFiles(config.engines);
  const clients = new Map(
    Object.entries(config.engines).map(([name, e]) => [
      name,
      createEngineClient({ url: e.url, user: e.user, password: e.password, caPem: caPems[name], insecure: e.insecure ?? false, correlationId: `ferry-alerts-${name}` }),
    ]),
  );
  signal.addEventListener("abort", () => void Promise.all([...clients.values()].map((c) => c.close().catch(() => undefined))), { once: true });
  const runs = createRunJournal(await kvm.open(buckets.runs));
  const limiter = createAlertLimiter(await kvm.open(buckets.alerts), {
    limit: ALERTS_PER_MINUTE,
    windowMs: WINDOW_MS,
    clock: () => Date.now(),
    owner: `${hostname()}:${process.pid}`,
  });
  const alerts = createAlerts({
    postAlert: createPostAlert(clients),
    runs,
    limiter,
    defaultEngine: CONFIG_DEFAULTS.engine,
    hasEngine: (name) => clients.has(name),
    log,
  });
  startSummaryFlusher(alerts, { everyMs: FLUSH_EVERY_MS, signal, log });
  return alertsFunction(alerts);
};
export default create;
