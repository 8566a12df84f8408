/**
 * Ferry's JetStream layout: streams, KV buckets and the shape of every function's durable
 * consumer. The runtime provisions these idempotently at start (adapters/nats/provision.ts);
 * README.md beside this file explains the choices and the equivalent `nats` CLI commands.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export interface StreamDefinition {
  readonly name: string;
  readonly description: string;
  readonly subjects: readonly string[];
  readonly maxAgeMs: number;
  /** Nats-Msg-Id de-duplication window. */
  readonly duplicateWindowMs: number;
  readonly maxMsgSize: number;
  readonly maxBytes: number;
}

const commandSubjects = ["backup.requested", "restore.requested", "cert.expiring"] as const;
const eventSubjects = [
  "disk.transferred",
  "chain.updated",
  "backup.completed",
  "backup.failed",
  "restore.completed",
  "restore.failed",
  "cert.renewed",
  "cert.failed",
  "ovirt.event",
] as const;
// Listed one by one: a `*.*.rejected` wildcard would overlap the KV streams ($KV.<bucket>.<key>).
const rejectedSubjects = [...commandSubjects, ...eventSubjects].map((s) => `${s}.rejected`);

export const streams = {
  commands: {
    name: "FERRY_COMMANDS",
    description: "Commands: what someone (cron, a human, an oVirt hook, the pipeline) asked Ferry to do.",
    subjects: [...commandSubjects],
    maxAgeMs: 14 * DAY,
    // Long enough that a cron publishing `<vm>:<slot>` twice within an hour is one backup.
    duplicateWindowMs: 1 * HOUR,
    maxMsgSize: 64 * 1024,
    maxBytes: 128 * 1024 * 1024,
  },
  events: {
    name: "FERRY_EVENTS",
    description: "Facts and outcomes: disk.transferred, chain.updated, *.completed/*.failed, cert.renewed, <subject>.rejected.",
    subjects: [...eventSubjects, ...rejectedSubjects],
    maxAgeMs: 30 * DAY,
    duplicateWindowMs: 1 * HOUR,
    maxMsgSize: 256 * 1024,
    maxBytes: 512 * 1024 * 1024,
  },
} as const satisfies Record<string, StreamDefinition>;

/**
 * Subjects published with core NATS only, never stored: transfer.progress is frequent, only
 * interesting live, and must not push facts out of FERRY_EVENTS' limits.
 */
export const coreOnlySubjects = ["transfer.progress"] as const;

export interface BucketDefinition {
  readonly name: string;
  readonly description: string;
  /** Revisions kept per key. */
  readonly history: number;
  /** Keys not written for this long disappear (0 = never). */
  readonly ttlMs: number;
  readonly maxValueSize: number;
}

export const buckets = {
  chains: "ferry-chains",
  runs: "ferry-runs",
  leases: "ferry-leases",
  certs: "ferry-certs",
  schedule: "ferry-schedule",
  alerts: "ferry-alerts",
  guard: "ferry-guard",
  slots: "ferry-slots",
} as const;

export const bucketDefinitions: readonly BucketDefinition[] = [
  {
    name: buckets.chains,
    description: "Per VM id: its restore points (layers, checkpoint, checksums). Updated only by compare-and-set.",
    history: 10, // a few revisions to see how a chain changed
    ttlMs: 0,
    maxValueSize: 1024 * 1024,
  },
  {
    name: buckets.runs,
    description: "Per run id: what a backup/restore created on the engine and how far it got (the journal).",
    history: 5,
    ttlMs: 30 * DAY,
    maxValueSize: 256 * 1024,
  },
  {
    name: buckets.leases,
    description: "Per VM id: who is backing it up. Holders refresh (update) their lease; it vanishes after the TTL if they die.",
    history: 1,
    ttlMs: 6 * HOUR,
    maxValueSize: 4 * 1024,
  },
  {
    name: buckets.certs,
    description: "Per engine: CA fingerprint, notAfter, fetched at.",
    history: 5,
    ttlMs: 0,
    maxValueSize: 64 * 1024,
  },
  {
    name: buckets.schedule,
    // adapters/store/kv-schedule.ts creates it from this definition when `ferry schedule` finds none.
    description: "Per VM and schedule slot: published backup.requested (scheduler de-duplication beyond the stream's duplicate window).",
    history: 1,
    // Longer than any catch-up a scheduler does (a week), so a slot is never published twice.
    ttlMs: 8 * DAY,
    maxValueSize: 4 * 1024,
  },
  {
    name: buckets.alerts,
    // functions/alerts: `w.<engine>.<minute>` (alerts posted / failures held back in that minute,
    // changed only by compare-and-set, so every process of the function shares one limit) and
    // `a.<custom_id>` (what was decided for one failure's alert, so a redelivery never counts twice).
    description: "Per engine and minute: the alerts function's rate limit and summaries; per alert custom_id: what was decided.",
    history: 1,
    // Minutes are closed within seconds; 2 h keeps a failure's decision past all its redeliveries
    // (the alerts function retries an unreachable engine for about 80 minutes).
    ttlMs: 2 * HOUR,
    maxValueSize: 64 * 1024,
  },
  {
    name: buckets.guard,
    description: "The chain guard (pipeline/chain-guard.ts): per engine the event poller's last index; per VM id a 'next backup full' mark; per VM name a 'removed' mark. No TTL: none of it may be forgotten.",
    history: 5,
    ttlMs: 0,
    maxValueSize: 64 * 1024,
  },
  {
    name: buckets.slots,
    // pipeline/engine-slots.ts: `engine.<name>`, `host.<engine>.<id>`, `sd.<engine>.<id>` → the
    // backups holding a slot there, each with an expiry its worker renews (changed only by compare-and-set).
    description: "Per engine (and host / storage domain when limited): the backups running there now, each with an expiry its worker renews.",
    history: 1,
    // Holders expire inside the record; the TTL only clears scopes nobody used for a day.
    ttlMs: DAY,
    maxValueSize: 64 * 1024,
  },
];

/** NATS subject matching with `*` (one token) and `>` (the rest). */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== "*" && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

/** The stream that stores `subject`, or undefined for core-only subjects. */
export function streamFor(subject: string): StreamDefinition | undefined {
  return Object.values(streams).find((st) => st.subjects.some((p) => subjectMatches(p, subject)));
}

/** Is `subject` a pattern (`*` or `>` tokens) rather than one concrete subject? */
export function isWildcard(subject: string): boolean {
  return subject.split(".").some((t) => t === "*" || t === ">");
}

/**
 * The stream a consumer filter reads from: streamFor() for a concrete subject; for a wildcard
 * (e.g. `*.failed`) the one stream whose subjects it matches. A filter matching subjects of two
 * streams cannot be one durable consumer and is refused; one matching none gives undefined.
 */
export function streamForFilter(filter: string): StreamDefinition | undefined {
  if (!isWildcard(filter)) return streamFor(filter);
  const owners = Object.values(streams).filter((st) => st.subjects.some((s) => subjectMatches(filter, s)));
  if (owners.length > 1) throw new Error(`filter '${filter}' matches subjects of several streams (${owners.map((o) => o.name).join(", ")}); a function consumes from one`);
  return owners[0];
}

/** The stored subjects a consumer filter selects (a concrete subject: itself, when stored). */
export function subjectsSelected(filter: string): string[] {
  const st = streamForFilter(filter);
  return st ? st.subjects.filter((s) => subjectMatches(filter, s)) : [];
}

/** A function's retry policy, as declared in its definition. */
export interface ConsumerPolicy {
  readonly name: string;
  readonly subject: string;
  readonly ackWaitMs: number;
  readonly maxDeliver: number;
  readonly backoffMs: readonly number[];
}

export interface DurableConsumerDefinition {
  readonly stream: string;
  readonly durableName: string;
  readonly filterSubject: string;
  readonly ackWaitMs: number;
  readonly maxDeliver: number;
  /** Server-side redelivery schedule after an ack timeout (a crashed or hung worker). */
  readonly backoffMs: readonly number[];
  readonly maxAckPending: number;
}

/**
 * The durable consumer for a function. JetStream replaces ack_wait by backoff[0] and uses
 * backoff[n] for the n-th ack-timeout redelivery, so the server schedule is the function's
 * backoff floored at ackWaitMs: a crashed worker's message returns after ackWaitMs at the
 * earliest, and a heartbeat every ackWaitMs/3 always keeps a live one. Transient errors are
 * retried by an explicit nak(delay) from the runtime, which uses backoffMs as declared.
 * The server requires len(backoff) <= max_deliver.
 */
export function durableConsumer(policy: ConsumerPolicy): DurableConsumerDefinition {
  // A wildcard subject (the alerts function's `*.failed`) is one filter_subject on one stream.
  const stream = streamForFilter(policy.subject);
  if (!stream) throw new Error(`subject '${policy.subject}' is not stored in any stream; a function cannot consume it`);
  const schedule = policy.backoffMs.slice(0, policy.maxDeliver).map((b) => Math.max(b, policy.ackWaitMs));
  schedule[0] = policy.ackWaitMs;
  return {
    stream: stream.name,
    durableName: policy.name,
    filterSubject: policy.subject,
    ackWaitMs: policy.ackWaitMs,
    maxDeliver: policy.maxDeliver,
    backoffMs: schedule,
    maxAckPending: 1000,
  };
}
