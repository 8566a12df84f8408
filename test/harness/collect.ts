/**
 * Test helper: collect JSON messages from a core subscription (Ferry's events are ordinary
 * NATS publishes, so a plain subscriber sees them whether or not a stream stores them).
 */
import type { NatsConnection } from "@nats-io/nats-core";

export interface Collector {
  readonly messages: { subject: string; data: Record<string, unknown> }[];
  /** Resolves once `n` messages matched `where` (default: any), or rejects after timeoutMs. */
  waitFor(n: number, timeoutMs?: number, where?: (m: { subject: string; data: Record<string, unknown> }) => boolean): Promise<{ subject: string; data: Record<string, unknown> }[]>;
  stop(): void;
}

export function collect(nc: NatsConnection, subject: string): Collector {
  const messages: Collector["messages"] = [];
  const waiters = new Set<() => void>();
  const sub = nc.subscribe(subject, {
    callback: (_err, msg) => {
      let data: Record<string, unknown>;
      try {
        data = msg.json<Record<string, unknown>>();
      } catch {
        data = { $raw: msg.string() };
      }
      messages.push({ subject: msg.subject, data });
      for (const w of waiters) w();
    },
  });
  return {
    messages,
    waitFor(n, timeoutMs = 15_000, where = () => true) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hits = messages.filter(where);
          if (hits.length >= n) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(hits);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${n} message(s) on ${subject}; got ${JSON.stringify(messages.filter(where)).slice(0, 1500)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    stop: () => sub.unsubscribe(),
  };
}
