import { PermanentError, TransientError } from "../../contracts/errors.ts";

/**
 * Tickets as imageio's auth.py keeps them: the uuid is the only credential; each ticket
 * tracks its ongoing operations (active, idle_time), the connections bound to it, the
 * ranges transferred, expiry and cancellation. Times are whole seconds of a monotonic
 * clock, as in imageio.
 */

export interface LabTicket {
  uuid: string;
  size: number;
  ops: ("read" | "write")[];
  timeout: number;
  /** e.g. "nbd:unix:/path/to.sock:exportname=x" */
  url: string;
  inactivityTimeout?: number;
  transferId?: string;
  sparse?: boolean;
  dirty?: boolean;
  filename?: string;
}

export interface TicketInfo extends LabTicket {
  active: boolean;
  canceled: boolean;
  connections: number;
  expires: number;
  idle_time: number;
  inactivityTimeout: number;
  transferId: string;
  sparse: boolean;
  dirty: boolean;
  /** Absent for read-write tickets, like imageio. */
  transferred?: number;
}

/** The daemon's default inactivity timeout (daemon.inactivity_timeout). */
export const DEFAULT_INACTIVITY_TIMEOUT = 60;

export class AuthorizationError extends Error {
  constructor(reason: string) {
    super(`You are not allowed to access this resource: ${reason}`);
  }
}

/** Raised inside an operation when its ticket was canceled; ticket.run turns it into AuthorizationError. */
export class OperationCanceled extends Error {}

export class InvalidTicketError extends PermanentError {
  constructor(message: string) {
    super("IMAGEIO_INVALID_TICKET", message);
  }
}

export class TicketCancelTimeoutError extends TransientError {
  constructor(transferId: string) {
    super("IMAGEIO_TICKET_CANCEL_TIMEOUT", `Timeout cancelling ticket ${transferId}`, { transferId });
  }
}

export interface Operation {
  offset: number;
  done: number;
  canceled: boolean;
}

/** Union of half-open ranges, kept sorted and merged. */
export class RangeList {
  private ranges: Array<[number, number]> = [];

  add(start: number, end: number): void {
    if (end <= start) return;
    const out: Array<[number, number]> = [];
    let s = start;
    let e = end;
    let placed = false;
    for (const [a, b] of this.ranges) {
      if (b < s) out.push([a, b]);
      else if (a > e) {
        if (!placed) {
          out.push([s, e]);
          placed = true;
        }
        out.push([a, b]);
      } else {
        s = Math.min(s, a);
        e = Math.max(e, b);
      }
    }
    if (!placed) out.push([s, e]);
    this.ranges = out;
  }

  clone(): RangeList {
    const r = new RangeList();
    r.ranges = this.ranges.map(([a, b]) => [a, b]);
    return r;
  }

  sum(): number {
    return this.ranges.reduce((s, [a, b]) => s + b - a, 0);
  }
}

export type Clock = () => number;

export const monotonicSeconds: Clock = () => Number(process.hrtime.bigint() / 1_000_000n) / 1000;

export interface TicketConnection {
  close(): void;
}

export class Ticket {
  readonly uuid: string;
  readonly size: number;
  readonly ops: ("read" | "write")[];
  readonly timeout: number;
  readonly url: string;
  readonly inactivityTimeout: number;
  readonly transferId: string;
  readonly sparse: boolean;
  readonly dirty: boolean;
  readonly filename: string | undefined;

  expires: number;
  private accessTime: number;
  private canceledFlag = false;
  private readonly ongoing = new Set<Operation>();
  private readonly completed = new RangeList();
  readonly connections = new Map<number, TicketConnection>();
  private unusedWaiters: Array<() => void> = [];

  private readonly clock: Clock;
  constructor(
    t: LabTicket,
    clock: Clock,
  ) {
    this.clock = clock;
    const str = (v: unknown, k: string) => {
      if (typeof v !== "string") throw new InvalidTicketError(`Invalid value for '${k}': expecting a string`);
      return v;
    };
    const int = (v: unknown, k: string) => {
      if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
        throw new InvalidTicketError(`Invalid value for '${k}': expecting a non-negative integer`);
      }
      return v;
    };
    this.uuid = str(t.uuid, "uuid");
    if (!this.uuid) throw new InvalidTicketError("Invalid value for 'uuid': empty");
    this.size = int(t.size, "size");
    if (!Array.isArray(t.ops) || !t.ops.every((o) => o === "read" || o === "write")) {
      throw new InvalidTicketError("Invalid value for 'ops': expecting a list of 'read' and 'write'");
    }
    this.ops = [...t.ops];
    this.timeout = int(t.timeout, "timeout");
    this.url = str(t.url, "url");
    if (!this.url.startsWith("nbd:")) throw new InvalidTicketError(`Unsupported url scheme: ${this.url.split(":")[0]}`);
    this.inactivityTimeout = t.inactivityTimeout === undefined ? DEFAULT_INACTIVITY_TIMEOUT : int(t.inactivityTimeout, "inactivity_timeout");
    // Engines before 4.2.7 sent no transfer id; imageio derives one from the uuid.
    this.transferId = t.transferId ?? `(ticket/${this.uuid.slice(0, 18)})`;
    this.sparse = t.sparse ?? false;
    this.dirty = t.dirty ?? false;
    this.filename = t.filename;
    const now = Math.floor(clock());
    this.expires = now + this.timeout;
    this.accessTime = now;
  }

  private forcedExpired = false;

  get canceled(): boolean {
    return this.canceledFlag;
  }

  active(): boolean {
    return this.ongoing.size > 0;
  }

  idleTime(): number {
    if (this.active()) return 0;
    return Math.floor(this.clock()) - this.accessTime;
  }

  may(op: "read" | "write"): boolean {
    return op === "read" ? this.ops.includes("read") || this.ops.includes("write") : this.ops.includes(op);
  }

  touch(): void {
    const now = Math.floor(this.clock());
    // A forced expiry (fault injection) sticks until the engine extends the ticket: a request
    // finishing just after the fault must not revive it.
    if (!this.forcedExpired) this.expires = now + this.timeout;
    this.accessTime = now;
  }

  extend(timeout: number): void {
    this.forcedExpired = false;
    this.expires = Math.floor(this.clock()) + timeout;
  }

  /** Expire the ticket now, as a lost renewal would. */
  expireNow(): void {
    this.forcedExpired = true;
    this.expires = Math.floor(this.clock()) - 1;
  }

  isExpired(): boolean {
    return this.forcedExpired || this.expires <= this.clock();
  }

  addConnection(id: number, c: TicketConnection): void {
    if (this.canceledFlag) throw new AuthorizationError(`Transfer ${this.transferId} was canceled`);
    this.connections.set(id, c);
  }

  removeConnection(id: number): void {
    const c = this.connections.get(id);
    if (!c) return;
    this.connections.delete(id);
    c.close();
  }

  /** Run an operation bound to this ticket (ticket.run): counts as activity, records the range. */
  async run<T>(op: Operation, fn: () => Promise<T>): Promise<T | undefined> {
    if (this.canceledFlag) throw new AuthorizationError(`Transfer ${this.transferId} was canceled`);
    this.ongoing.add(op);
    let result: T | undefined;
    try {
      result = await fn();
    } catch (err) {
      if (!(err instanceof OperationCanceled)) throw err;
    } finally {
      this.ongoing.delete(op);
      if (this.canceledFlag) {
        if (!this.ongoing.size) this.wakeUnused();
        // eslint-disable-next-line no-unsafe-finally
        throw new AuthorizationError(`Transfer ${this.transferId} was canceled`);
      }
      // imageio does not report transferred bytes for read-write tickets.
      if (this.ops.length === 1) this.completed.add(op.offset, op.offset + op.done);
      this.touch();
    }
    return result;
  }

  transferred(): number | undefined {
    if (this.ops.length > 1) return undefined;
    const r = this.completed.clone();
    for (const op of this.ongoing) r.add(op.offset, op.offset + op.done);
    return r.sum();
  }

  /**
   * Cancel: no new operation or connection may start, ongoing ones stop at their next
   * I/O step. Resolves when nothing is running; rejects after `timeoutMs`.
   */
  async cancel(timeoutMs: number): Promise<void> {
    this.canceledFlag = true;
    for (const op of this.ongoing) op.canceled = true;
    if (this.ongoing.size) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          new Promise<void>((resolve) => this.unusedWaiters.push(resolve)),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new TicketCancelTimeoutError(this.transferId)), timeoutMs);
          }),
        ]);
      } finally {
        clearTimeout(timer);
      }
    }
    for (const id of [...this.connections.keys()]) this.removeConnection(id);
  }

  info(): TicketInfo {
    const info: TicketInfo = {
      uuid: this.uuid,
      size: this.size,
      ops: [...this.ops],
      timeout: this.timeout,
      url: this.url,
      inactivityTimeout: this.inactivityTimeout,
      transferId: this.transferId,
      sparse: this.sparse,
      dirty: this.dirty,
      active: this.active(),
      canceled: this.canceledFlag,
      connections: this.connections.size,
      expires: this.expires,
      idle_time: this.idleTime(),
    };
    if (this.filename !== undefined) info.filename = this.filename;
    const transferred = this.transferred();
    if (transferred !== undefined) info.transferred = transferred;
    return info;
  }

  private wakeUnused(): void {
    const w = this.unusedWaiters;
    this.unusedWaiters = [];
    for (const f of w) f();
  }
}

export class Authorizer {
  private readonly tickets = new Map<string, Ticket>();

  private readonly clock: Clock;
  constructor(clock: Clock) {
    this.clock = clock;
  }

  add(t: LabTicket): Ticket {
    const ticket = new Ticket(t, this.clock);
    this.tickets.set(ticket.uuid, ticket);
    return ticket;
  }

  get(id: string): Ticket | undefined {
    return this.tickets.get(id);
  }

  all(): Ticket[] {
    return [...this.tickets.values()];
  }

  /** Cancel, wait until unused, then forget. Idempotent. */
  async remove(id: string, timeoutMs: number): Promise<void> {
    const ticket = this.tickets.get(id);
    if (!ticket) return;
    await ticket.cancel(timeoutMs);
    if (this.tickets.get(id) === ticket) this.tickets.delete(id);
  }

  authorize(id: string, op: "read" | "write"): Ticket {
    const ticket = this.tickets.get(id);
    if (!ticket) throw new AuthorizationError(`No such ticket ${id}`);
    if (ticket.canceled) throw new AuthorizationError(`Transfer=${ticket.transferId} was canceled`);
    if (ticket.isExpired()) throw new AuthorizationError(`Transfer=${ticket.transferId} expired`);
    if (!ticket.may(op)) throw new AuthorizationError(`Transfer=${ticket.transferId} forbids ${op}`);
    return ticket;
  }
}
