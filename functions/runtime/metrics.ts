/**
 * Prometheus metrics of a `ferry run` process: a prom-client registry (text format by
 * prom-client, never by hand) served over HTTP at GET /metrics when the config has
 * `metrics.listen`. Values are read at scrape time:
 *
 * - per function (this process's runners, RunnerStats): in flight, received, handled, failed,
 *   rejected, retried, redelivered, handed back;
 * - per durable consumer (JetStream consumer info): pending and ack-pending messages;
 * - per VM and per engine: whatever `MetricsSource`s the host adds (functions/runtime/host.ts adds
 *   config/status.ts's view: last success, duration, bytes, restore points, RPO lag, overdue,
 *   running, failures by code, and the engines' CA expiry);
 * - Node's process metrics (prom-client's defaults, prefixed `ferry_`).
 *
 * Metric names and alert rules: infra/prometheus/README.md.
 */
import { X509Certificate } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import { computeStatus, OutcomeIndex, OVERDUE_GRACE_MS, type VmStatus } from "../../config/status.ts";
import { followOutcomes, readKvFacts, type VmPolicies } from "../../config/status-source.ts";
import { certEnginesOf } from "../../pipeline/trust.ts";
import type { FunctionRunner, RunnerStats } from "./runner.ts";

/** Adds metrics to the registry (collect callbacks read their values at scrape time). */
export type MetricsSource = (registry: Registry, o: { readonly log: Logger; readonly signal: AbortSignal }) => void | Promise<void>;

export interface MetricsOptions {
  /** host:port (contracts/config.ts `metrics.listen`); port 0 = any free port. */
  readonly listen: string;
  /** More metrics: per VM, per engine (the host adds them). */
  readonly sources?: readonly MetricsSource[];
}

export interface MetricsServer {
  /** http://host:port/metrics */
  readonly url: string;
  readonly registry: Registry;
  close(): Promise<void>;
}

export interface ConsumerRef {
  readonly fn: string;
  readonly stream: string;
  readonly durable: string;
}

/** `host:port` → listen arguments; IPv6 hosts come in brackets. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new Error(`metrics.listen '${listen}' is not host:port`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

const FUNCTION_COUNTERS: readonly [keyof RunnerStats, string, string][] = [
  ["received", "ferry_function_received_total", "Messages this process took from the function's consumer (every delivery)."],
  ["acked", "ferry_function_handled_total", "Messages handled and acknowledged (their next events published first)."],
  ["failed", "ferry_function_failed_total", "Messages that failed for good: permanent error or deliveries exhausted (a *.failed event was published)."],
  ["rejected", "ferry_function_rejected_total", "Messages refused as invalid (<subject>.rejected published)."],
  ["retried", "ferry_function_retried_total", "Transient failures handed back for a later retry (nak with backoff)."],
  ["redelivered", "ferry_function_redelivered_total", "Deliveries that were not the first of their message (retries, redeliveries after a crash or ack timeout)."],
  ["handedBack", "ferry_function_handed_back_total", "Messages handed back unfinished at shutdown."],
];

/** The registry with the per-function and per-consumer metrics of these runners. */
export function createRegistry(runners: readonly FunctionRunner[], jsm: JetStreamManager, consumers: readonly ConsumerRef[], log: Logger): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "ferry_" });
  // prom-client exports these three as gauges named *_total, which Prometheus' own lint
  // (promtool check metrics) refuses: a _total suffix is for counters. Leave them out.
  for (const name of ["active_handles_total", "active_requests_total", "active_resources_total"]) registry.removeSingleMetric(`ferry_nodejs_${name}`);
  new Gauge({
    name: "ferry_function_in_flight",
    help: "Messages the function is handling in this process right now.",
    labelNames: ["function"],
    registers: [registry],
    collect() {
      for (const r of runners) this.set({ function: r.def.name }, r.stats.inFlight);
    },
  });
  for (const [key, name, help] of FUNCTION_COUNTERS) {
    new Counter({
      name,
      help,
      labelNames: ["function"],
      registers: [registry],
      collect() {
        this.reset();
        for (const r of runners) this.inc({ function: r.def.name }, Number(r.stats[key] ?? 0));
      },
    });
  }

  // Consumer state: one consumer info per consumer, shared by the gauges of one scrape.
  let infos: Promise<Map<string, { pending: number; ackPending: number; redelivered: number }>> | undefined;
  let infosAt = 0;
  const consumerInfos = () => {
    if (!infos || Date.now() - infosAt > 1000) {
      infosAt = Date.now();
      infos = (async () => {
        const out = new Map<string, { pending: number; ackPending: number; redelivered: number }>();
        for (const c of consumers) {
          try {
            const ci = await jsm.consumers.info(c.stream, c.durable);
            out.set(`${c.stream}/${c.durable}`, { pending: ci.num_pending, ackPending: ci.num_ack_pending, redelivered: ci.num_redelivered });
          } catch (err) {
            log.warn({ err, stream: c.stream, consumer: c.durable }, "metrics: consumer info failed");
          }
        }
        return out;
      })();
    }
    return infos;
  };
  const consumerGauge = (name: string, help: string, pick: (v: { pending: number; ackPending: number; redelivered: number }) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["stream", "consumer"],
      registers: [registry],
      async collect() {
        this.reset();
        const all = await consumerInfos();
        for (const c of consumers) {
          const v = all.get(`${c.stream}/${c.durable}`);
          if (v) this.set({ stream: c.stream, consumer: c.durable }, pick(v));
        }
      },
    });
  consumerGauge("ferry_consumer_pending_messages", "Messages in the stream the durable consumer has not delivered yet (JetStream num_pending).", (v) => v.pending);
  consumerGauge("ferry_consumer_ack_pending_messages", "Messages delivered and not yet acknowledged (JetStream num_ack_pending): work in flight across all processes.", (v) => v.ackPending);
  consumerGauge("ferry_consumer_redelivered_messages", "Messages delivered more than once and not yet acknowledged (JetStream num_redelivered).", (v) => v.redelivered);
  return registry;
}

/**
 * Serve `registry` at GET /metrics on `listen`. Rejects when the address cannot be bound
 * (EADDRINUSE, EACCES, ...).
 */
export async function serveMetrics(registry: Registry, listen: string, log: Logger): Promise<MetricsServer> {
  const { host, port } = parseListen(listen);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    if (path === "/metrics") {
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(req.method === "HEAD" ? undefined : text),
        (err: unknown) => {
          log.error({ err }, "metrics: scrape failed");
          res.writeHead(500, { "content-type": "text/plain" }).end(`scrape failed: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}\n`);
        },
      );
      return;
    }
    if (path === "/" || path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("Ferry: metrics at /metrics\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are at /metrics\n");
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  const url = `http://${shownHost}:${addr.port}/metrics`;
  return {
    url,
    registry,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// --- Per VM and per engine: config/status.ts's view of the bus --------------------------------

export interface VmMetricsOptions {
  readonly nc: NatsConnection;
  /** The config's VMs (effective policies). */
  readonly policies: VmPolicies;
  /** CA files to report the expiry of, by engine name (missing or unreadable files are left out): trustedCaFiles(config). */
  readonly caFiles?: Readonly<Record<string, string>>;
  /** Zone the schedules are written in (default: this machine's). */
  readonly timeZone?: string;
  readonly graceMs?: number;
  /** KV is read at most this often (default 5 s): scrapes in between get the same values. */
  readonly minIntervalMs?: number;
}

/**
 * The CA file Ferry trusts for each engine, from pipeline/trust.ts (the one home of where an
 * engine's CA is: caFile, else certs/<name>-ca.pem beside the config file or in `cwd`). Engines
 * with `insecure: true` trust no CA and are left out.
 */
export function trustedCaFiles(config: Parameters<typeof certEnginesOf>[0], cwd?: string): Record<string, string> {
  return Object.fromEntries(
    Object.entries(certEnginesOf(config, cwd))
      .filter(([, e]) => !e.insecure)
      .map(([name, e]) => [name, e.caPath]),
  );
}

/**
 * Per-VM metrics from KV (chains, runs, leases; read per scrape) and FERRY_EVENTS (followed live
 * from the start of the stream), decided by config/status.ts exactly as `ferry status` decides.
 */
export function vmMetricsSource(o: VmMetricsOptions): MetricsSource {
  return async (registry, { log, signal }) => {
    const timeZone = o.timeZone ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
    let outcomes = new OutcomeIndex(0);
    try {
      outcomes = await followOutcomes(o.nc, signal, (err) => log.warn({ err }, "metrics: following FERRY_EVENTS stopped; outcomes are no longer updated"));
    } catch (err) {
      log.warn({ err }, "metrics: cannot follow FERRY_EVENTS; per-VM results come from KV only");
    }
    let snap: Promise<{ rows: VmStatus[]; ok: boolean }> | undefined;
    let snapAt = 0;
    let lastRows: VmStatus[] = [];
    const snapshot = () => {
      if (!snap || Date.now() - snapAt >= (o.minIntervalMs ?? 5000)) {
        snapAt = Date.now();
        snap = readKvFacts(o.nc).then(
          (kv) => {
            lastRows = computeStatus({ now: new Date(), policies: o.policies, ...kv, outcomes, timeZone, graceMs: o.graceMs ?? OVERDUE_GRACE_MS });
            return { rows: lastRows, ok: true };
          },
          (err: unknown) => {
            log.warn({ err }, "metrics: reading KV failed; serving the last values");
            return { rows: lastRows, ok: false };
          },
        );
      }
      return snap;
    };
    const seconds = (iso: string | undefined) => (iso ? Date.parse(iso) / 1000 : undefined);
    const vmGauge = (name: string, help: string, value: (r: VmStatus) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ["vm"],
        registers: [registry],
        async collect() {
          this.reset();
          for (const r of (await snapshot()).rows) {
            const v = value(r);
            if (v !== undefined && Number.isFinite(v)) this.set({ vm: r.vm }, v);
          }
        },
      });
    new Gauge({
      name: "ferry_status_up",
      help: "1 when the last read of the KV buckets behind the per-VM metrics worked (else the values are the last ones read).",
      registers: [registry],
      async collect() {
        this.set((await snapshot()).ok ? 1 : 0);
      },
    });
    vmGauge("ferry_vm_last_success_timestamp_seconds", "When the VM's newest successful backup finished (backup.completed; else its newest good restore point). Absent: never backed up.", (r) =>
      seconds(r.lastSuccess?.time ?? r.lastGood?.time),
    );
    vmGauge("ferry_vm_last_backup_duration_seconds", "Wall time of the VM's newest successful backup run.", (r) => r.lastSuccess?.seconds);
    vmGauge("ferry_vm_last_backup_bytes", "Bytes the VM's newest successful backup wrote to the store.", (r) => r.lastSuccess?.bytes);
    vmGauge("ferry_vm_restore_points", "Restore points of the VM in its chain.", (r) => r.restorePoints);
    vmGauge("ferry_vm_rpo_lag_seconds", "Now minus the time of the VM's newest good restore point. Absent: never backed up.", (r) => r.rpo?.lagSeconds);
    vmGauge("ferry_vm_rpo_target_seconds", "The lag the VM's schedule allows: the interval between its two newest slots plus the grace. Absent: no schedule (disabled, not in the config).", (r) => r.rpo?.targetSeconds);
    vmGauge("ferry_vm_overdue", "1 when the VM's RPO lag is above its target (a slot passed by more than the grace without a new good restore point).", (r) => (r.overdue ? 1 : 0));
    vmGauge("ferry_vm_last_backup_failed", "1 when the VM's last finished backup failed (backup.failed, or a run that ended without an outcome).", (r) => (r.lastResult === "failed" ? 1 : 0));
    vmGauge("ferry_vm_backup_running", "1 while a backup run of the VM is in progress.", (r) => (r.running ? 1 : 0));
    vmGauge("ferry_vm_next_backup_timestamp_seconds", "The VM's next scheduled slot. Absent: no schedule.", (r) => seconds(r.schedule?.next));
    vmGauge("ferry_vm_last_result_timestamp_seconds", "When the VM's last finished backup result (ok or failed) was decided.", (r) => seconds(r.outcome?.time));
    new Counter({
      name: "ferry_vm_backup_failures_total",
      help: "backup.failed events by VM and error code seen by this process since it started.",
      labelNames: ["vm", "code"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [vm, codes] of outcomes.failures) for (const [code, n] of codes) this.inc({ vm, code }, n);
      },
    });

    const caCache = new Map<string, { mtimeMs: number; notAfter: number | undefined }>();
    new Gauge({
      name: "ferry_engine_ca_expiry_timestamp_seconds",
      help: "When the CA certificate Ferry trusts for the engine (its caFile, else certs/<engine>-ca.pem) expires.",
      labelNames: ["engine"],
      registers: [registry],
      async collect() {
        this.reset();
        for (const [engine, file] of Object.entries(o.caFiles ?? {})) {
          try {
            const st = await stat(file);
            let hit = caCache.get(file);
            if (!hit || hit.mtimeMs !== st.mtimeMs) {
              const pem = (await readFile(file, "utf8")).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
              hit = { mtimeMs: st.mtimeMs, notAfter: pem ? Date.parse(new X509Certificate(pem).validTo) / 1000 : undefined };
              caCache.set(file, hit);
            }
            if (hit.notAfter !== undefined && Number.isFinite(hit.notAfter)) this.set({ engine }, hit.notAfter);
          } catch {
            // no file (yet), or not a certificate: nothing to report
          }
        }
      },
    });
  };
}
