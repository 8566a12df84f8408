/**
 * Slot claims of the scheduler in KV `ferry-schedule` (key `slot.<base64url vm>.<slot>`): the
 * record that a VM's slot was published, kept for days so a catch-up run older than JetStream's
 * duplicate window does not publish it again. Keys expire with the bucket's TTL.
 */
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import type { SlotClaims } from "../../domain/schedule/mod.ts";
import { bucketDefinitions, buckets } from "../../infra/streams/mod.ts";
import { isCasConflict } from "../nats/kv-record.ts";

// One definition of the bucket: infra/streams, which the function host provisions too.
const definition = bucketDefinitions.find((b) => b.name === buckets.schedule)!;
export const SCHEDULE_BUCKET = definition.name;
export const SCHEDULE_TTL_MS = definition.ttlMs;

export function slotClaims(bucket: Pick<KV, "get" | "create">): SlotClaims {
  return {
    async has(key) {
      const e = await bucket.get(key);
      return !!e && e.operation === "PUT";
    },
    async claim(key, value) {
      try {
        await bucket.create(key, JSON.stringify(value));
        return true;
      } catch (err) {
        if (isCasConflict(err)) return false;
        throw err;
      }
    },
  };
}

/** Open the bucket, creating it (history 1, 8-day TTL) when it does not exist yet. */
export async function openSlotClaims(nc: NatsConnection, o: { bucket?: string; replicas?: number } = {}): Promise<SlotClaims> {
  const bucket = await new Kvm(nc).create(o.bucket ?? SCHEDULE_BUCKET, {
    description: definition.description,
    history: definition.history,
    ttl: definition.ttlMs,
    maxValueSize: definition.maxValueSize,
    replicas: o.replicas ?? 1,
  });
  return slotClaims(bucket);
}
