/**
 * The alerts rate limit, shared by every process of the alerts function through one KV bucket
 * (ferry-alerts). Fixed one-minute windows per engine:
 *
 *   w.<engine>.<window start ms>  {posted: [custom_id...], heldBack, heldBackIds, closed?, summaryPosted?}
 *   a.<custom_id>                 {decision: "post" | "hold", engine, window, posted?}
 *
 * A failure counts in the window of the time it happened (its event's `time`), not of when it is
 * handled: a storm handled slowly on a loaded machine is still one storm. A time in the future, or
 * older than two windows (a replay), counts now.
 * Every change is a compare-and-set, so two processes never grant more than `limit` posts in one
 * window. A failure's decision is recorded (in the window and under its custom_id), so a
 * redelivery or a second failure event of the same run is never counted twice. A window that
 * held failures back is closed by the process that claims its summary (CAS); a failure handled
 * after that counts in the next window, so no held-back failure is missing from a summary.
 */
import { encodeRecord, isCasConflict, readRecord, type KvLike } from "../../adapters/nats/kv-record.ts";
import { TransientError } from "../../contracts/errors.ts";

export interface WindowRecord {
  readonly engine: string;
  /** Window start, ms since the epoch (a multiple of windowMs). */
  readonly start: number;
  readonly end: number;
  /** custom_ids granted an individual alert in this window (at most `limit`). */
  readonly posted: readonly number[];
  /** Failures not posted individually: counted in the window's summary. */
  readonly heldBack: number;
  /** Their custom_ids (kept up to MAX_IDS; beyond that only counted). */
  readonly heldBackIds: readonly number[];
  /** Set by the process that claimed the summary: the window takes no more failures. */
  readonly closed?: { readonly by: string; readonly at: number } | undefined;
  readonly summaryPosted?: boolean | undefined;
}

export interface AlertMark {
  readonly decision: "post" | "hold";
  readonly engine: string;
  readonly window: number;
  readonly posted?: boolean | undefined;
}

export type Decision =
  /** Post the alert (again, after a crash: the engine refuses a duplicate custom_id). */
  | { readonly kind: "post"; readonly window: number }
  /** Counted in the window's summary; not posted individually. */
  | { readonly kind: "hold"; readonly window: number }
  /** Already posted (a redelivery or another failure event of the same run). */
  | { readonly kind: "done"; readonly window: number };

export interface LimiterOptions {
  /** Individual alerts per engine per window. */
  readonly limit: number;
  readonly windowMs: number;
  readonly clock: () => number;
  /** Who claims summaries (host:pid). */
  readonly owner: string;
  /** A summary claim older than this, not marked posted, may be taken over (its claimant died). */
  readonly claimTimeoutMs?: number;
  /** How long after a window's end it is summarized (clock differences between processes). */
  readonly graceMs?: number;
}

export interface DueSummary {
  readonly engine: string;
  readonly start: number;
  readonly end: number;
  readonly heldBack: number;
}

const MAX_IDS = 2000;
const ATTEMPTS = 50;

/** After a lost compare-and-set: a short random pause, so contenders spread out. */
const backoff = (attempt: number) => new Promise<void>((r) => setTimeout(r, Math.random() * Math.min(50, 2 + 2 * attempt)));

/** KV key tokens: engine names may contain '.', which would split the key. */
function token(s: string): string {
  return s.replace(/[^-_a-zA-Z0-9]/g, (c) => `=${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

export const windowKey = (engine: string, start: number) => `w.${token(engine)}.${start}`;
export const markKey = (customId: number) => `a.${customId}`;

export interface AlertLimiter {
  readonly limit: number;
  readonly windowMs: number;
  /** Decide for one failure's alert (custom_id) on `engine`; `at` is when the failure happened (ms). */
  decide(engine: string, customId: number, at?: number): Promise<Decision>;
  /** Record that the alert was posted (best effort: a re-post is refused by the engine anyway). */
  posted(customId: number): Promise<void>;
  /** Windows that ended, held failures back and have no summary yet; claims each (CAS) before returning it. */
  claimDueSummaries(): Promise<DueSummary[]>;
  summaryPosted(engine: string, start: number): Promise<void>;
}

export function createAlertLimiter(kv: KvLike, o: LimiterOptions): AlertLimiter {
  const claimTimeoutMs = o.claimTimeoutMs ?? 60_000;
  const graceMs = o.graceMs ?? 1000;
  const windowOf = (t: number) => Math.floor(t / o.windowMs) * o.windowMs;
  const empty = (engine: string, start: number): WindowRecord => ({ engine, start, end: start + o.windowMs, posted: [], heldBack: 0, heldBackIds: [] });

  /** create or update at the read revision; false on a CAS conflict. */
  async function write(key: string, value: unknown, revision: number | undefined): Promise<boolean> {
    try {
      if (revision === undefined) await kv.create(key, encodeRecord(value));
      else await kv.update(key, encodeRecord(value), revision);
      return true;
    } catch (err) {
      if (isCasConflict(err)) return false;
      throw err;
    }
  }

  /** The window a failure at `at` counts in. */
  function windowFor(at: number | undefined): number {
    const now = o.clock();
    if (at === undefined || !Number.isFinite(at) || at > now || now - at > 2 * o.windowMs) return windowOf(now);
    return windowOf(at);
  }

  async function decideInWindow(engine: string, customId: number, at: number | undefined): Promise<Decision> {
    let start = windowFor(at);
    for (let i = 0; i < ATTEMPTS; i++) {
      const key = windowKey(engine, start);
      const cur = await readRecord<WindowRecord>(kv, key);
      const w = cur?.value ?? empty(engine, start);
      if (w.posted.includes(customId)) return { kind: "post", window: start };
      if (w.heldBackIds.includes(customId)) return { kind: "hold", window: start };
      if (w.closed) {
        // Its summary is being posted: this failure belongs to a later window.
        start = Math.max(windowOf(o.clock()), start + o.windowMs);
        continue;
      }
      const grant = w.posted.length < o.limit;
      const next: WindowRecord = grant
        ? { ...w, posted: [...w.posted, customId] }
        : { ...w, heldBack: w.heldBack + 1, heldBackIds: w.heldBackIds.length < MAX_IDS ? [...w.heldBackIds, customId] : w.heldBackIds };
      if (await write(key, next, cur?.revision)) return { kind: grant ? "post" : "hold", window: start };
      await backoff(i);
    }
    throw new TransientError("KV_CONFLICT", `too many concurrent updates of the alert window of engine ${engine}`, { engine });
  }

  return {
    limit: o.limit,
    windowMs: o.windowMs,

    async decide(engine, customId, at) {
      const mark = await readRecord<AlertMark>(kv, markKey(customId));
      if (mark) {
        const m = mark.value;
        if (m.decision === "post") return { kind: m.posted ? "done" : "post", window: m.window };
        return { kind: "hold", window: m.window };
      }
      const d = await decideInWindow(engine, customId, at);
      const value: AlertMark = { decision: d.kind === "hold" ? "hold" : "post", engine, window: d.window };
      // Another delivery of the same alert may have written it meanwhile; both decided alike.
      await write(markKey(customId), value, undefined);
      return d;
    },

    async posted(customId) {
      for (let i = 0; i < 5; i++) {
        const cur = await readRecord<AlertMark>(kv, markKey(customId));
        if (!cur || cur.value.posted) return;
        if (await write(markKey(customId), { ...cur.value, posted: true }, cur.revision)) return;
      }
    },

    async claimDueSummaries() {
      const now = o.clock();
      const due: DueSummary[] = [];
      for await (const key of await kv.keys("w.>")) {
        if (!key.startsWith("w.")) continue;
        const cur = await readRecord<WindowRecord>(kv, key);
        if (!cur) continue;
        const w = cur.value;
        if (w.heldBack === 0 || w.summaryPosted || now < w.end + graceMs) continue;
        if (w.closed && now - w.closed.at < claimTimeoutMs) continue; // another process is on it
        if (await write(key, { ...w, closed: { by: o.owner, at: now } }, cur.revision)) {
          due.push({ engine: w.engine, start: w.start, end: w.end, heldBack: w.heldBack });
        }
      }
      return due.sort((a, b) => a.start - b.start);
    },

    async summaryPosted(engine, start) {
      const key = windowKey(engine, start);
      for (let i = 0; i < 5; i++) {
        const cur = await readRecord<WindowRecord>(kv, key);
        if (!cur || cur.value.summaryPosted) return;
        if (await write(key, { ...cur.value, summaryPosted: true }, cur.revision)) return;
      }
    },
  };
}
