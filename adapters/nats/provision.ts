/**
 * Idempotent provisioning of streams, KV buckets and durable consumers: create what is missing,
 * update what differs (the editable settings), leave the rest. Safe to run from every process
 * at every start, concurrently.
 */
import { isMissingResource } from "./errors.ts";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import {
  bucketDefinitions,
  streams,
  type BucketDefinition,
  type DurableConsumerDefinition,
  type StreamDefinition,
} from "../../infra/streams/mod.ts";

export interface ProvisionOptions {
  /** 1 for a single server, 3 for a 3-node JetStream cluster. */
  readonly replicas?: number;
}

export type Change = "created" | "updated" | "unchanged";

export interface ProvisionReport {
  readonly streams: Record<string, Change>;
  readonly buckets: Record<string, Change>;
}

const isNotFound = isMissingResource;

function streamConfig(def: StreamDefinition, replicas: number): Partial<StreamConfig> & { name: string } {
  return {
    name: def.name,
    description: def.description,
    subjects: [...def.subjects],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(def.maxAgeMs),
    duplicate_window: nanos(def.duplicateWindowMs),
    max_msg_size: def.maxMsgSize,
    max_bytes: def.maxBytes,
    num_replicas: replicas,
  };
}

const sameList = (a: readonly unknown[] = [], b: readonly unknown[] = []) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

export async function ensureStream(jsm: JetStreamManager, def: StreamDefinition, replicas = 1): Promise<Change> {
  const want = streamConfig(def, replicas);
  let have: StreamConfig;
  try {
    have = (await jsm.streams.info(def.name)).config;
  } catch (err) {
    if (!isNotFound(err)) throw err;
    try {
      await jsm.streams.add(want);
      return "created";
    } catch (addErr) {
      // Another process created it between our info and add: fall through to compare.
      if (!/already in use|exists/i.test(String(addErr))) throw addErr;
      have = (await jsm.streams.info(def.name)).config;
    }
  }
  const differs =
    !sameList(have.subjects, want.subjects) ||
    have.max_age !== want.max_age ||
    have.duplicate_window !== want.duplicate_window ||
    have.max_msg_size !== want.max_msg_size ||
    have.max_bytes !== want.max_bytes ||
    have.num_replicas !== want.num_replicas ||
    have.description !== want.description;
  if (!differs) return "unchanged";
  await jsm.streams.update(def.name, { ...have, ...want });
  return "updated";
}

export async function ensureBucket(nc: NatsConnection, jsm: JetStreamManager, def: BucketDefinition, replicas = 1): Promise<Change> {
  const streamName = `KV_${def.name}`;
  let existed = true;
  try {
    await jsm.streams.info(streamName);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    existed = false;
  }
  // Kvm.create binds to an existing bucket without changing it, so settings are compared below.
  await new Kvm(nc).create(def.name, {
    description: def.description,
    history: def.history,
    ttl: def.ttlMs,
    maxValueSize: def.maxValueSize,
    replicas,
  });
  if (!existed) return "created";
  const have = (await jsm.streams.info(streamName)).config;
  const want = { max_msgs_per_subject: def.history, max_age: nanos(def.ttlMs), max_msg_size: def.maxValueSize, num_replicas: replicas, description: def.description };
  if (
    have.max_msgs_per_subject === want.max_msgs_per_subject &&
    have.max_age === want.max_age &&
    have.max_msg_size === want.max_msg_size &&
    have.num_replicas === want.num_replicas &&
    have.description === want.description
  )
    return "unchanged";
  await jsm.streams.update(streamName, { ...have, ...want });
  return "updated";
}

/** Every stream and bucket Ferry uses. */
export async function provisionInfra(nc: NatsConnection, jsm: JetStreamManager, o: ProvisionOptions = {}): Promise<ProvisionReport> {
  const replicas = o.replicas ?? 1;
  const report: ProvisionReport = { streams: {}, buckets: {} };
  for (const def of Object.values(streams)) report.streams[def.name] = await ensureStream(jsm, def, replicas);
  for (const def of bucketDefinitions) report.buckets[def.name] = await ensureBucket(nc, jsm, def, replicas);
  return report;
}

function consumerConfig(def: DurableConsumerDefinition, replicas: number): Partial<ConsumerConfig> {
  return {
    durable_name: def.durableName,
    filter_subject: def.filterSubject,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(def.ackWaitMs),
    max_deliver: def.maxDeliver,
    backoff: def.backoffMs.map((ms) => nanos(ms)),
    max_ack_pending: def.maxAckPending,
    num_replicas: replicas,
  };
}

export async function ensureConsumer(jsm: JetStreamManager, def: DurableConsumerDefinition, replicas = 1): Promise<Change> {
  const want = consumerConfig(def, replicas);
  let have: ConsumerConfig;
  try {
    have = (await jsm.consumers.info(def.stream, def.durableName)).config;
  } catch (err) {
    if (!isNotFound(err)) throw err;
    try {
      await jsm.consumers.add(def.stream, want);
      return "created";
    } catch (addErr) {
      if (!/already in use|exists/i.test(String(addErr))) throw addErr;
      have = (await jsm.consumers.info(def.stream, def.durableName)).config;
    }
  }
  const differs =
    have.filter_subject !== want.filter_subject ||
    have.max_deliver !== want.max_deliver ||
    !sameList(have.backoff, want.backoff) ||
    have.max_ack_pending !== want.max_ack_pending;
  if (!differs) return "unchanged";
  await jsm.consumers.update(def.stream, def.durableName, {
    filter_subject: want.filter_subject,
    ack_wait: want.ack_wait,
    max_deliver: want.max_deliver,
    backoff: want.backoff,
    max_ack_pending: want.max_ack_pending,
  });
  return "updated";
}
