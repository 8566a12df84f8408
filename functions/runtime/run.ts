/**
 * The function host: provision, start one runner per function, register the micro service,
 * and on `signal` shut down the same way everywhere — stop pulling, let in-flight work finish
 * within the grace period or hand it back, drain, and report whether the connection failed.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { ensureConsumer, provisionInfra } from "../../adapters/nats/provision.ts";
import { durableConsumer } from "../../infra/streams/mod.ts";
import { createPublisher } from "./publisher.ts";
import { FunctionRunner } from "./runner.ts";
import { Semaphore } from "./semaphore.ts";
import { registerService } from "./service.ts";
import { watchExhausted } from "./exhausted.ts";
import { createRegistry, serveMetrics, type ConsumerRef, type MetricsOptions, type MetricsServer } from "./metrics.ts";
import type { Subscription } from "@nats-io/nats-core";
import type { FunctionDefinition } from "./types.ts";

export interface RunOptions {
  readonly nc: NatsConnection;
  readonly log: Logger;
  /** Abort to shut down (SIGTERM/SIGINT). */
  readonly signal: AbortSignal;
  /** How long in-flight handlers may take after the signal before their messages are handed back. Default 30 s. */
  readonly graceMs?: number;
  /** Stream/bucket/consumer replicas: 1 (one server) or 3 (cluster). Default 1. */
  readonly replicas?: number;
  /** Provision streams and buckets (consumers are always ensured). Default true. */
  readonly provision?: boolean;
  /** Bound on messages in flight across all functions of this process. Default: sum of concurrencies. */
  readonly maxInFlight?: number;
  /** Pull request expiry. Default 5 s. */
  readonly pullExpiresMs?: number;
  /** Drain and close `nc` at the end. Default true. */
  readonly drain?: boolean;
  readonly version?: string;
  /** Serve GET /metrics (Prometheus) while the functions run (config `metrics.listen`). */
  readonly metrics?: MetricsOptions;
  /**
   * Called once the runners have stopped, before the service stops and NATS is drained: the host
   * stops the functions' background work here, while it can still use the connection.
   */
  readonly beforeDrain?: () => Promise<void>;
  /** Called once consumers are ready and runners started (tests, readiness logs). */
  readonly onReady?: (info: { serviceId: string; metricsUrl?: string }) => void;
}

export interface RunResult {
  /** Set when the connection closed with an error (the process should exit non-zero). */
  readonly connectionError?: Error;
  readonly handedBack: number;
}

export async function runFunctions(defs: readonly FunctionDefinition[], o: RunOptions): Promise<RunResult> {
  const names = new Set<string>();
  for (const d of defs) {
    if (names.has(d.name)) throw new Error(`function ${d.name} given twice`);
    names.add(d.name);
  }
  const { nc, log } = o;
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const replicas = o.replicas ?? 1;
  if (o.provision ?? true) {
    const report = await provisionInfra(nc, jsm, { replicas });
    log.info({ report }, "streams and buckets ready");
  }
  const publisher = createPublisher(nc, js);
  const processSlots = new Semaphore(o.maxInFlight ?? Math.max(1, defs.reduce((n, d) => n + d.concurrency, 0)));
  const runners: FunctionRunner[] = [];
  const advisories: Subscription[] = [];
  const consumers: ConsumerRef[] = [];
  for (const def of defs) {
    const consumerDef = durableConsumer(def);
    consumers.push({ fn: def.name, stream: consumerDef.stream, durable: consumerDef.durableName });
    const change = await ensureConsumer(jsm, consumerDef, replicas);
    log.info({ fn: def.name, stream: consumerDef.stream, consumer: consumerDef.durableName, change }, "consumer ready");
    const consumer = await js.consumers.get(consumerDef.stream, consumerDef.durableName);
    const runner = new FunctionRunner(def, { consumer, publisher, log, processSlots, pullExpiresMs: o.pullExpiresMs });
    runners.push(runner);
    advisories.push(watchExhausted(nc, jsm, runner, consumerDef.stream, log));
  }

  const service = await registerService(nc, runners, { version: o.version ?? "0.1.0", instance: `${process.pid}` });
  const metricsStop = new AbortController();
  const metrics = o.metrics ? await startMetrics(o.metrics, runners, jsm, consumers, log, metricsStop.signal) : undefined;
  for (const r of runners) r.start();
  log.info({ functions: [...names], serviceId: service.id, pid: process.pid, ...(metrics ? { metrics: metrics.url } : {}) }, "functions running");
  o.onReady?.({ serviceId: service.id, ...(metrics ? { metricsUrl: metrics.url } : {}) });

  // Run until asked to stop, or until the connection is gone for good.
  let connectionError: Error | undefined;
  const closed = nc.closed().then((err) => {
    if (err) connectionError = err;
    return "closed" as const;
  });
  const stopped = new Promise<"signal">((resolve) => {
    if (o.signal.aborted) resolve("signal");
    else o.signal.addEventListener("abort", () => resolve("signal"), { once: true });
  });
  const why = await Promise.race([closed, stopped]);
  if (why === "closed") {
    connectionError ??= new Error("NATS connection closed");
    log.error({ err: connectionError }, "NATS connection closed; stopping");
  } else {
    log.info({ graceMs: o.graceMs ?? 30_000 }, "stopping: no new messages, waiting for in-flight work");
  }

  for (const sub of advisories) sub.unsubscribe();
  await Promise.all(runners.map((r) => r.stop(why === "closed" ? 0 : (o.graceMs ?? 30_000))));
  const handedBack = runners.reduce((n, r) => n + r.stats.handedBack, 0);
  metricsStop.abort();
  await metrics?.close();
  await o.beforeDrain?.().catch((err: unknown) => log.error({ err }, "stopping background work failed"));
  if (!nc.isClosed()) {
    await service.stop().catch((err: unknown) => log.warn({ err }, "service stop failed"));
    if (o.drain ?? true) {
      try {
        await nc.drain();
      } catch (err) {
        connectionError ??= err instanceof Error ? err : new Error(String(err));
      }
    }
  }
  log.info({ handedBack, connectionError: connectionError?.message }, "stopped");
  return { connectionError, handedBack };
}

/**
 * The metrics endpoint of this process. An address that cannot be bound (another `ferry run` on
 * this machine has it) is logged and the functions run without metrics: backups matter more.
 */
async function startMetrics(
  o: MetricsOptions,
  runners: readonly FunctionRunner[],
  jsm: Awaited<ReturnType<typeof jetstreamManager>>,
  consumers: readonly ConsumerRef[],
  log: Logger,
  signal: AbortSignal,
): Promise<MetricsServer | undefined> {
  const registry = createRegistry(runners, jsm, consumers, log);
  try {
    for (const source of o.sources ?? []) await source(registry, { log, signal });
    const server = await serveMetrics(registry, o.listen, log);
    log.info({ url: server.url, listen: o.listen }, "metrics listening");
    return server;
  } catch (err) {
    log.error({ err, listen: o.listen }, `metrics: cannot serve on ${o.listen}; this process runs without /metrics`);
    return undefined;
  }
}
