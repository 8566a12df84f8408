/**
 * Chain records in KV `ferry-chains` (key = VM id), the same JSON as the store's
 * restore-points.json. Thin on purpose: get → {record, revision}; create (claim) and update at a
 * revision (compare-and-set) are the only writes a function uses; `change` wraps a pure update
 * in a CAS retry loop; `put` (unconditional) is for `ferry state import --force` / `rebuild --force`.
 */
import { Kvm } from "@nats-io/kv";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { TransientError } from "../../contracts/errors.ts";
import { isCasConflict, type KvLike } from "../nats/kv-record.ts";
import { ChainConflictError, ChainError, emptyChain, parseChainRecord, type ChainRecord } from "../../domain/chain/mod.ts";

export const CHAINS_BUCKET = "ferry-chains";

/** The part of @nats-io/kv's KV this adapter uses (a real bucket, or adapters/nats/testing/memory-kv in unit tests). */
export type ChainsBucket = KvLike & { put(k: string, data: Uint8Array): Promise<number> };

export interface VersionedChain {
  record: ChainRecord;
  revision: number;
}

export interface ChainsKv {
  getChain(vmId: string): Promise<VersionedChain | undefined>;
  /** Create the record; ChainConflictError when one exists. Returns the revision. */
  createChain(vmId: string, record: ChainRecord): Promise<number>;
  /** Compare-and-set: ChainConflictError when the record moved past `revision`. */
  updateChain(vmId: string, record: ChainRecord, revision: number): Promise<number>;
  /** Unconditional write (import --force, rebuild --force). */
  putChain(vmId: string, record: ChainRecord): Promise<number>;
  /** Read-modify-write with CAS, retried on conflicts. `fn` returning its input leaves the record alone. */
  change(vm: { id: string; name: string }, fn: (cur: ChainRecord) => ChainRecord, now?: Date): Promise<ChainRecord>;
  read(vmId: string): Promise<ChainRecord | undefined>;
  list(): Promise<ChainRecord[]>;
  vmIds(): Promise<string[]>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** VM ids are UUIDs on oVirt; anything outside the KV key alphabet is escaped as =XX. */
export function chainKey(vmId: string): string {
  if (!vmId) throw new ChainError("STORE_BAD_NAME", "a VM id is required");
  return vmId.replace(/[^-_.a-zA-Z0-9]/g, (c) => `=${c.charCodeAt(0).toString(16).padStart(2, "0")}`).replace(/^\.|\.$|\.\./g, (m) => m.replace(/\./g, "=2e"));
}

export function decodeChainKey(key: string): string {
  return key.replace(/=([0-9a-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

function encode(record: ChainRecord): Uint8Array {
  // pending is the store's write-ahead intent; it never goes to KV.
  const { pending: _pending, ...body } = record;
  return enc.encode(JSON.stringify(body));
}

export function chainsKv(bucket: ChainsBucket): ChainsKv {
  const getChain = async (vmId: string): Promise<VersionedChain | undefined> => {
    const e = await bucket.get(chainKey(vmId));
    if (!e || e.operation !== "PUT" || e.value.length === 0) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(dec.decode(e.value));
    } catch {
      throw new ChainError("CHAIN_INVALID", `KV ${CHAINS_BUCKET}/${chainKey(vmId)} is not JSON`);
    }
    const record = parseChainRecord(value, `KV ${CHAINS_BUCKET}/${chainKey(vmId)}`);
    if (record.vm.id !== vmId) throw new ChainError("CHAIN_INVALID", `KV ${CHAINS_BUCKET}/${chainKey(vmId)} holds the chain of VM ${record.vm.id}`);
    return { record, revision: e.revision };
  };

  const guard = (vmId: string, record: ChainRecord) => {
    parseChainRecord(record, `chain of VM ${vmId}`);
    if (record.vm.id !== vmId) throw new ChainError("CHAIN_INVALID", `record of VM ${record.vm.id} cannot be stored under ${vmId}`);
  };

  const kv: ChainsKv = {
    getChain,
    async createChain(vmId, record) {
      guard(vmId, record);
      try {
        return await bucket.create(chainKey(vmId), encode(record));
      } catch (err) {
        if (isCasConflict(err)) throw new ChainConflictError(vmId, undefined, { cause: err });
        throw err;
      }
    },
    async updateChain(vmId, record, revision) {
      guard(vmId, record);
      try {
        return await bucket.update(chainKey(vmId), encode(record), revision);
      } catch (err) {
        if (isCasConflict(err)) throw new ChainConflictError(vmId, revision, { cause: err });
        throw err;
      }
    },
    async putChain(vmId, record) {
      guard(vmId, record);
      return bucket.put(chainKey(vmId), encode(record));
    },
    async change(vm, fn, now = new Date()) {
      for (let attempt = 0; attempt < 20; attempt++) {
        const cur = await getChain(vm.id);
        const base = cur?.record ?? emptyChain(vm, now);
        const next = fn(base);
        if (next === base && cur) return base;
        try {
          if (cur) await kv.updateChain(vm.id, next, cur.revision);
          else await kv.createChain(vm.id, next);
          return next;
        } catch (err) {
          if (!(err instanceof ChainConflictError)) throw err;
          await new Promise((r) => setTimeout(r, 10 + Math.random() * 40 * (attempt + 1)));
        }
      }
      throw new TransientError("CHAIN_CONFLICT", `too many concurrent updates of the chain of VM ${vm.name}`, { vm: vm.name });
    },
    async read(vmId) {
      return (await getChain(vmId))?.record;
    },
    async vmIds() {
      const out: string[] = [];
      for await (const k of await bucket.keys()) out.push(decodeChainKey(k));
      return out.sort();
    },
    async list() {
      const out: ChainRecord[] = [];
      for await (const k of await bucket.keys()) {
        const e = await bucket.get(k);
        if (!e || e.operation !== "PUT" || e.value.length === 0) continue;
        out.push(parseChainRecord(JSON.parse(dec.decode(e.value)), `KV ${CHAINS_BUCKET}/${k}`));
      }
      return out;
    },
  };
  return kv;
}

/** Open (or with `create`, create) the bucket. Provisioning with the real settings is infra's job. */
export async function openChainsKv(nc: NatsConnection | JetStreamClient, o: { bucket?: string; create?: boolean } = {}): Promise<ChainsKv> {
  const kvm = new Kvm(nc);
  const name = o.bucket ?? CHAINS_BUCKET;
  const bucket = o.create ? await kvm.create(name, { history: 10 }) : await kvm.open(name);
  return chainsKv(bucket);
}
