/**
 * Slot claims of the scheduler in KV `ferry-schedule` (key `slot.<base64url vm>.<slot>`): the
 * record that a VM's slot was published, kept for days so a catch-up run older than JetStream's
 * duplicate window does not publish it again. Keys expire with the bucket's TTL.
 */
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import type { SlotClaims } from "../../domain/schedule/mod.ts";
import { isCasConflict } from "./kv-chains.ts";

export const SCHEDULE_BUCKET = "ferry-schedule";
export const SCHEDULE_TTL_MS = 8 * 86_400_000;

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
    description: "Per VM and schedule slot: published backup.requested (scheduler de-duplication beyond the stream's duplicate window).",
    history: 1,
    ttl: SCHEDULE_TTL_MS,
    maxValueSize: 4096,
    replicas: o.replicas ?? 1,
  });
  return slotClaims(bucket);
}
