/**
 * Fault injection for the lab daemon. Faults are armed by tests or the lab control API
 * and consumed by the requests they hit.
 */
export interface ImageioFaults {
  /**
   * Destroy the connection after `bytes` more body bytes (GET responses or PUT bodies),
   * counted across requests from now on, optionally only for one ticket. One-shot.
   */
  dropConnectionAfterBytes(bytes: number, ticketId?: string): void;
  /** Answer the next `count` requests (optionally of one method / matching a path) with `status`. */
  failNext(status: number, count?: number, method?: string, path?: RegExp): void;
  /** Make the ticket expired now (the next request gets 403 "... expired"). */
  expire(ticketId: string): void;
  /** Disarm everything. */
  clear(): void;
}

interface Drop {
  remaining: number;
  ticketId: string | undefined;
}

interface Failure {
  status: number;
  count: number;
  method: string | undefined;
  path: RegExp | undefined;
}

export class FaultState implements ImageioFaults {
  private drops: Drop[] = [];
  private failures: Failure[] = [];

  constructor(private readonly expireTicket: (ticketId: string) => void) {}

  dropConnectionAfterBytes(bytes: number, ticketId?: string): void {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError("bytes must be a non-negative integer");
    this.drops.push({ remaining: bytes, ticketId });
  }

  failNext(status: number, count = 1, method?: string, path?: RegExp): void {
    if (!Number.isInteger(status) || status < 400 || status > 599) throw new RangeError("status must be 4xx or 5xx");
    this.failures.push({ status, count, method: method?.toUpperCase(), path });
  }

  expire(ticketId: string): void {
    this.expireTicket(ticketId);
  }

  clear(): void {
    this.drops = [];
    this.failures = [];
  }

  /** How many of `n` body bytes may pass; fewer than `n` (or exactly the armed count) means drop after them. */
  allow(ticketId: string, n: number): { pass: number; drop: boolean } {
    const i = this.drops.findIndex((d) => d.ticketId === undefined || d.ticketId === ticketId);
    if (i < 0) return { pass: n, drop: false };
    const d = this.drops[i]!;
    if (n < d.remaining) {
      d.remaining -= n;
      return { pass: n, drop: false };
    }
    this.drops.splice(i, 1);
    return { pass: d.remaining, drop: true };
  }

  takeFailure(method: string, path: string): number | undefined {
    const f = this.failures.find((x) => (!x.method || x.method === method) && (!x.path || x.path.test(path)));
    if (!f) return undefined;
    if (--f.count <= 0) this.failures.splice(this.failures.indexOf(f), 1);
    return f.status;
  }
}
