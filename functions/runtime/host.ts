/**
 * What `ferry run` does, as a library call: provision streams and buckets (functions may open
 * buckets while they are built), build each selected function from its main.ts, and run them.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import type { LoadedConfig } from "../../config/load.ts";
import { provisionInfra } from "../../adapters/nats/provision.ts";
import { discoverFunctions, loadFunction, selectFunctions } from "./discover.ts";
import { trustedCaFiles, vmMetricsSource } from "./metrics.ts";
import { runFunctions, type RunOptions, type RunResult } from "./run.ts";

export interface HostOptions extends Omit<RunOptions, "provision"> {
  readonly config: LoadedConfig;
  /** Folder holding one folder per function (default: the repo's functions/). */
  readonly functionsDir: string;
  /** Function names, or ["all"]. */
  readonly names: readonly string[];
  readonly nc: NatsConnection;
  readonly log: Logger;
}

export async function hostFunctions(o: HostOptions): Promise<RunResult> {
  const selected = selectFunctions(await discoverFunctions(o.functionsDir), o.names);
  const jsm = await jetstreamManager(o.nc);
  const report = await provisionInfra(o.nc, jsm, { replicas: o.replicas ?? 1 });
  o.log.info({ report }, "streams and buckets ready");
  // Functions close their clients and stop background work on this signal. It fires after the
  // runners stopped (in-flight handlers finished or were handed back), not at SIGTERM, so a
  // handler finishing inside the grace period still has its engine client.
  const done = new AbortController();
  const ctx = { config: o.config, nc: o.nc, js: jetstream(o.nc), kvm: new Kvm(o.nc), signal: done.signal };
  try {
    const defs = [];
    for (const fn of selected) defs.push(await loadFunction(fn, { ...ctx, log: o.log.child({ fn: fn.name }) }));
    // config `metrics.listen`: GET /metrics with the functions' counters, the consumers, and the
    // per-VM view `ferry status` shows.
    const metrics = o.metrics ?? (o.config.metrics ? { listen: o.config.metrics.listen, sources: [vmMetricsSource(vmMetricsOptions(o))] } : undefined);
    return await runFunctions(defs, { ...o, provision: false, ...(metrics ? { metrics } : {}) });
  } finally {
    done.abort(new Error("functions stopped"));
  }
}

function vmMetricsOptions(o: HostOptions) {
  const policies = Object.fromEntries(Object.entries(o.config.vms).map(([name, p]) => [name, { enabled: p.enabled, schedule: p.schedule }]));
  // The CA each engine is trusted with, where pipeline/trust.ts says it is.
  const caFiles = trustedCaFiles(o.config);
  // The config's zone: /metrics' next slot and RPO agree with ferry status and ferry schedule.
  return { nc: o.nc, policies, caFiles, timeZone: o.config.timeZone };
}
