/**
 * The demo's view of the bus: a plain NATS subscriber to Ferry's subjects (what `nats sub` or
 * `ferry events` sees), a raw publish of backup.requested (what `nats pub` sends), and waiting
 * for the outcome of one request by its correlation id.
 */
import { connect } from "@nats-io/transport-node";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";

export interface BusEvent {
  readonly subject: string;
  readonly data: Record<string, unknown>;
  readonly at: number;
}

export interface Outcome {
  readonly subject: "backup.completed" | "backup.failed" | "backup.requested.rejected" | "restore.completed" | "restore.failed" | "restore.requested.rejected";
  readonly event: Record<string, unknown>;
  /** disk.transferred events of the same request. */
  readonly disks: Record<string, unknown>[];
  readonly chain?: Record<string, unknown> | undefined;
}

export interface Bus {
  readonly nc: NatsConnection;
  /** Every event seen, in arrival order. */
  readonly seen: BusEvent[];
  /** Called for each event as it arrives (live output). */
  onEvent(fn: ((e: BusEvent) => void) | undefined): void;
  /**
   * Publish the bytes as given, without headers, exactly like `nats pub <subject> <text>`, but as
   * a request so the JetStream PubAck comes back: the runtime then names the event
   * `<stream>:<seq>`, which is its correlation id.
   */
  publishRaw(subject: string, text: string, signal: AbortSignal): Promise<{ stream: string; seq: number; correlationId: string }>;
  waitOutcome(correlationId: string, signal: AbortSignal): Promise<Outcome>;
  close(): Promise<void>;
}

const SUBJECTS = ["backup.>", "disk.>", "chain.>", "restore.>", "transfer.progress"];
const OUTCOMES = new Set(["backup.completed", "backup.failed", "backup.requested.rejected", "restore.completed", "restore.failed", "restore.requested.rejected"]);

export async function openBus(url: string): Promise<Bus> {
  const nc = await connect({ servers: url, name: "ferry-demo", reconnect: false, timeout: 10_000 });
  const seen: BusEvent[] = [];
  const waiters = new Set<() => void>();
  let listener: ((e: BusEvent) => void) | undefined;
  const subs: Subscription[] = [];
  for (const subject of SUBJECTS) {
    const sub = nc.subscribe(subject);
    subs.push(sub);
    void (async () => {
      for await (const m of sub) {
        let data: Record<string, unknown>;
        try {
          data = m.json<Record<string, unknown>>();
        } catch {
          data = { text: m.string() };
        }
        const e = { subject: m.subject, data, at: Date.now() };
        seen.push(e);
        listener?.(e);
        for (const w of waiters) w();
      }
    })();
  }
  await nc.flush();

  const sameRequest = (e: BusEvent, correlationId: string) => e.data.correlationId === correlationId;

  return {
    nc,
    seen,
    onEvent(fn) {
      listener = fn;
    },
    async publishRaw(subject, text, signal) {
      const reply = await nc.request(subject, new TextEncoder().encode(text), { timeout: 10_000 });
      if (signal.aborted) throw signal.reason;
      const ack = reply.json<{ stream?: string; seq?: number; error?: { description?: string } }>();
      if (!ack.stream || ack.seq === undefined) throw new Error(`JetStream did not store ${subject}: ${ack.error?.description ?? reply.string()}`);
      return { stream: ack.stream, seq: ack.seq, correlationId: `${ack.stream}:${ack.seq}` };
    },
    waitOutcome(correlationId, signal) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = seen.find((e) => OUTCOMES.has(e.subject) && sameRequest(e, correlationId));
          if (!hit) return;
          done();
          const mine = seen.filter((e) => sameRequest(e, correlationId));
          resolve({
            subject: hit.subject as Outcome["subject"],
            event: hit.data,
            disks: mine.filter((e) => e.subject === "disk.transferred").map((e) => e.data),
            chain: mine.find((e) => e.subject === "chain.updated")?.data,
          });
        };
        const onAbort = () => {
          done();
          reject(signal.reason ?? new Error("aborted"));
        };
        const done = () => {
          waiters.delete(check);
          signal.removeEventListener("abort", onAbort);
        };
        waiters.add(check);
        signal.addEventListener("abort", onAbort, { once: true });
        check();
      });
    },
    async close() {
      for (const s of subs) s.unsubscribe();
      if (!nc.isClosed()) await nc.close();
    },
  };
}
