/**
 * The read side of the console: what each page shows, from the same sources `ferry status`
 * decides on (config/status.ts over config/status-source.ts: KV chains, runs, leases and the
 * outcome events), the store's restore-points.json (the source; KV is an index), the DR replica
 * records, the trusted CA files and the bus feed. Nothing here writes.
 */
import { X509Certificate } from "node:crypto";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { openStore } from "../adapters/store/mod.ts";
import { computeStatus, summarize, type OutcomeIndex, type VmStatus } from "../config/status.ts";
import { followOutcomes, readKvFacts, type VmPolicies } from "../config/status-source.ts";
import { describePoints, type ChainRecord, type PointSummary } from "../domain/chain/mod.ts";
import { buckets } from "../infra/streams/mod.ts";
import { createReplicas, type ReplicaState } from "../pipeline/replica.ts";
import { readTrustedCa } from "../pipeline/trust.ts";
import { daysLeft } from "../pipeline/cert-status.ts";
import type { BusFeed, FeedRun } from "./bus-feed.ts";

export interface CertWarning {
  readonly engine: string;
  readonly text: string;
  readonly daysLeft?: number | undefined;
  /** The certificate's end (ISO), for the page to write in its zone. */
  readonly notAfter?: string | undefined;
}

export interface OverviewFacts {
  readonly rows: readonly VmStatus[];
  readonly replicas: ReadonlyMap<string, ReplicaState>;
  /** VMs configured to keep a standing DR copy (vms.<vm>.replicateToDr). */
  readonly replicating: ReadonlySet<string>;
  /** Rows by their result (ferry status' words), and the bytes of every kept restore point. */
  readonly totals: { vms: number; ok: number; failed: number; running: number; never: number; overdue: number; storedBytes: number };
  readonly certWarnings: readonly CertWarning[];
  readonly chains: readonly ChainRecord[];
}

export interface VmFacts {
  readonly status: VmStatus | undefined;
  readonly points: readonly PointSummary[];
  /** Where the points were read: the store (the source) or KV when the store could not be read. */
  readonly pointsFrom: "store" | "kv" | "none";
  readonly storeProblem?: string | undefined;
  readonly replica?: ReplicaState | undefined;
  readonly runs: readonly FeedRun[];
}

export interface ConsoleFacts {
  overview(): Promise<OverviewFacts>;
  vm(name: string): Promise<VmFacts>;
  stop(): void;
}

export interface FactsOptions {
  readonly nc: NatsConnection;
  readonly feed: BusFeed;
  readonly policies: VmPolicies;
  readonly timeZone: string;
  readonly storeRoot: string;
  /** VMs that keep a standing DR copy (vms.<vm>.replicateToDr). */
  readonly replicates: (vm: string) => boolean;
  /** Trusted CA file per engine, and how many days ahead to warn. */
  readonly caFiles: Readonly<Record<string, string>>;
  readonly warnDays: number;
  readonly clock?: () => Date;
  readonly onError?: (err: unknown) => void;
}


export async function createFacts(o: FactsOptions): Promise<ConsoleFacts> {
  const clock = o.clock ?? (() => new Date());
  const ac = new AbortController();
  // The outcome events are followed live (as /metrics does): one pass at start, then pushed.
  const outcomes: OutcomeIndex = await followOutcomes(o.nc, ac.signal, (err) => o.onError?.(err));
  const kvm = new Kvm(o.nc);
  const replicas = createReplicas(await kvm.open(buckets.runs));
  const store = openStore({ root: o.storeRoot });

  const rowsNow = async () => {
    const kv = await readKvFacts(o.nc);
    return { kv, rows: computeStatus({ now: clock(), policies: o.policies, ...kv, outcomes, timeZone: o.timeZone }) };
  };

  const certWarnings = async (): Promise<CertWarning[]> => {
    const out: CertWarning[] = [];
    for (const [engine, file] of Object.entries(o.caFiles)) {
      try {
        const ca = await readTrustedCa(file);
        if (!ca) {
          out.push({ engine, text: `no trusted CA file (${file}): see its fingerprint with ferry cert fetch ${engine}, then trust it with ferry cert fetch ${engine} --accept <fingerprint>` });
          continue;
        }
        const cert = ca.certificates[0] as X509Certificate;
        const days = daysLeft(cert.validTo, clock());
        const notAfter = new Date(cert.validTo).toISOString();
        if (days <= o.warnDays) out.push({ engine, daysLeft: days, notAfter, text: days < 0 ? `the trusted CA expired ${-days} days ago` : `the trusted CA expires in ${days} days` });
      } catch (err) {
        out.push({ engine, text: (err as Error).message.split("\n")[0]! });
      }
    }
    // The bus's word on certificates: a renewal that failed is a warning until one succeeds.
    const lastByEngine = new Map<string, { subject: string; message?: string }>();
    for (const e of o.feed.events()) {
      if (e.subject !== "cert.failed" && e.subject !== "cert.renewed") continue;
      const engine = typeof e.data.engine === "string" ? e.data.engine : "?";
      if (!lastByEngine.has(engine)) lastByEngine.set(engine, { subject: e.subject, message: typeof e.data.message === "string" ? e.data.message : undefined });
    }
    for (const [engine, last] of lastByEngine) if (last.subject === "cert.failed") out.push({ engine, text: `certificate renewal failed: ${last.message ?? "see ferry events cert.failed"}` });
    return out;
  };

  return {
    async overview() {
      const { kv, rows } = await rowsNow();
      const replicaMap = new Map<string, ReplicaState>();
      const count = (f: (r: VmStatus) => boolean) => rows.filter(f).length;
      const replicating = new Set(rows.filter((r) => r.configured && o.replicates(r.vm)).map((r) => r.vm));
      for (const r of rows) {
        if (!replicating.has(r.vm)) continue;
        const state = await replicas.get("dr", r.vm).catch(() => undefined);
        if (state) replicaMap.set(r.vm, state);
      }
      return {
        rows,
        replicas: replicaMap,
        replicating,
        chains: kv.chains,
        totals: (() => {
          // The daily summary's counts (each VM in one of ok / failed / overdue / never), so the
          // console and the audit log never disagree; plus what is running now.
          const c = summarize(rows, kv.chains);
          return { vms: c.vms, ok: c.protected, failed: c.failed, running: count((r) => r.result === "running"), never: c.never, overdue: c.overdue, storedBytes: c.bytesStored };
        })(),
        certWarnings: await certWarnings(),
      };
    },
    async vm(name) {
      const { kv, rows } = await rowsNow();
      const status = rows.find((r) => r.vm === name);
      let points: PointSummary[] = [];
      let pointsFrom: VmFacts["pointsFrom"] = "none";
      let storeProblem: string | undefined;
      try {
        const record = await store.readManifest(name);
        if (record) {
          points = describePoints(record);
          pointsFrom = "store";
        }
      } catch (err) {
        storeProblem = (err as Error).message.split("\n")[0];
      }
      if (pointsFrom === "none") {
        const chain = kv.chains.find((c) => c.vm.name === name);
        if (chain) {
          points = describeSafe(chain);
          pointsFrom = "kv";
        }
      }
      const replica = o.replicates(name) ? await replicas.get("dr", name).catch(() => undefined) : undefined;
      return { status, points, pointsFrom, storeProblem, replica, runs: o.feed.runs().filter((r) => r.vm === name) };
    },
    stop: () => ac.abort(),
  };
}

function describeSafe(c: ChainRecord): PointSummary[] {
  try {
    return describePoints(c);
  } catch {
    return [];
  }
}
