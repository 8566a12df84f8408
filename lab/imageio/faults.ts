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
  /** Send and receive image data at about this many bytes/s (0: full speed), so a transfer is still running when a fault hits. */
  throttle(bytesPerSecond: number): void;
  /** Hold the next data piece this long (a daemon that stops answering mid-transfer). One-shot. */
  stall(ms: number): void;
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
  private rate = 0;
  private stallMs = 0;

  private readonly expireTicket: (ticketId: string) => void;
  constructor(expireTicket: (ticketId: string) => void) {
    this.expireTicket = expireTicket;
  }

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

  throttle(bytesPerSecond: number): void {
    if (!Number.isSafeInteger(bytesPerSecond) || bytesPerSecond < 0) throw new RangeError("bytesPerSecond must be a non-negative integer");
    this.rate = bytesPerSecond;
  }

  stall(ms: number): void {
    if (!Number.isSafeInteger(ms) || ms < 0) throw new RangeError("ms must be a non-negative integer");
    this.stallMs = ms;
  }

  /** How long to wait before passing `n` data bytes (throttle and a one-shot stall). */
  delayFor(n: number): number {
    const stall = this.stallMs;
    this.stallMs = 0;
    return stall + (this.rate > 0 ? (n / this.rate) * 1000 : 0);
  }

  clear(): void {
    this.drops = [];
    this.failures = [];
    this.rate = 0;
    this.stallMs = 0;
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
