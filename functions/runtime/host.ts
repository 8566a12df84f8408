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
  /**
   * At stop, how long the functions' background work (FunctionContext.background) may take to
   * end after the signal before NATS is drained without it. Default 5 s: every loop honours the
   * signal, so this bound is only reached by a defect, which is then logged by name.
   */
  readonly backgroundGraceMs?: number;
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
  const background = createBackground(done, o.log, o.backgroundGraceMs ?? 5_000);
  const base = { config: o.config, nc: o.nc, js: jetstream(o.nc), kvm: new Kvm(o.nc), signal: done.signal };
  try {
    const defs = [];
    for (const fn of selected) {
      const log = o.log.child({ fn: fn.name });
      defs.push(await loadFunction(fn, { ...base, log, background: (what, work) => background.add(`${fn.name}: ${what}`, work, log) }));
    }
    // config `metrics.listen`: GET /metrics with the functions' counters, the consumers, and the
    // per-VM view `ferry status` shows.
    const metrics = o.metrics ?? (o.config.metrics ? { listen: o.config.metrics.listen, sources: [vmMetricsSource(vmMetricsOptions(o))] } : undefined);
    return await runFunctions(defs, { ...o, provision: false, ...(metrics ? { metrics } : {}), beforeDrain: () => background.stop() });
  } finally {
    // Also on a failed start (no drain then): background work must not outlive the host.
    await background.stop();
  }
}

/**
 * The functions' background loops. `stop` aborts their signal and waits for them at most
 * `graceMs`; whatever still runs then is named in one error line and left behind (the next
 * process's reconciler re-runs any of its work), so a defect shows up in the logs instead of as
 * a service that does not stop.
 */
function createBackground(done: AbortController, log: Logger, graceMs: number) {
  const running = new Map<Promise<void>, string>();
  let stopping: Promise<void> | undefined;
  return {
    add(what: string, work: Promise<unknown>, fnLog: Logger): void {
      const settled: Promise<void> = work.then(
        () => undefined,
        (err: unknown) => void (done.signal.aborted ? fnLog.debug({ err, what }, "background work ended on stop") : fnLog.error({ err, what }, "background work failed")),
      ).finally(() => running.delete(settled));
      running.set(settled, what);
    },
    stop(): Promise<void> {
      stopping ??= (async () => {
        done.abort(new Error("functions stopped"));
        if (!running.size) return;
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), graceMs)));
        const why = await Promise.race([Promise.all(running.keys()).then(() => "done" as const), late]);
        clearTimeout(timer);
        if (why === "late") log.error({ pending: [...running.values()], graceMs }, "background work did not stop on the signal in time; abandoned");
      })();
      return stopping;
    },
  };
}

function vmMetricsOptions(o: HostOptions) {
  const policies = Object.fromEntries(Object.entries(o.config.vms).map(([name, p]) => [name, { enabled: p.enabled, schedule: p.schedule }]));
  // The CA each engine is trusted with, where pipeline/trust.ts says it is.
  const caFiles = trustedCaFiles(o.config);
  // The config's zone: /metrics' next slot and RPO agree with ferry status and ferry schedule.
  return { nc: o.nc, policies, caFiles, timeZone: o.config.timeZone };
}
