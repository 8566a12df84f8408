/**
 * Backup slots (KV ferry-slots): at most N backups at once per engine — and, when configured, per
 * host and per storage domain — across every process and machine that shares the bus.
 *
 * One record per scope (`engine.<name>`, `host.<engine>.<host id>`, `sd.<engine>.<domain id>`)
 * lists its holders; a holder is added or removed only by compare-and-set, so two processes never
 * both take the last slot. A holder carries an expiry renewed while its backup works (like the VM
 * lease), so the slot of a process that died frees itself after the TTL — nobody has to clean up.
 *
 * A request that finds a scope full waits in its handler (it keeps its delivery in progress and
 * spends no delivery attempt): it watches the scope records and tries again as soon as one
 * changes, or when the earliest holder's expiry passes. All scopes of a backup are taken at once
 * or not at all (in a fixed order), so a backup never sits on an engine slot while it waits for a
 * storage domain.
 */
import { randomUUID } from "node:crypto";
import { casUpdate, kvKey, readRecord, type KvLike } from "../adapters/nats/kv-record.ts";

export interface SlotScope {
  /** KV key: `engine.prd`, `host.prd.<id>`, `sd.prd.<id>`. */
  readonly key: string;
  readonly limit: number;
}

export interface SlotHolder {
  /** One acquisition (a run can hold a scope once; its retry replaces what a dead attempt left). */
  readonly token: string;
  readonly runId: string;
  readonly owner: string;
  readonly vm: string;
  /** When the slot was taken (not when the request began to wait). */
  readonly since: string;
  readonly expiresAt: string;
}

export interface SlotRecord {
  readonly scope: string;
  readonly holders: readonly SlotHolder[];
}

export interface SlotHold {
  /** How long the request waited for its slots. */
  readonly waitedMs: number;
  /** Push the expiry forward in every scope (call while working). */
  renew(): Promise<void>;
  /** Give the slots back (idempotent). */
  release(): Promise<void>;
}

export interface SlotRequest {
  readonly scopes: readonly SlotScope[];
  readonly runId: string;
  readonly owner: string;
  readonly vm: string;
  readonly signal?: AbortSignal | undefined;
  /** Called once when the request has to wait: the first full scope and its holders. */
  readonly onWait?: (full: { scope: string; limit: number; holders: readonly SlotHolder[] }) => void;
}

export interface Slots {
  readonly ttlMs: number;
  /** Wait until every scope has a free slot, then take them all. Rejects only when `signal` aborts (or KV fails). */
  acquire(req: SlotRequest): Promise<SlotHold>;
  /** Live holders of one scope (expired ones left out). */
  holders(scope: string): Promise<SlotHolder[]>;
}

/** The slots KV as this module needs it: records by compare-and-set, plus (optionally) a watch to wake waiters. */
export interface SlotsKv extends KvLike {
  watch?(opts: { key?: string | string[]; include?: "updates" }): Promise<AsyncIterable<unknown> & { stop(): void }>;
}

export interface SlotsOptions {
  /** A holder that stops renewing is dropped after this long. */
  readonly ttlMs: number;
  /** Longest sleep between two tries without a KV change (a scope whose holder died frees at its expiry). Default 5 s. */
  readonly maxPollMs?: number;
  readonly clock?: () => Date;
}

export interface SlotLimits {
  readonly backupsPerEngine: number;
  readonly backupsPerHost?: number | undefined;
  readonly backupsPerStorageDomain?: number | undefined;
}

/** The scopes one backup takes: its engine, and its host and storage domains where a limit is set. */
export function backupScopes(where: { engine: string; hostId?: string | undefined; storageDomainIds?: readonly string[] | undefined }, limits: SlotLimits): SlotScope[] {
  const scopes: SlotScope[] = [{ key: `engine.${kvKey(where.engine)}`, limit: limits.backupsPerEngine }];
  if (limits.backupsPerHost !== undefined && where.hostId) scopes.push({ key: `host.${kvKey(where.engine)}.${kvKey(where.hostId)}`, limit: limits.backupsPerHost });
  if (limits.backupsPerStorageDomain !== undefined) {
    for (const sd of new Set(where.storageDomainIds ?? [])) scopes.push({ key: `sd.${kvKey(where.engine)}.${kvKey(sd)}`, limit: limits.backupsPerStorageDomain });
  }
  return scopes;
}

export function createSlots(kv: SlotsKv, o: SlotsOptions): Slots {
  const clock = o.clock ?? (() => new Date());
  const maxPollMs = o.maxPollMs ?? 5_000;
  const live = (h: SlotHolder) => Date.parse(h.expiresAt) > clock().getTime();
  const expiry = () => new Date(clock().getTime() + o.ttlMs).toISOString();

  /** Add the holder to one scope if it has room. Returns the live holders when it is full. */
  async function take(scope: SlotScope, me: SlotHolder): Promise<readonly SlotHolder[] | undefined> {
    let full: SlotHolder[] | undefined;
    await casUpdate<SlotRecord>(kv, scope.key, (cur) => {
      full = undefined;
      // Expired holders go; so does an earlier holder of this run (its worker died, this is the retry).
      const others = (cur?.holders ?? []).filter((h) => live(h) && h.runId !== me.runId);
      if (others.length >= scope.limit) {
        full = others;
        return undefined;
      }
      return { scope: scope.key, holders: [...others, me] };
    });
    return full;
  }

  async function drop(scopeKey: string, token: string): Promise<void> {
    await casUpdate<SlotRecord>(kv, scopeKey, (cur) => (cur?.holders.some((h) => h.token === token) ? { scope: scopeKey, holders: cur.holders.filter((h) => h.token !== token) } : undefined));
  }

  /** Every scope or none: on a full one, what was taken this round is given back. */
  async function tryAll(scopes: readonly SlotScope[], me: SlotHolder): Promise<{ scope: SlotScope; holders: readonly SlotHolder[] } | undefined> {
    // Look before taking: a backup held back by a full storage domain does not keep taking and
    // giving back the engine slot (briefly making it look full to others) on every wake-up.
    for (const scope of scopes) {
      const others = ((await readRecord<SlotRecord>(kv, scope.key))?.value.holders ?? []).filter((h) => live(h) && h.runId !== me.runId);
      if (others.length >= scope.limit) return { scope, holders: others };
    }
    const taken: SlotScope[] = [];
    for (const scope of scopes) {
      const full = await take(scope, { ...me, since: clock().toISOString(), expiresAt: expiry() });
      if (full) {
        for (const t of taken) await drop(t.key, me.token);
        return { scope, holders: full };
      }
      taken.push(scope);
    }
    return undefined;
  }

  return {
    ttlMs: o.ttlMs,
    async holders(scope) {
      return ((await readRecord<SlotRecord>(kv, scope))?.value.holders ?? []).filter(live);
    },
    async acquire(req) {
      // A fixed order: two backups needing the same two scopes never each hold one of them.
      const scopes = [...new Map(req.scopes.map((s) => [s.key, s])).values()].sort((a, b) => a.key.localeCompare(b.key));
      for (const s of scopes) if (!Number.isInteger(s.limit) || s.limit < 1) throw new RangeError(`slot limit of ${s.key} must be an integer >= 1 (got ${s.limit})`);
      const started = clock().getTime();
      const me: SlotHolder = { token: randomUUID(), runId: req.runId, owner: req.owner, vm: req.vm, since: clock().toISOString(), expiresAt: expiry() };
      const waiter = new ChangeWaiter(kv, scopes.map((s) => s.key));
      let told = false;
      try {
        for (;;) {
          req.signal?.throwIfAborted();
          const full = await tryAll(scopes, me);
          if (!full) break;
          if (!told) {
            told = true;
            req.onWait?.({ scope: full.scope.key, limit: full.scope.limit, holders: full.holders });
          }
          // Watch first, then look again: a release between the failed try and the watch is not missed.
          if (await waiter.start()) continue;
          const nextExpiry = Math.min(...full.holders.map((h) => Date.parse(h.expiresAt)));
          await waiter.next(Math.max(20, Math.min(maxPollMs, nextExpiry - clock().getTime() + 20)), req.signal);
        }
      } finally {
        waiter.stop();
      }
      return hold(scopes, me, clock().getTime() - started);
    },
  };

  function hold(scopes: readonly SlotScope[], me: SlotHolder, waitedMs: number): SlotHold {
    // Renewals and the release run one after the other (a renewal after the release must not re-add).
    let queue: Promise<unknown> = Promise.resolve();
    let released = false;
    const serial = (op: () => Promise<void>): Promise<void> => {
      const next = queue.then(op, op);
      queue = next.catch(() => undefined);
      return next;
    };
    return {
      waitedMs,
      renew: () =>
        serial(async () => {
          if (released) return;
          const expiresAt = expiry();
          for (const s of scopes) {
            await casUpdate<SlotRecord>(kv, s.key, (cur) => {
              const holders = cur?.holders ?? [];
              if (holders.some((h) => h.token === me.token)) return { scope: s.key, holders: holders.map((h) => (h.token === me.token ? { ...h, expiresAt } : h)) };
              // Dropped as expired while this process could not renew: take it back if there is room.
              const others = holders.filter(live);
              return others.length < s.limit ? { scope: s.key, holders: [...others, { ...me, since: clock().toISOString(), expiresAt }] } : undefined;
            });
          }
        }),
      release: () =>
        serial(async () => {
          if (released) return;
          released = true;
          for (const s of scopes) await drop(s.key, me.token);
        }),
    };
  }
}

/** Wakes a waiter when one of the watched keys changes (a KV watch), or after a timeout. */
class ChangeWaiter {
  #watch: { stop(): void } | undefined;
  #changed = false;
  #wake: (() => void) | undefined;
  #started = false;

  private readonly kv: SlotsKv;
  private readonly keys: string[];
  constructor(
    kv: SlotsKv,
    keys: string[],
  ) {
    this.kv = kv;
    this.keys = keys;
  }

  /** Start watching (once). True when it just started: the caller looks again before sleeping. */
  async start(): Promise<boolean> {
    if (this.#started) return false;
    this.#started = true;
    if (!this.kv.watch) return false;
    const w = await this.kv.watch({ key: this.keys, include: "updates" }).catch(() => undefined);
    if (!w) return false; // polling alone still works
    this.#watch = w;
    void (async () => {
      try {
        for await (const _ of w) {
          this.#changed = true;
          this.#wake?.();
        }
      } catch {
        /* the watch ended: the timeout keeps the waiter going */
      }
    })();
    return true;
  }

  async next(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (!this.#changed) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          this.#wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal?.addEventListener("abort", done, { once: true });
        this.#wake = done;
      });
    }
    this.#changed = false;
    signal?.throwIfAborted();
  }

  stop(): void {
    this.#wake?.();
    this.#watch?.stop();
  }
}
