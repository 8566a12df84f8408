/**
 * Reads what config/status.ts decides on: the VM list and schedules from the config file, the
 * chains, runs and leases from KV, the outcome events from FERRY_EVENTS. Used by `ferry status`
 * (one read) and by `ferry run`'s /metrics (KV per scrape, the events followed live).
 *
 * Every problem reaching NATS ends in a StatusSourceError with one line that says what is
 * missing (a bucket, the stream, JetStream) — never a client stack trace.
 */
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { z } from "zod";
import { PolicyInputSchema, resolvePolicy, type Policy } from "../contracts/config.ts";
import { readRecord } from "../adapters/nats/kv-record.ts";
import { isMissingResource } from "../adapters/nats/errors.ts";
import { chainsKv } from "../adapters/store/kv-chains.ts";
import { buckets, streams } from "../infra/streams/mod.ts";
import type { ChainRecord } from "../domain/chain/mod.ts";
import { createRunJournal, type BackupRun } from "../pipeline/run-journal.ts";
import { createRestoreJournal, type RestoreRun } from "../pipeline/restore-journal.ts";
import type { LeaseRecord } from "../pipeline/vm-lease.ts";
import { localTimeZone, timeZoneProblem } from "../domain/schedule/zoned.ts";
import { OutcomeIndex, outcomeOf } from "./status.ts";
import { ConfigError, readConfigFile } from "./load.ts";
import { fromZodIssues } from "./issues.ts";

/** Something status needs is missing or unreachable: `message` is one line. */
export class StatusSourceError extends Error {
  override readonly name = "StatusSourceError";
}

const OUTCOME_SUBJECTS = ["backup.completed", "backup.failed"];
/** The buckets status reads (an operator's read-only copies carry the same names). */
export const STATUS_BUCKETS = [buckets.chains, buckets.runs, buckets.leases] as const;

export type VmPolicies = Record<string, Pick<Policy, "enabled" | "schedule">>;

const VmsSection = z.object({
  defaults: PolicyInputSchema.optional(),
  vms: z.record(z.string(), PolicyInputSchema).optional(),
  timeZone: z.string().optional(),
});

/**
 * What status reads from the config, its `vms`, `defaults` and `timeZone` only (no passwords, no
 * engines: status runs where the engine secrets are not): the VMs' effective policies and the
 * zone as written. Throws ConfigNotFoundError / ConfigError with every problem of those sections
 * (`vms.web01.schedule.time: …`).
 */
export async function readStatusConfig(file: string): Promise<{ policies: VmPolicies; timeZone: string | undefined }> {
  const parsed = VmsSection.safeParse(await readConfigFile(file));
  if (!parsed.success) throw new ConfigError(file, fromZodIssues(parsed.error.issues));
  const policies: VmPolicies = {};
  for (const [name, p] of Object.entries(parsed.data.vms ?? {})) {
    const policy = resolvePolicy(p, parsed.data.defaults);
    policies[name] = { enabled: policy.enabled, schedule: policy.schedule };
  }
  return { policies, timeZone: parsed.data.timeZone };
}

/**
 * The config's timeZone (the zone its schedules are read in), else the machine's: what `ferry
 * status` uses without --tz, so its next slot and RPO agree with `ferry schedule`.
 */
export function statusTimeZone(file: string, zone: string | undefined): string {
  if (zone === undefined) return localTimeZone();
  const problem = timeZoneProblem(zone);
  if (problem) throw new ConfigError(file, [{ path: ["timeZone"], message: problem }]);
  return zone;
}

const isNotFound = isMissingResource;

/** One line for an error of the NATS client. */
export function natsProblem(err: unknown): string {
  if (err instanceof StatusSourceError) return err.message;
  const text = (err instanceof Error ? err.message : String(err)).split("\n")[0] ?? "";
  if (/jetstream not enabled|503/i.test(text)) return "JetStream is not enabled on this NATS server (or not for this account)";
  if (/permission/i.test(text)) return `NATS refused a request: ${text}`;
  if (/closed|disconnect|connection|timeout|TIMEOUT/i.test(text)) return `lost NATS while reading: ${text}`;
  return text || "unknown NATS error";
}

/** Throws a StatusSourceError naming the first bucket or stream that does not exist. */
export async function checkStatusInfra(jsm: JetStreamManager): Promise<void> {
  for (const b of STATUS_BUCKETS) {
    try {
      await jsm.streams.info(`KV_${b}`);
    } catch (err) {
      if (isNotFound(err)) throw new StatusSourceError(`KV bucket ${b} does not exist on this NATS: Ferry has not run here yet (ferry run all creates it), or --nats names the wrong server`);
      throw new StatusSourceError(natsProblem(err));
    }
  }
  try {
    await jsm.streams.info(streams.events.name);
  } catch (err) {
    if (isNotFound(err)) throw new StatusSourceError(`stream ${streams.events.name} does not exist on this NATS: Ferry has not run here yet (ferry run all creates it), or --nats names the wrong server`);
    throw new StatusSourceError(natsProblem(err));
  }
}

export interface KvFacts {
  readonly chains: ChainRecord[];
  readonly runs: BackupRun[];
  readonly restores: RestoreRun[];
  readonly leases: Map<string, LeaseRecord>;
}

/** The chains, backup and restore runs and leases in KV. */
export async function readKvFacts(nc: NatsConnection): Promise<KvFacts> {
  try {
    const kvm = new Kvm(nc);
    const [chainsBucket, runsBucket, leasesBucket] = await Promise.all(STATUS_BUCKETS.map((b) => kvm.open(b)));
    const chains = await chainsKv(chainsBucket!).list();
    const runs = await createRunJournal(runsBucket!).list();
    const restores = await createRestoreJournal(runsBucket!).list();
    const leases = new Map<string, LeaseRecord>();
    for await (const k of await leasesBucket!.keys()) {
      const r = await readRecord<LeaseRecord>(leasesBucket!, k).catch(() => undefined);
      if (r?.value?.vmId) leases.set(r.value.vmId, r.value);
    }
    return { chains, runs, restores, leases };
  } catch (err) {
    if (isNotFound(err)) throw new StatusSourceError(`a KV bucket of Ferry (${STATUS_BUCKETS.join(", ")}) is missing: ${natsProblem(err)}`);
    throw new StatusSourceError(natsProblem(err));
  }
}

/**
 * Every backup.completed / backup.failed FERRY_EVENTS still holds, read once with an ordered
 * consumer (what `ferry events` uses, so an operator's read-only account can do it too).
 */
export async function readOutcomes(nc: NatsConnection, o: { timeoutMs?: number } = {}): Promise<OutcomeIndex> {
  const index = new OutcomeIndex();
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(streams.events.name, { subjects_filter: "backup.*" });
    if (info.state.first_ts && info.state.messages > 0) index.since = new Date(info.state.first_ts);
    const counts = (info.state.subjects ?? {}) as Record<string, number>;
    const expected = OUTCOME_SUBJECTS.reduce((n, s) => n + (counts[s] ?? 0), 0);
    if (expected === 0) return index;
    const consumer = await jetstream(nc).consumers.get(streams.events.name, { filter_subjects: OUTCOME_SUBJECTS, deliver_policy: DeliverPolicy.All });
    const messages = await consumer.consume({ max_messages: 256 });
    let read = 0;
    const timer = setTimeout(() => messages.stop(new Error(`FERRY_EVENTS: read ${read} of ${expected} outcome events in ${(o.timeoutMs ?? 30_000) / 1000} s`)), o.timeoutMs ?? 30_000);
    try {
      for await (const m of messages) {
        read++;
        let data: unknown;
        try {
          data = m.json();
        } catch {
          data = undefined;
        }
        const f = outcomeOf(m.subject, data, m.seq, m.time);
        if (f) index.add(f);
        if (m.info.pending === 0 || read >= expected) break;
      }
    } finally {
      clearTimeout(timer);
      messages.stop();
    }
    const closed = await messages.closed();
    if (closed instanceof Error && read < expected) throw closed;
    return index;
  } catch (err) {
    if (isNotFound(err)) throw new StatusSourceError(`stream ${streams.events.name} does not exist on this NATS: Ferry has not run here yet (ferry run all creates it), or --nats names the wrong server`);
    throw new StatusSourceError(natsProblem(err));
  }
}

/**
 * Follow FERRY_EVENTS' outcomes from the beginning and keep `index` current until `signal`
 * aborts. Failures are counted (OutcomeIndex.failures) only for events newer than the stream's
 * last message at start, so the counter starts at 0 with the process like any Prometheus counter.
 * Resolves once the events already in the stream are read.
 */
export async function followOutcomes(nc: NatsConnection, signal: AbortSignal, onError: (err: unknown) => void): Promise<OutcomeIndex> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(streams.events.name, { subjects_filter: "backup.*" });
  const index = new OutcomeIndex(info.state.last_seq);
  if (info.state.first_ts && info.state.messages > 0) index.since = new Date(info.state.first_ts);
  const counts = (info.state.subjects ?? {}) as Record<string, number>;
  let backlog = OUTCOME_SUBJECTS.reduce((n, s) => n + (counts[s] ?? 0), 0);
  let caughtUp!: () => void;
  const ready = new Promise<void>((r) => (caughtUp = r));
  if (backlog === 0) caughtUp();
  const consumer = await jetstream(nc).consumers.get(streams.events.name, { filter_subjects: OUTCOME_SUBJECTS, deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume({ max_messages: 256 });
  signal.addEventListener("abort", () => messages.stop(), { once: true });
  void (async () => {
    try {
      for await (const m of messages) {
        let data: unknown;
        try {
          data = m.json();
        } catch {
          data = undefined;
        }
        const f = outcomeOf(m.subject, data, m.seq, m.time);
        if (f) index.add(f);
        if (backlog > 0 && (--backlog === 0 || m.info.pending === 0)) {
          backlog = 0;
          caughtUp();
        }
      }
    } catch (err) {
      if (!signal.aborted) onError(err);
    } finally {
      caughtUp();
    }
  })();
  // Do not hold a scrape for a long backlog: serve what is read after a few seconds.
  await Promise.race([ready, new Promise((r) => setTimeout(r, 5000).unref())]);
  return index;
}

/** Connect-independent: the JetStream manager, mapping "JetStream not enabled" to one line. */
export async function statusJsm(nc: NatsConnection): Promise<JetStreamManager> {
  try {
    return await jetstreamManager(nc);
  } catch (err) {
    throw new StatusSourceError(natsProblem(err));
  }
}
