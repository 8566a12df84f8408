/**
 * DR replication state and what changed between two restore points.
 *
 * State (KV ferry-runs, key `replica.<target>.<vm>`, kind "replica"): which restore point the
 * standing DR copy holds, its VM id and, per disk, the DR disk id and the checksum it must have.
 * A refresh that finds the DR disk with another checksum knows it was changed behind Ferry's back.
 *
 * Changed ranges: the new point's chain read with `qemu-img map` — the extents its layers above the
 * previously replicated point's top layer define are exactly what changed (cluster granularity).
 * When retention merged those layers away, the two points' recorded block digests say which
 * 4 MiB blocks differ instead.
 */
import { casUpdate, kvKey, readRecord, type KvLike } from "../adapters/nats/kv-record.ts";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { decodeDigests, type ResolvedPoint, type Store } from "../adapters/store/mod.ts";

export interface ReplicaDisk {
  readonly sourceId: string;
  readonly alias: string;
  /** The DR disk. */
  readonly id: string;
  /** imageio checksum the DR disk has (the replicated point's). */
  readonly checksum: string;
}

export interface ReplicaState {
  readonly kind: "replica";
  readonly vm: string;
  readonly target: string;
  readonly name: string;
  readonly vmId: string;
  readonly point: string;
  readonly disks: readonly ReplicaDisk[];
  readonly updatedAt: string;
}

export interface Replicas {
  get(target: string, vm: string): Promise<ReplicaState | undefined>;
  put(state: Omit<ReplicaState, "kind" | "updatedAt">): Promise<void>;
  remove(target: string, vm: string): Promise<void>;
}

export function createReplicas(kv: KvLike, clock: () => Date = () => new Date()): Replicas {
  const key = (target: string, vm: string) => kvKey(`replica.${target}.${vm}`);
  return {
    async get(target, vm) {
      const r = (await readRecord<ReplicaState>(kv, key(target, vm)))?.value;
      return r?.kind === "replica" ? r : undefined;
    },
    async put(state) {
      await casUpdate<ReplicaState>(kv, key(state.target, state.vm), () => ({ ...state, kind: "replica", updatedAt: clock().toISOString() }));
    },
    async remove(target, vm) {
      await kv.delete(key(target, vm)).catch(() => undefined);
    },
  };
}

export interface Range {
  readonly offset: number;
  readonly length: number;
}

function merge(ranges: Range[]): Range[] {
  const out: Range[] = [];
  for (const r of ranges.sort((a, b) => a.offset - b.offset)) {
    const last = out.at(-1);
    if (last && r.offset <= last.offset + last.length) out[out.length - 1] = { offset: last.offset, length: Math.max(last.offset + last.length, r.offset + r.length) - last.offset };
    else out.push(r);
  }
  return out;
}

/**
 * The byte ranges of disk `diskId` that differ between restore point `from` and `to` (of one VM),
 * or undefined when that cannot be told (the disk is new, or `from` is gone): then copy it whole.
 */
export async function changedRanges(
  store: Pick<Store, "resolvePoint" | "readDigests" | "absolute">,
  vm: string,
  from: string,
  to: ResolvedPoint,
  diskId: string,
  signal?: AbortSignal,
): Promise<Range[] | undefined> {
  const dTo = to.disks.find((d) => d.disk.diskId === diskId);
  if (!dTo) return undefined;
  let prev: ResolvedPoint;
  try {
    prev = await store.resolvePoint(vm, from, signal ? { signal } : {});
  } catch {
    return undefined; // retention removed it: nothing to compare with
  }
  const dFrom = prev.disks.find((d) => d.disk.diskId === diskId);
  if (!dFrom) return undefined;
  const depth = dTo.chain.indexOf(dFrom.chain[0]!);
  if (depth === 0) return [];
  if (depth > 0) {
    // Extents provided by the layers above the old top (depth 0 = the newest layer).
    const map = await qemuImg.map(dTo.top, { format: "qcow2", forceShare: true, ...(signal ? { signal } : {}) });
    return merge(map.filter((e) => e.depth < depth && (e.data || e.zero) && e.present !== false).map((e) => ({ offset: e.start, length: e.length })));
  }
  // The chains diverged (retention merged layers): compare the recorded block digests.
  const [a, b] = await Promise.all([store.readDigests(dFrom.disk.digestsFile), store.readDigests(dTo.disk.digestsFile)]);
  if (!a || !b) return undefined;
  const da = decodeDigests(a, dFrom.disk.digestsFile);
  const db = decodeDigests(b, dTo.disk.digestsFile);
  if (da.blockSize !== db.blockSize || da.virtualSize !== db.virtualSize) return undefined;
  const n = db.digests.length / 32;
  const out: Range[] = [];
  for (let i = 0; i < n; i++) {
    if (!db.digests.subarray(i * 32, i * 32 + 32).equals(da.digests.subarray(i * 32, i * 32 + 32))) {
      out.push({ offset: i * db.blockSize, length: Math.min(db.blockSize, db.virtualSize - i * db.blockSize) });
    }
  }
  return merge(out);
}
