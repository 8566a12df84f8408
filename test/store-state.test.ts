/**
 * KV chain records against a real nats-server: compare-and-set, rebuild from the store after the
 * bus lost its data, export / import as JSON lines.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "../adapters/nats/mod.ts";
import { chainsKv, createRetention, exportChains, importChains, openStore, rebuildChains, type ChainsKv, type Store } from "../adapters/store/mod.ts";
import { ChainConflictError, markCheckpointsReleased, type ChainRecord } from "../domain/chain/mod.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { SimVm } from "./store-fixtures.ts";

let server: NatsServer;
let nc: NatsConnection;
let tmp: string;
let store: Store;
const buckets: string[] = [];
const records: ChainRecord[] = [];

async function freshKv(): Promise<ChainsKv> {
  const name = `chains-test-${randomBytes(4).toString("hex")}`;
  buckets.push(name);
  return chainsKv(await new Kvm(nc).create(name, { history: 5 }));
}

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectNats({ servers: server.url, name: "store-state-test" });
  tmp = await mkdtemp(join(tmpdir(), "ferry-state-"));
  store = openStore({ root: join(tmp, "store") });
  await store.init();
  for (const [i, name] of ["web01", "db01"].entries()) {
    const vm = new SimVm(store, join(tmp), { id: `vm-${name}`, name }, i + 1);
    await vm.addDisk("d1", 1024 * 1024);
    await vm.backup(new Date("2025-01-01T02:00:00Z"));
    records.push(await vm.backup(new Date("2025-01-02T02:00:00Z")));
  }
});

afterAll(async () => {
  const kvm = new Kvm(nc);
  for (const b of buckets) await (await kvm.open(b)).destroy().catch(() => undefined);
  await nc?.close();
  await server?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe("store state", () => {
  it("kv-chains - create, then update only at the current revision", async () => {
    const kv = await freshKv();
    const r = records[0]!;
    const rev1 = await kv.createChain(r.vm.id, r);
    await expect(kv.createChain(r.vm.id, r)).rejects.toBeInstanceOf(ChainConflictError);
    const got = await kv.getChain(r.vm.id);
    expect(got).toEqual({ record: r, revision: rev1 });
    const changed = markCheckpointsReleased(r, [r.restorePoints[0]!.checkpointId!], new Date("2025-01-03T00:00:00Z"));
    const rev2 = await kv.updateChain(r.vm.id, changed, rev1);
    await expect(kv.updateChain(r.vm.id, r, rev1)).rejects.toMatchObject({ code: "CHAIN_CONFLICT" });
    expect((await kv.getChain(r.vm.id))?.revision).toBe(rev2);
    await expect(kv.createChain("vm-x", r)).rejects.toThrow(/cannot be stored under vm-x/);
  });

  it("kv-chains - change() retries a lost compare-and-set until both updates land", async () => {
    const kv = await freshKv();
    const r = records[0]!;
    await kv.createChain(r.vm.id, r);
    const ids = r.restorePoints.map((p) => p.checkpointId!);
    await Promise.all(ids.map((cp) => kv.change(r.vm, (cur) => markCheckpointsReleased(cur, [cp]))));
    const final = (await kv.read(r.vm.id))!;
    expect(final.restorePoints.every((p) => p.checkpointReleased)).toBe(true);
  });

  it("state - rebuild recreates every VM's record from the store; existing ones are kept unless forced", async () => {
    const kv = await freshKv();
    const first = await rebuildChains(store, kv);
    expect(first.counts).toMatchObject({ created: 2, failed: 0 });
    for (const r of records) expect((await kv.read(r.vm.id))?.restorePoints).toEqual(r.restorePoints);
    expect((await rebuildChains(store, kv)).counts).toMatchObject({ unchanged: 2 });
    const r = records[1]!;
    const cur = (await kv.getChain(r.vm.id))!;
    await kv.updateChain(r.vm.id, { ...r, restorePoints: r.restorePoints.slice(0, 1), nextSeq: r.nextSeq }, cur.revision);
    const differs = await rebuildChains(store, kv);
    expect(differs.items.find((i) => i.vm === "db01")).toMatchObject({ action: "differs" });
    const forced = await rebuildChains(store, kv, { force: true });
    expect(forced.items.find((i) => i.vm === "db01")).toMatchObject({ action: "updated" });
    expect((await kv.read(r.vm.id))?.restorePoints).toEqual(r.restorePoints);
  });

  it("state - export then import into an empty bucket restores the same records; a bad line imports nothing", async () => {
    const src = await freshKv();
    await rebuildChains(store, src);
    const dump = await exportChains(src);
    expect(dump.trim().split("\n")).toHaveLength(2);
    expect(JSON.parse(dump.split("\n")[0]!)).toMatchObject({ vmId: "vm-db01", record: { vm: { name: "db01" } } });
    const dst = await freshKv();
    const bad = `${dump}{"vmId":"vm-evil","record":{"format":1,"vm":{"id":"vm-evil","name":"../evil"}}}\n`;
    await expect(importChains(dst, bad)).rejects.toMatchObject({ code: "STATE_BAD_LINE" });
    expect(await dst.vmIds()).toEqual([]);
    const imported = await importChains(dst, dump);
    expect(imported.counts).toMatchObject({ created: 2 });
    for (const r of records) expect(await dst.read(r.vm.id)).toEqual(await src.read(r.vm.id));
    expect((await importChains(dst, dump)).counts).toMatchObject({ unchanged: 2 });
  });

  it("retention service - runs on the store, then the KV record follows it by compare-and-set", async () => {
    const kv = await freshKv();
    await rebuildChains(store, kv);
    const r = records[0]!;
    await kv.change(r.vm, (cur) => markCheckpointsReleased(cur, [r.restorePoints[1]!.checkpointId!]));
    const service = createRetention({ store, kv, timeZone: "UTC" });
    const out = await service.apply(r.vm, { keepLast: 1 }, new Date("2025-01-03T00:00:00Z"));
    expect(out.removed).toEqual([r.restorePoints[0]!.id]);
    const inKv = (await kv.read(r.vm.id))!;
    expect(inKv.restorePoints.map((p) => p.id)).toEqual([r.restorePoints[1]!.id]);
    expect(inKv.restorePoints[0]!.disks[0]!.layer).toBe(out.record.restorePoints[0]!.disks[0]!.layer);
    expect(inKv.restorePoints[0]!.disks[0]!.layer).toMatch(/\.full\.qcow2$/);
    expect(inKv.restorePoints[0]!.checkpointReleased).toBe(true);
    // Again: nothing to remove, KV unchanged.
    const again = await service.apply(r.vm, { keepLast: 1 }, new Date("2025-01-03T00:00:00Z"));
    expect(again.removed).toEqual([]);
  });
});
