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
    return await runFunctions(defs, { ...o, provision: false });
  } finally {
    done.abort(new Error("functions stopped"));
  }
}
