/**
 * A JSON record in a JetStream KV bucket, changed only by create (claim) and update at a
 * revision (advance). The narrow KV shape is what @nats-io/kv's KV satisfies.
 */
import { TransientError } from "../../contracts/errors.ts";

export interface KvEntryLike {
  readonly value: Uint8Array;
  readonly revision: number;
  readonly operation: "PUT" | "DEL" | "PURGE";
}

export interface KvLike {
  get(k: string): Promise<KvEntryLike | null>;
  create(k: string, data: Uint8Array): Promise<number>;
  update(k: string, data: Uint8Array, version: number): Promise<number>;
  delete(k: string, opts?: { previousSeq?: number }): Promise<void>;
  keys(filter?: string): Promise<AsyncIterable<string>>;
}

export interface Versioned<T> {
  readonly value: T;
  readonly revision: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** KV keys allow [-/_=.a-zA-Z0-9]; anything else (':' in '<stream>:<seq>' ids) is escaped as =XX. */
export function kvKey(id: string): string {
  return id.replace(/[^-_.a-zA-Z0-9]/g, (c) => `=${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

export async function readRecord<T>(kv: KvLike, key: string): Promise<Versioned<T> | undefined> {
  const e = await kv.get(key);
  if (!e || e.operation !== "PUT" || e.value.length === 0) return undefined;
  return { value: JSON.parse(dec.decode(e.value)) as T, revision: e.revision };
}

export function encodeRecord(value: unknown): Uint8Array {
  return enc.encode(JSON.stringify(value));
}

/** Is this a compare-and-set conflict (someone else wrote first)? */
export function isCasConflict(err: unknown): boolean {
  // JetStream's API error code is the typed signal (10071 wrong last sequence); the message is
  // the fallback for client versions that do not expose it.
  const e = err as { api_error?: { err_code?: number } } | undefined;
  if (e?.api_error?.err_code === 10071 || e?.api_error?.err_code === 10164) return true;
  const msg = err instanceof Error ? err.message : String(err);
  return /wrong last sequence|key exists|10071|10164/i.test(msg);
}

/**
 * Read-modify-write with compare-and-set, retried on conflicts. `change` returns the new value,
 * or undefined to leave the record as it is.
 */
export async function casUpdate<T>(
  kv: KvLike,
  key: string,
  change: (current: T | undefined) => T | undefined,
  attempts = 20,
): Promise<Versioned<T> | undefined> {
  for (let i = 0; i < attempts; i++) {
    const cur = await readRecord<T>(kv, key);
    const next = change(cur?.value);
    if (next === undefined) return cur;
    try {
      const revision = cur ? await kv.update(key, encodeRecord(next), cur.revision) : await kv.create(key, encodeRecord(next));
      return { value: next, revision };
    } catch (err) {
      if (!isCasConflict(err)) throw err;
    }
  }
  throw new TransientError("KV_CONFLICT", `too many concurrent updates of ${key}`, { key });
}
