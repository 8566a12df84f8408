/**
 * One chaos case's world, all real parts: nats-server (one node or a 3-node cluster), the lab
 * engine (in this process, restartable with its state on the same ports and CA), `ferry run all`
 * as child processes with their own TMPDIR (so `ferry-dl-*` leftovers are theirs), a store, and a
 * config file. Everything lives under one temp dir, removed by stop().
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../adapters/nats/mod.ts";
import { streams } from "../infra/streams/mod.ts";
import { startLab, type Lab, type LabEngine } from "../lab/mod.ts";
import { FAST_TIMINGS } from "../lab/test-support.ts";
import { spawnFerry, type FerryProcess } from "../test/harness/ferry-process.ts";
import { clusterNats, singleNats, type NatsNode } from "./nats.ts";

export const MiB = 1024 * 1024;

export interface VmSpec {
  readonly name: string;
  /** Virtual size of its one disk (default 64 MiB). */
  readonly size?: number;
  /** Seeded guest data written at the start (default 16 MiB). */
  readonly data?: number;
  /** Its retention policy in the config (vms.<name>.retention); default the config's default. */
  readonly retention?: Record<string, number>;
}

export interface WorldOptions {
  readonly name: string;
  readonly cluster?: boolean;
  readonly vms?: readonly VmSpec[];
  /** Deployments sharing the one lab engine: each its own NATS, store and config (default 1). */
  readonly deployments?: number;
}

export interface StoredEvent {
  readonly seq: number;
  readonly subject: string;
  readonly event: Record<string, unknown>;
}

export class WorldTimeoutError extends Error {}

/** One Ferry installation: its NATS, store, config, `ferry run` processes. */
export interface Deployment {
  readonly index: number;
  readonly dir: string;
  readonly tmp: string;
  readonly storePath: string;
  readonly configFile: string;
  readonly nats: NatsNode[];
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly functions: FerryProcess[];
  startFunctions(): Promise<FerryProcess>;
  /** Signal every `ferry run` of this deployment and wait for them to exit (SIGKILL after 15 s). */
  killFunctions(signal?: NodeJS.Signals): Promise<void>;
  /** Processes that had to be SIGKILLed because they ignored a SIGTERM (a finding). */
  readonly stuck: string[];
  /** Publish backup.requested; returns the request id (also the correlation id). */
  request(vm: string, o?: { id?: string; msgId?: string; mode?: string }): Promise<string>;
  /** Every event stored on FERRY_EVENTS, read from the stream (survives server restarts). */
  events(): Promise<StoredEvent[]>;
  /** The backup.completed / backup.failed of a request. */
  outcome(id: string, timeoutMs?: number): Promise<StoredEvent>;
}

export interface World {
  readonly name: string;
  readonly dir: string;
  readonly deployments: Deployment[];
  /** The first deployment (most cases have one). */
  readonly d: Deployment;
  readonly lab: () => Lab;
  readonly prd: () => LabEngine;
  readonly vms: Record<string, { id: string; diskId: string }>;
  /** Stop the lab engine and start it again on the same state (ports, CA, VMs, disks). */
  restartLab(downMs?: number): Promise<void>;
  /** Undo something at stop, before the processes and servers go (a mount, a fault). */
  defer(undo: () => Promise<unknown>): void;
  log(msg: string): void;
  /** Undo everything; returns the cleanup steps that failed or did not finish in time (a finding, not a hang). */
  stop(): Promise<string[]>;
}

/** One cleanup step may take this long: a close that waits on something gone must not drain or hang the run. */
const CLEANUP_MS = 60_000;

/** "did not finish within N s" when `p` outlasts `ms` (the timer is ref'd: it keeps the run alive); else undefined. */
async function bounded(p: Promise<unknown>, ms: number): Promise<string | undefined> {
  let t: NodeJS.Timeout | undefined;
  const late = new Promise<string>((r) => (t = setTimeout(() => r(`did not finish within ${ms / 1000} s`), ms)));
  try {
    return await Promise.race([p.then(() => undefined), late]);
  } finally {
    clearTimeout(t);
  }
}

const log = (world: string, msg: string) => process.stderr.write(`[chaos ${world}] ${msg}\n`);

async function startLabIn(dir: string): Promise<Lab> {
  // Two kept point-in-time copies at most: the lab never fills the disk (the invariants do not need them).
  return startLab({ dataDir: dir, engines: ["prd"], engineOptions: { timings: { ...FAST_TIMINGS, keepPointInTimeCount: 2 } } });
}

export async function startWorld(o: WorldOptions): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), `ferry-chaos-${o.name}-`));
  const cleanup: { what: string; undo: () => Promise<unknown> }[] = [{ what: "remove the world's dir", undo: () => rm(dir, { recursive: true, force: true }) }];
  try {
    let lab = await startLabIn(join(dir, "lab"));
    cleanup.push({ what: "lab.stop()", undo: () => lab.stop() });
    const vms: World["vms"] = {};
    for (const v of o.vms ?? [{ name: "cx01" }]) {
      const vm = await lab.engines.prd!.control.createVm({ name: v.name, disks: [{ alias: `${v.name}_d1`, size: v.size ?? 64 * MiB }], status: "up" });
      await lab.engines.prd!.control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: v.data ?? 16 * MiB, seed: 11 });
      vms[v.name] = { id: vm.id, diskId: vm.disks[0]!.id };
    }
    const deployments: Deployment[] = [];
    for (let i = 0; i < (o.deployments ?? 1); i++) {
      const dep = await startDeployment(o, join(dir, `d${i}`), i, () => lab.engines.prd!, o.vms ?? [{ name: "cx01" }]);
      cleanup.push({ what: `stop deployment ${i}`, undo: () => dep.stopAll() });
      deployments.push(dep);
    }
    const world: World = {
      name: o.name,
      dir,
      deployments,
      d: deployments[0]!,
      lab: () => lab,
      prd: () => lab.engines.prd!,
      vms,
      async restartLab(downMs = 0) {
        await lab.stop();
        if (downMs) await new Promise((r) => setTimeout(r, downMs));
        lab = await startLabIn(join(dir, "lab"));
      },
      log: (m) => log(o.name, m),
      defer(undo) {
        cleanup.push({ what: "a case's deferred undo", undo });
      },
      async stop() {
        const problems: string[] = [];
        for (const c of cleanup.reverse()) {
          const p = await bounded(c.undo(), CLEANUP_MS).catch((err: unknown) => `failed: ${String(err)}`);
          if (p) problems.push(`cleanup: ${c.what} ${p}`);
        }
        for (const p of problems) log(o.name, p);
        return problems;
      },
    };
    return world;
  } catch (err) {
    for (const c of cleanup.reverse()) await bounded(c.undo(), CLEANUP_MS).catch(() => undefined);
    throw err;
  }
}

async function startDeployment(o: WorldOptions, dir: string, index: number, prd: () => LabEngine, vmSpecs: readonly VmSpec[]): Promise<Deployment & { stopAll(): Promise<void> }> {
  const tmp = join(dir, "tmp");
  const storePath = join(dir, "store");
  await mkdir(tmp, { recursive: true });
  await mkdir(storePath, { recursive: true });
  const nats = o.cluster ? await clusterNats(join(dir, "nats")) : await singleNats(join(dir, "nats"));
  const servers = nats.map((n) => n.url);
  const nc = await connectNats({ servers, name: `chaos-${o.name}-${index}` });
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const js = jetstream(nc);
  const e = prd();
  const configFile = join(dir, "ferry.json");
  await writeFile(
    configFile,
    JSON.stringify({
      engines: { prd: { url: e.url, user: e.user, passwordEnv: "FERRY_PRD_PASSWORD", caFile: e.caFile } },
      store: { path: storePath },
      nats: { servers, replicas: o.cluster ? 3 : 1 },
      vms: Object.fromEntries(vmSpecs.map((v) => [v.name, v.retention ? { retention: v.retention } : {}])),
      // Restores land on the same lab engine (target "prd"), under another name.
      restore: { cluster: "Default", storageDomain: "data", start: false },
    }),
    { mode: 0o600 },
  );
  const functions: FerryProcess[] = [];
  const stuck: string[] = [];
  const dep: Deployment & { stopAll(): Promise<void> } = {
    index, dir, tmp, storePath, configFile, nats, nc, js, jsm, functions,
    async startFunctions() {
      const p = spawnFerry(["run", "all", "--config", configFile, "--grace", "2"], { FERRY_PRD_PASSWORD: prd().password, TMPDIR: tmp, FERRY_LOG_LEVEL: "info" });
      functions.push(p);
      // A cluster elects its meta leader first: the first start may need a while.
      await p.waitForLog((l) => l.msg === "functions running", o.cluster ? 240_000 : 180_000);
      return p;
    },
    async killFunctions(signal = "SIGKILL") {
      await Promise.all(
        functions.map(async (f) => {
          const t = signal === "SIGKILL" ? undefined : setTimeout(() => {
            stuck.push(`ferry run pid ${f.pid} did not exit within 15 s of ${signal}`);
            void f.kill("SIGKILL");
          }, 15_000);
          await f.kill(signal);
          clearTimeout(t);
        }),
      );
    },
    stuck,
    async request(vm, r = {}) {
      const id = r.id ?? `cx-${Math.random().toString(36).slice(2, 10)}`;
      await js.publish("backup.requested", JSON.stringify({ id, correlationId: id, vm, mode: r.mode ?? "auto" }), { msgID: r.msgId ?? id });
      return id;
    },
    async events() {
      const out: StoredEvent[] = [];
      const info = await jsm.streams.info(streams.events.name);
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
        const m = await jsm.streams.getMessage(streams.events.name, { seq }).catch(() => null);
        if (!m) continue;
        let event: Record<string, unknown>;
        try {
          const v = m.json<unknown>();
          // Garbage cases store non-objects on event subjects too.
          event = v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : { $raw: m.string().slice(0, 200) };
        } catch {
          event = { $raw: m.string().slice(0, 200) };
        }
        out.push({ seq, subject: m.subject, event });
      }
      return out;
    },
    async outcome(id, timeoutMs = 180_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = (await dep.events().catch(() => [])).find((x) => isTerminal(x.subject) && x.event.correlationId === id);
        if (hit) return hit;
        if (Date.now() > deadline) throw new WorldTimeoutError(`no outcome for ${id} within ${timeoutMs / 1000} s`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    },
    async stopAll() {
      await dep.killFunctions("SIGTERM");
      await nc.close().catch(() => undefined);
      await Promise.all(nats.map((n) => n.stop()));
    },
  };
  // The functions provision streams and buckets; the runner only reads them.
  await dep.startFunctions();
  return dep;
}

export const isTerminal = (subject: string) => /^(backup|restore)\.(completed|failed)$/.test(subject);
