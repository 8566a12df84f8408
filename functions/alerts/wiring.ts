/**
 * The alerts function's real deps over the process's pipeline wiring: its engine clients (shared
 * with the other functions), the run journal, and the rate-limit bucket. Used by main.ts and by
 * the tests that run the whole pipeline.
 */
import { CONFIG_DEFAULTS } from "../../contracts/config.ts";
import type { BackupWiring } from "../../pipeline/composition.ts";
import { ALERTS_PER_MINUTE, WINDOW_MS, createAlerts } from "./definition.ts";
import type { Alerts, AlertsDeps } from "./handler.ts";
import { createPostAlert } from "./engine-alerts.ts";
import { createAlertLimiter } from "./limiter.ts";
import type { KvLike } from "../../adapters/nats/kv-record.ts";

export function createAlertsFor(w: BackupWiring, alertsBucket: KvLike, log: AlertsDeps["log"]): Alerts {
  const clients = new Map([...w.engines].map(([name, e]) => [name, e.client]));
  return createAlerts({
    postAlert: createPostAlert(clients),
    runs: w.runs,
    limiter: createAlertLimiter(alertsBucket, { limit: ALERTS_PER_MINUTE, windowMs: WINDOW_MS, clock: () => Date.now(), owner: w.owner }),
    defaultEngine: CONFIG_DEFAULTS.engine,
    hasEngine: (name) => clients.has(name),
    otherEngine: (name) => [...clients.keys()].find((n) => n !== name),
    log,
  });
}
