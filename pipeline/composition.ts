/**
 * The composition root of the backup functions: real engine clients, the store, the data plane
 * and the KV-backed journal, leases and chains, built ONCE per process (`pipelineFor`), so
 * `ferry run all` shares one set of engine clients per engine between its functions. Only
 * main.ts files (and tests that start the pipeline against the lab) call this; handlers only see
 * the ports.
 */
import { hostname } from "node:os";
import { readFile } from "node:fs/promises";
import { createEngineClient } from "../adapters/ovirt/client.ts";
import { openImageio } from "../adapters/imageio/mod.ts";
import { download, sweepScratch, upload } from "../dataplane/mod.ts";
import { buckets } from "../infra/streams/mod.ts";
import { CONFIG_DEFAULTS } from "../contracts/config.ts";
import type { RetentionPolicy } from "../domain/retention/mod.ts";
import { createEnginePort } from "./engine-port.ts";
import { createStorePort, type StorePort } from "./store-port.ts";
import type { FullPolicy } from "../domain/backup/decide.ts";
import type { Transfers } from "./ports.ts";
import type { KV } from "@nats-io/kv";
import { chainsKv, openStore, type ChainsKv } from "../adapters/store/mod.ts";
import { chainViewOf } from "./chain-view.ts";
import { createChainGuard, ferryCorrelationId, type ChainGuard } from "./chain-guard.ts";
import { healingChains } from "./chain-heal.ts";
import { createScrubber } from "./scrub.ts";
import { createRunJournal, type RunJournal } from "./run-journal.ts";
import { createLeases, type Leases } from "./vm-lease.ts";
import { createSlots, type SlotLimits, type Slots } from "./engine-slots.ts";
import type { ReconcileEngine } from "./ports.ts";
import { createDeploymentId } from "./deployment.ts";
import { createRestoreEngine, type RestoreEngine } from "./restore-engine.ts";
import { createRestoreJournal, type RestoreJournal } from "./restore-journal.ts";
import { createReplicas, type Replicas } from "./replica.ts";
import type { RestoreSettings } from "./restore-plan.ts";
import type { NatsConnection } from "@nats-io/nats-core";
import { createTrustStore, trustEnginesOf, type TrustStore } from "./trust.ts";

export interface EngineSettings {
  readonly url: string;
  readonly user: string;
  readonly password: string;
  readonly caPem?: string | undefined;
  readonly insecure?: boolean | undefined;
}

export interface BackupSettings {
  readonly engines: Readonly<Record<string, EngineSettings>>;
  readonly storePath: string;
  readonly fullPolicy: (vmName: string) => FullPolicy;
  readonly retention: (vmName: string) => RetentionPolicy;
  /** The config's timeZone: the calendar of retention's days/weeks/months (the full policy carries it too). */
  readonly timeZone?: string | undefined;
  /** Parallel connections per disk transfer. */
  readonly connections?: number;
  /** concurrency.backupsPerEngine / backupsPerHost / backupsPerStorageDomain (default CONFIG_DEFAULTS.backupsPerEngine, the others off). */
  readonly slotLimits?: SlotLimits;
  readonly pollMs?: number;
  /** A VM lease whose holder stops renewing it lasts this long (default CONFIG_DEFAULTS.leaseTtlMs). */
  readonly leaseTtlMs?: number;
  /** A lease handed from one step of a run to the next lasts this long (default CONFIG_DEFAULTS.handOffTtlMs). */
  readonly handOffTtlMs?: number;
  /** How long a backup step waits out an engine outage (default CONFIG_DEFAULTS.engineOutageBudgetMs). */
  readonly engineOutageBudgetMs?: number;
  /** The config's restore settings (defaults filled in). */
  readonly restore?: RestoreSettings;
  /** vms.<vm>.replicateToDr. */
  readonly replicates?: (vmName: string) => boolean;
  /** The reconciler removes orphan store files untouched this long (default CONFIG_DEFAULTS.orphanGraceHours). */
  readonly orphanGraceMs?: number;
  /** Scheduled scrub interval per VM; 0 = off (default CONFIG_DEFAULTS.scrubEveryDays). */
  readonly scrubEveryMs?: number;
}

export type PortEngine = ReturnType<typeof createEnginePort>;

export interface BackupWiring {
  readonly engines: ReadonlyMap<string, PortEngine>;
  /** The restore side's port over the same engine clients. */
  readonly restoreEngines: ReadonlyMap<string, RestoreEngine>;
  readonly restoreJournal: RestoreJournal;
  /** Which point each DR copy holds (mode replicate). */
  readonly replicas: Replicas;
  /** backup-requested's port over the store; `store.volume` is the adapters/store Store itself. */
  readonly store: StorePort;
  readonly transfers: Transfers;
  readonly runs: RunJournal;
  readonly leases: Leases;
  /** KV ferry-slots: backups at once per engine (host, storage domain) across all processes. */
  readonly slots: Slots;
  readonly chains: ChainsKv;
  /** KV ferry-guard: engine-event marks that make a VM's next backup full (pipeline/chain-guard.ts). */
  readonly guard: ChainGuard;
  readonly owner: string;
  /** This deployment's mark on the engine objects it creates (one per KV domain, pipeline/deployment.ts). */
  readonly deployment: string;
  readonly settings: BackupSettings;
  /** The engine CAs in use, swapped at run time (pipeline/trust.ts); absent when built with fixed CAs. */
  readonly trust?: TrustStore | undefined;
  /** The engine a backup run used (its journal), else the default 'prd'. */
  engineForRun(runId: string | undefined): Promise<PortEngine | undefined>;
  close(): Promise<void>;
}

const ISO_DAY = { monday: 1, tuesday: 2, wednesday: 3, thursday: 4, friday: 5, saturday: 6, sunday: 7 } as const;

/** Config policy → the settings the backup functions need. */
export function settingsFromConfig(config: {
  timeZone?: string | undefined;
  engines: Readonly<Record<string, { url: string; user: string; password: string; caFile?: string | undefined; insecure?: boolean }>>;
  store: { path: string; orphanGraceHours?: number; scrubEveryDays?: number };
  vms: Readonly<Record<string, { full: { weeklyDay?: keyof typeof ISO_DAY | undefined; maxChainLength: number; everyDays?: number | undefined }; retention: RetentionPolicy; replicateToDr?: boolean }>>;
  concurrency?: { connections?: number; backupsPerEngine?: number; backupsPerHost?: number | undefined; backupsPerStorageDomain?: number | undefined };
  restore?: { cluster?: string; storageDomain?: string; nameSuffix?: string; replicaSuffix?: string; start?: boolean; replaceExisting?: boolean; timeoutMinutes?: number } | undefined;
}, caPems: Record<string, string | undefined>): BackupSettings {
  const r = config.restore;
  return {
    restore: {
      ...(r?.cluster ? { cluster: r.cluster } : {}),
      ...(r?.storageDomain ? { storageDomain: r.storageDomain } : {}),
      nameSuffix: r?.nameSuffix ?? CONFIG_DEFAULTS.nameSuffix,
      replicaSuffix: r?.replicaSuffix ?? CONFIG_DEFAULTS.replicaSuffix,
      start: r?.start ?? CONFIG_DEFAULTS.restoreStart,
      replaceExisting: r?.replaceExisting ?? CONFIG_DEFAULTS.replaceExisting,
      bootTimeoutMs: (r?.timeoutMinutes ?? CONFIG_DEFAULTS.timeoutMinutes) * 60_000,
    },
    engines: Object.fromEntries(
      Object.entries(config.engines).map(([name, e]) => [name, { url: e.url, user: e.user, password: e.password, caPem: caPems[name], insecure: e.insecure }]),
    ),
    storePath: config.store.path,
    orphanGraceMs: (config.store.orphanGraceHours ?? CONFIG_DEFAULTS.orphanGraceHours) * 3_600_000,
    scrubEveryMs: (config.store.scrubEveryDays ?? CONFIG_DEFAULTS.scrubEveryDays) * 86_400_000,
    fullPolicy: (vm) => {
      const f = config.vms[vm]?.full;
      const zone = config.timeZone ? { timeZone: config.timeZone } : {};
      return f ? { weeklyFullDay: f.weeklyDay ? ISO_DAY[f.weeklyDay] : undefined, maxChainLength: f.maxChainLength, fullEveryDays: f.everyDays, ...zone } : { maxChainLength: CONFIG_DEFAULTS.maxChainLength, ...zone };
    },
    ...(config.timeZone ? { timeZone: config.timeZone } : {}),
    retention: (vm) => config.vms[vm]?.retention ?? CONFIG_DEFAULTS.retention,
    replicates: (vm) => config.vms[vm]?.replicateToDr ?? CONFIG_DEFAULTS.replicateToDr,
    connections: config.concurrency?.connections,
    slotLimits: slotLimitsOf(config.concurrency),
  };
}

/** The config's backup limits (defaults filled in). */
export function slotLimitsOf(c: { backupsPerEngine?: number; backupsPerHost?: number | undefined; backupsPerStorageDomain?: number | undefined } | undefined): SlotLimits {
  return {
    backupsPerEngine: c?.backupsPerEngine ?? CONFIG_DEFAULTS.backupsPerEngine,
    ...(c?.backupsPerHost !== undefined ? { backupsPerHost: c.backupsPerHost } : {}),
    ...(c?.backupsPerStorageDomain !== undefined ? { backupsPerStorageDomain: c.backupsPerStorageDomain } : {}),
  };
}

/**
 * Backups one backup-requested process runs at once: a full set of slots for every engine, so
 * requests waiting for one engine's slots never keep another engine's backups from starting here.
 */
export function backupConcurrencyOf(s: Pick<BackupSettings, "engines" | "slotLimits">): number {
  return (s.slotLimits?.backupsPerEngine ?? CONFIG_DEFAULTS.backupsPerEngine) * Math.max(1, Object.keys(s.engines).length);
}

export async function readCaFiles(engines: Readonly<Record<string, { caFile?: string | undefined }>>): Promise<Record<string, string | undefined>> {
  const out: Record<string, string | undefined> = {};
  for (const [name, e] of Object.entries(engines)) out[name] = e.caFile ? await readFile(e.caFile, "utf8") : undefined;
  return out;
}

export async function buildBackupWiring(s: BackupSettings, kv: (bucket: string) => Promise<KV>, trust?: TrustStore, log?: PipelineContext["log"]): Promise<BackupWiring> {
  const engines = new Map<string, PortEngine>();
  const restoreEngines = new Map<string, RestoreEngine>();
  for (const [name, e] of Object.entries(s.engines)) {
    // With a trust store the CA is read at each use and swapped at run time (cert.renewed, or
    // re-read once after a TLS failure): a renewed engine CA needs no restart (pipeline/trust.ts).
    const caPem = trust ? () => trust.pem(name) : e.caPem;
    const client = createEngineClient({ url: e.url, user: e.user, password: e.password, caPem: trust ? trust.pem(name) : e.caPem, refreshCa: trust?.refresher(name), insecure: e.insecure ?? false, correlationId: ferryCorrelationId(name) });
    trust?.attach(name, client);
    engines.set(name, createEnginePort(client, { name, caPem, pollMs: s.pollMs }));
    restoreEngines.set(name, createRestoreEngine(client, { name, caPem, insecure: e.insecure, pollMs: s.pollMs }));
  }
  const withTrust = <T>(url: string, caPem: string | undefined, run: (caPem: string | undefined) => Promise<T>): Promise<T> => (trust ? trust.imageio(url, caPem, run) : run(caPem));
  const connections = s.connections ?? CONFIG_DEFAULTS.connections;
  const transfers: Transfers = {
    async download(o) {
      const r = await withTrust(o.transferUrl, o.caPem, (caPem) => download({
        transferUrl: o.transferUrl,
        ...(caPem ? { caPem } : {}),
        output: o.output,
        ...(o.backing ? { backing: o.backing } : {}),
        incremental: o.incremental,
        connections,
        ...(o.previousDigests ? { previousDigests: o.previousDigests } : {}),
        ...(o.onProgress ? { onProgress: (p: { bytes: number; total: number }) => o.onProgress!(p.bytes, p.total) } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      }));
      return { bytes: r.bytes, seconds: r.seconds, virtualSize: r.virtualSize, digests: r.digests, checksum: r.checksum };
    },
    async sourceChecksum(o) {
      const io = await withTrust(o.transferUrl, o.caPem, (caPem) => openImageio(o.transferUrl, { ...(caPem ? { caPem } : {}), maxConnections: 1, ...(o.signal ? { signal: o.signal } : {}) }));
      try {
        return (await io.checksum({ algorithm: "sha256", blockSize: o.blockSize })).checksum;
      } finally {
        await io.close().catch(() => undefined);
      }
    },
  };
  const runsBucket = await kv(buckets.runs);
  const runs = createRunJournal(runsBucket);
  const store = createStorePort(openStore({ root: s.storePath }));
  return {
    settings: s,
    ...(trust ? { trust } : {}),
    restoreEngines,
    restoreJournal: createRestoreJournal(runsBucket),
    replicas: createReplicas(runsBucket),
    deployment: await createDeploymentId(runsBucket),
    engines,
    store,
    transfers,
    runs,
    leases: createLeases(await kv(buckets.leases), { ttlMs: s.leaseTtlMs ?? CONFIG_DEFAULTS.leaseTtlMs, handOffTtlMs: s.handOffTtlMs ?? CONFIG_DEFAULTS.handOffTtlMs }),
    // A slot lives as long as a VM lease without renewal: both are renewed by the same heartbeat.
    slots: createSlots(await kv(buckets.slots), { ttlMs: s.leaseTtlMs ?? CONFIG_DEFAULTS.leaseTtlMs }),
    // A VM with restore points in the store but no KV record (the bus lost its data) is healed on read.
    chains: healingChains(chainsKv(await kv(buckets.chains)), store.volume, { log }),
    guard: createChainGuard(await kv(buckets.guard)),
    owner: `${hostname()}:${process.pid}`,
    async engineForRun(runId) {
      const run = runId ? await runs.get(runId).catch(() => undefined) : undefined;
      return engines.get(run?.engine ?? CONFIG_DEFAULTS.engine);
    },
    async close() {
      trust?.close();
      for (const e of engines.values()) await e.client.close().catch(() => undefined);
    },
  };
}


/** The handler deps of the three backup functions over one wiring. */
export function backupFunctionDeps(w: BackupWiring, log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void }, clock: () => Date = () => new Date()) {
  const s = w.settings;
  return {
    backupRequested: {
      engines: (n: string) => w.engines.get(n),
      chains: {
        // The store's manifest carries the verdicts of `ferry verify`: a chain that failed one is not built on.
        view: async (vmId: string, vmName: string) => chainViewOf(await w.chains.read(vmId), await w.store.volume.readManifest(vmName).catch(() => undefined), await w.guard.mark(vmId)),
      },
      runs: w.runs,
      leases: w.leases,
      slots: w.slots,
      slotLimits: s.slotLimits ?? slotLimitsOf(undefined),
      transfers: w.transfers,
      store: w.store,
      clock,
      log,
      policy: s.fullPolicy,
      owner: w.owner,
      deployment: w.deployment,
      engineOutageBudgetMs: s.engineOutageBudgetMs ?? CONFIG_DEFAULTS.engineOutageBudgetMs,
      lastRunOf: async (vmId: string) => (await w.chains.read(vmId))?.restorePoints.at(-1)?.runId,
    },
    diskTransferred: { chains: w.chains, store: w.store, leases: w.leases, runs: w.runs, clock, log },
    reconciler: {
      engines: w.engines,
      restore: { engines: w.restoreEngines, journal: w.restoreJournal },
      runs: w.runs,
      leases: w.leases,
      deployment: w.deployment,
      removeUnrecorded: (p: string) => w.store.removeUnrecorded(p),
      orphans: { store: w.store.volume, chains: w.chains, graceMs: s.orphanGraceMs ?? CONFIG_DEFAULTS.orphanGraceHours * 3_600_000 },
      ...((s.scrubEveryMs ?? CONFIG_DEFAULTS.scrubEveryDays * 86_400_000) > 0
        ? { scrub: createScrubber({ store: w.store.volume, leases: w.leases, engineFor: (runId) => w.engineForRun(runId), everyMs: s.scrubEveryMs ?? CONFIG_DEFAULTS.scrubEveryDays * 86_400_000, owner: w.owner, clock, log }) }
        : {}),
      clock,
      log,
    },
  };
}

/** What a function's main.ts gets from the runtime (functions/runtime FunctionContext). */
export interface PipelineContext {
  readonly config: Parameters<typeof settingsFromConfig>[0] & { readonly engines: Readonly<Record<string, { caFile?: string | undefined }>>; readonly file?: string | undefined };
  readonly kvm: { open(bucket: string): Promise<KV> };
  readonly signal: AbortSignal;
  /** To follow cert.renewed (every process reloads its trusted CAs). */
  readonly nc?: Pick<NatsConnection, "subscribe">;
  readonly log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

const perProcess = new WeakMap<object, Promise<BackupWiring>>();

/**
 * The process's one pipeline wiring for this config: the first function to ask builds it, the
 * others share it, and it is closed once when the functions stop.
 */
export function pipelineFor(ctx: PipelineContext): Promise<BackupWiring> {
  let p = perProcess.get(ctx.config);
  if (!p) {
    p = (async () => {
      const trust = await createTrustStore({ engines: trustEnginesOf(ctx.config), kv: await ctx.kvm.open(buckets.certs), log: ctx.log });
      if (ctx.nc) trust.follow(ctx.nc);
      const settings = settingsFromConfig(ctx.config, Object.fromEntries(Object.keys(ctx.config.engines).map((n) => [n, trust.pem(n)])));
      const wiring = await buildBackupWiring(settings, (b) => ctx.kvm.open(b), trust, ctx.log);
      ctx.signal.addEventListener("abort", () => void wiring.close(), { once: true });
      // NBD socket dirs of transfer processes killed mid-download or mid-upload (nobody else
      // removes them): once per process, by whichever function builds the wiring first.
      void sweepScratch()
        .then((removed) => removed.length && ctx.log?.info({ removed }, "removed scratch dirs of transfer processes that are gone"))
        .catch((err: unknown) => ctx.log?.warn({ err }, "scratch sweep failed"));
      return wiring;
    })();
    perProcess.set(ctx.config, p);
    p.catch(() => perProcess.delete(ctx.config));
  }
  return p;
}

/** restore-requested's deps over the process's wiring. */
export function restoreFunctionDeps(w: BackupWiring, log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void }, clock: () => Date = () => new Date()) {
  const connections = w.settings.connections ?? CONFIG_DEFAULTS.connections;
  return {
    engines: (n: string) => w.restoreEngines.get(n),
    store: {
      resolvePoint: (vm: string, ref: number | string, o?: { signal?: AbortSignal }) => w.store.volume.resolvePoint(vm, ref, o),
      markVerified: (vm: string, id: string, v: { time: string; ok: boolean; detail?: string }, what?: "verified" | "bootTested") => w.store.volume.markVerified(vm, id, v, what),
      logDir: w.store.volume.paths.restoreLogs(),
      readDigests: (rel: string) => w.store.volume.readDigests(rel),
      absolute: (rel: string) => w.store.volume.absolute(rel),
    },
    replicas: w.replicas,
    journal: w.restoreJournal,
    leases: w.leases,
    async upload(o: { image: string; transferUrl: string; caPem?: string | undefined; onProgress: (bytes: number, total: number) => void; signal?: AbortSignal | undefined; fresh: boolean; only?: readonly { offset: number; length: number }[] | undefined }) {
      const r = await upload({
        image: o.image, format: "qcow2", transferUrl: o.transferUrl, connections, diskIsZero: o.fresh, ...(o.only ? { only: o.only } : {}),
        ...(o.caPem ? { caPem: o.caPem } : {}), ...(o.signal ? { signal: o.signal } : {}),
        onProgress: (p: { bytes: number; total: number }) => o.onProgress(p.bytes, p.total),
      });
      return { bytes: r.bytes, checksum: r.checksum };
    },
    checksum: w.transfers.sourceChecksum,
    settings: w.settings.restore ?? settingsFromConfig({ engines: {}, store: { path: "" }, vms: {} }, {}).restore!,
    owner: w.owner,
    clock,
    log,
  };
}
