/**
 * Which functions have a running worker: every `ferry run` process registers the micro service
 * "ferry" (service.ts) with its functions in the metadata and answers $SRV.PING while it runs.
 * Asked by `ferry backup|restore --wait` and `ferry doctor`. Not the durable consumer's
 * num_waiting: a worker busy on every slot (a long backup) has no pull waiting yet takes the
 * next request, and a killed worker's last pull stays counted until it expires.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { SERVICE_NAME } from "./service.ts";

/** Function name → how many running processes have it (functions without a worker are absent). */
export async function runningWorkers(nc: NatsConnection, o: { timeoutMs?: number } = {}): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  try {
    const replies = await nc.requestMany(`$SRV.PING.${SERVICE_NAME}`, "", { strategy: "stall", stall: 300, maxWait: o.timeoutMs ?? 2000 });
    for await (const m of replies) {
      let info: { metadata?: { functions?: unknown } };
      try {
        info = m.json();
      } catch {
        continue;
      }
      const fns = typeof info.metadata?.functions === "string" ? info.metadata.functions.split(",").filter(Boolean) : [];
      for (const fn of new Set(fns)) counts.set(fn, (counts.get(fn) ?? 0) + 1);
    }
  } catch {
    // No responders at all: no `ferry run` process is connected.
  }
  return counts;
}
