/**
 * Ferry's own state is recoverable (issue 4 item 8): the store is self-describing, so the KV
 * chain records can be rebuilt from the manifests after the bus lost its data; and the records
 * can be dumped and loaded as JSON lines (`{"vmId": ..., "revision": ..., "record": {...}}`).
 */
import { isDeepStrictEqual } from "node:util";
import { parseChainRecord, type ChainRecord } from "../../domain/chain/mod.ts";
import { StoreError } from "./errors.ts";
import type { ChainsKv } from "./kv-chains.ts";
import type { Store } from "./store.ts";

export type StateAction = "created" | "updated" | "unchanged" | "differs" | "failed";

export interface StateItem {
  vm: string;
  vmId?: string;
  action: StateAction;
  detail?: string;
}

export interface StateReport {
  items: StateItem[];
  counts: Record<StateAction, number>;
}

function report(items: StateItem[]): StateReport {
  const counts: Record<StateAction, number> = { created: 0, updated: 0, unchanged: 0, differs: 0, failed: 0 };
  for (const i of items) counts[i.action]++;
  return { items, counts };
}

/** What KV should hold for a manifest: no write-ahead intent, no incoming points. */
function kvShape(r: ChainRecord): ChainRecord {
  const { pending: _p, incoming: _i, ...body } = r;
  return body;
}

/** Comparable content (updatedAt changes on every write and does not matter here). */
function sameContent(a: ChainRecord, b: ChainRecord): boolean {
  const strip = (r: ChainRecord) => ({ ...kvShape(r), updatedAt: "" });
  return isDeepStrictEqual(JSON.parse(JSON.stringify(strip(a))), JSON.parse(JSON.stringify(strip(b))));
}

/** Write one record to KV per the mode; never throws for one bad VM (it becomes 'failed'). */
async function apply(kv: ChainsKv, record: ChainRecord, force: boolean): Promise<StateItem> {
  const item: StateItem = { vm: record.vm.name, vmId: record.vm.id, action: "failed" };
  try {
    const cur = await kv.getChain(record.vm.id);
    if (!cur) {
      await kv.createChain(record.vm.id, kvShape(record));
      item.action = "created";
    } else if (sameContent(cur.record, record)) {
      item.action = "unchanged";
    } else if (force) {
      await kv.updateChain(record.vm.id, kvShape(record), cur.revision);
      item.action = "updated";
    } else {
      item.action = "differs";
      item.detail = `KV has ${cur.record.restorePoints.length} restore points, the source ${record.restorePoints.length}; use --force to overwrite`;
    }
  } catch (err) {
    item.action = "failed";
    item.detail = (err as Error).message;
  }
  return item;
}

/**
 * Recreate KV records from the store's manifests. A retention run a crash left pending is
 * finished first (the store is the truth for files). Existing KV records are left alone unless
 * `force`; then they are replaced (compare-and-set against the revision just read).
 */
export async function rebuildChains(store: Store, kv: ChainsKv, o: { force?: boolean; vms?: string[]; signal?: AbortSignal } = {}): Promise<StateReport> {
  const items: StateItem[] = [];
  for (const vm of o.vms ?? (await store.listVms())) {
    o.signal?.throwIfAborted();
    let record: ChainRecord | undefined;
    try {
      record = await store.replayPending(vm, o.signal ? { signal: o.signal } : {});
      if (!record) throw new StoreError("STORE_VM_NOT_FOUND", `the store has no restore points for VM ${vm}`);
    } catch (err) {
      items.push({ vm, action: "failed", detail: (err as Error).message });
      continue;
    }
    items.push(await apply(kv, record, o.force ?? false));
  }
  return report(items);
}

/** Every KV chain record as one JSON line each (sorted by VM name). */
export async function exportChains(kv: ChainsKv): Promise<string> {
  const lines: { name: string; line: string }[] = [];
  for (const vmId of await kv.vmIds()) {
    const cur = await kv.getChain(vmId);
    if (cur) lines.push({ name: cur.record.vm.name, line: JSON.stringify({ vmId, revision: cur.revision, record: cur.record }) });
  }
  return lines.sort((a, b) => a.name.localeCompare(b.name)).map((l) => `${l.line}\n`).join("");
}

/**
 * Load JSON lines written by exportChains (or one bare chain record per line). Every line is
 * validated before anything is written: one bad line → StoreError naming it, nothing changed.
 */
export async function importChains(kv: ChainsKv, text: string, o: { force?: boolean } = {}): Promise<StateReport> {
  const records: ChainRecord[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new StoreError("STATE_BAD_LINE", `line ${i + 1} is not JSON; nothing was imported`, { line: i + 1 });
    }
    const wrapped = value !== null && typeof value === "object" && "record" in value;
    const body = wrapped ? (value as { record: unknown }).record : value;
    let record: ChainRecord;
    try {
      record = parseChainRecord(body, `line ${i + 1}`);
    } catch (err) {
      throw new StoreError("STATE_BAD_LINE", `${(err as Error).message}; nothing was imported`, { line: i + 1 });
    }
    const vmId = wrapped ? (value as { vmId?: unknown }).vmId : undefined;
    if (vmId !== undefined && vmId !== record.vm.id) {
      throw new StoreError("STATE_BAD_LINE", `line ${i + 1}: vmId ${String(vmId)} does not match the record's VM ${record.vm.id}; nothing was imported`, { line: i + 1 });
    }
    if (records.some((r) => r.vm.id === record.vm.id)) {
      throw new StoreError("STATE_BAD_LINE", `line ${i + 1}: VM ${record.vm.id} appears twice; nothing was imported`, { line: i + 1 });
    }
    records.push(record);
  }
  const items: StateItem[] = [];
  for (const r of records) items.push(await apply(kv, r, o.force ?? false));
  return report(items);
}
