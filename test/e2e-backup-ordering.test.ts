/**
 * disk-transferred writes the store before KV: the handler over the real store (qemu-img layers)
 * and the real KV bucket on a real nats-server. A restore point must never be in KV without being
 * in the store; a crash between the store write and the KV commit is healed by the redelivery.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../adapters/nats/mod.ts";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { chainsKv, openChainsKv, openStore, writeManifestFile, type ChainsKv, type Store } from "../adapters/store/mod.ts";
import { emptyChain, layerPath, type ChainRecord } from "../domain/chain/mod.ts";
import { createDiskTransferredHandler, type ManifestWriter } from "../functions/disk-transferred/handler.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { Kvm } from "@nats-io/kv";

const MiB = 1048576;
const TIME = "2025-01-31T02:00:00Z";
let nats: NatsServer;
let nc: NatsConnection;
let dir: string;
let store: Store;
let kv: ChainsKv;
let vmSeq = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-order-"));
  nats = await startNatsServer();
  nc = await connectNats({ servers: nats.url, name: "ferry-order" });
  kv = await openChainsKv(nc, { create: true });
  store = openStore({ root: join(dir, "store") });
  await store.init();
});

afterAll(async () => {
  await nc?.close().catch(() => undefined);
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A VM whose full backup of `disks` disks is on the store volume (files only, nothing recorded). */
async function placedBackup(disks: number, o: { vm?: { id: string; name: string }; key?: string; time?: string } = {}) {
  const n = ++vmSeq;
  const vm = o.vm ?? { id: `vm-order-${n}`, name: `order${n}` };
  const key = o.key ?? "cp1";
  const time = o.time ?? TIME;
  const events = [];
  for (let i = 1; i <= disks; i++) {
    const diskId = `d${i}`;
    const rel = layerPath(vm.name, diskId, time, key, "full");
    await store.layerTarget({ vmName: vm.name, diskId, time, key, mode: "full" });
    await qemuImg.create({ path: store.absolute(rel), format: "qcow2", size: MiB });
    const digestsFile = await store.saveDigests(vm.name, key, diskId, new Uint8Array(32));
    events.push({
      id: `b-${n}:${diskId}:disk.transferred`, time: "2025-01-31T02:05:00Z", correlationId: `run-${n}`, runId: `run-${n}`, backupId: `b-${n}`,
      vm, disk: { id: diskId, alias: `${vm.name}_${diskId}`, virtualSize: MiB }, diskCount: disks,
      restorePoint: `rp-${time.replace(/[-:]/g, "")}`, mode: "full" as const, reason: "first backup",
      layer: { path: rel, size: 4096 }, checksum: { algorithm: "sha256" as const, blockSize: 4 * MiB, value: "ab".repeat(32) },
      checkpointId: key, takenAt: time, digestsFile, transfer: { bytes: 4096, seconds: 0.01 },
    });
  }
  await store.saveOvf(vm.name, key, "<ovf/>");
  return { vm, events };
}

/** A handler whose bus connection drops right after the manifest write (its KV commit fails for real). */
async function dyingAfterStoreWrite(onStoreWrite?: () => Promise<void>) {
  const doomed = await connectNats({ servers: nats.url, name: "ferry-order-doomed" });
  const doomedKv = chainsKv(await new Kvm(doomed).open("ferry-chains"));
  return handler({
    chains: doomedKv,
    store: {
      async writeManifest(r) {
        await onStoreWrite?.();
        const written = await store.writeManifest(r);
        await doomed.close();
        return written;
      },
    },
  });
}

function handler(o: { chains?: ChainsKv; store?: ManifestWriter } = {}) {
  return createDiskTransferredHandler({
    chains: o.chains ?? kv,
    store: o.store ?? store,
    clock: () => new Date("2025-01-31T02:06:00Z"),
    leases: { releaseRun: async () => undefined },
    log: { error() {} },
  });
}

const ids = (r: ChainRecord | undefined) => r?.restorePoints.map((p) => p.id) ?? [];

describe("disk-transferred ordering (real store, real KV)", () => {
  it("disk-transferred ordering - a crash after the store write is healed on redelivery: the store's point is brought into KV once", async () => {
    const { vm, events } = await placedBackup(2);
    // The first worker loses its bus connection right after the manifest is written: its KV commit
    // fails for real (connection closed), like a worker that died between the two writes.
    let kvAtStoreWrite: string[] | undefined;
    const first = await dyingAfterStoreWrite(async () => void (kvAtStoreWrite = ids(await kv.read(vm.id))));
    expect(await first(events[0]!)).toEqual([]);
    await expect(first(events[1]!)).rejects.toThrow();
    expect(kvAtStoreWrite).toEqual([]);
    expect(ids(await store.readManifest(vm.name))).toEqual(["rp-20250131T020000Z"]);
    const kvBetween = await kv.read(vm.id);
    expect(ids(kvBetween)).toEqual([]);
    expect(kvBetween?.incoming?.map((p) => p.disks.map((d) => d.diskId))).toEqual([["d1"]]);

    // The redelivery on a healthy worker: finds the point in the store and brings KV in line.
    const second = handler();
    const out = await second(events[1]!);
    expect(out.map((o) => o.event.id)).toEqual([`${vm.id}:rp-20250131T020000Z:chain.updated`]);
    const kvAfter = await kv.read(vm.id);
    const stored = await store.readManifest(vm.name);
    expect(ids(kvAfter)).toEqual(["rp-20250131T020000Z"]);
    expect(kvAfter?.incoming).toBeUndefined();
    expect(kvAfter?.restorePoints[0]!.seq).toBe(stored?.restorePoints[0]!.seq);
    expect(kvAfter?.restorePoints[0]!.disks.map((d) => d.layer).sort()).toEqual(stored?.restorePoints[0]!.disks.map((d) => d.layer).sort());
    // A further redelivery of either disk changes nothing and re-announces the same id.
    expect((await second(events[0]!)).map((o) => o.event.id)).toEqual(out.map((o) => o.event.id));
    expect(ids(await kv.read(vm.id))).toEqual(["rp-20250131T020000Z"]);
    expect(ids(await store.readManifest(vm.name))).toEqual(["rp-20250131T020000Z"]);
  });

  it("disk-transferred ordering - a store that refuses the point leaves KV without it, and the redelivery after the fix records it", async () => {
    const { vm, events } = await placedBackup(1);
    await writeManifestFile(store.paths, emptyChain({ id: "another-vm", name: vm.name }));
    const handle = handler();
    await expect(handle(events[0]!)).rejects.toMatchObject({ code: "STORE_VM_MISMATCH" });
    expect(ids(await kv.read(vm.id))).toEqual([]);
    await rm(store.absolute(`${vm.name}/restore-points.json`));
    expect(await handle(events[0]!)).toHaveLength(1);
    expect(ids(await kv.read(vm.id))).toEqual(["rp-20250131T020000Z"]);
    expect(ids(await store.readManifest(vm.name))).toEqual(["rp-20250131T020000Z"]);
  });

  it("disk-transferred ordering - a point whose KV commit was lost for good fails the next point once, then KV follows the store", async () => {
    const a = await placedBackup(1);
    await expect((await dyingAfterStoreWrite())(a.events[0]!)).rejects.toThrow();
    expect(ids(await store.readManifest(a.vm.name))).toEqual(["rp-20250131T020000Z"]);
    expect(ids(await kv.read(a.vm.id))).toEqual([]);
    // No redelivery (it was the last one). The next backup's point collides with the store's.
    const b = await placedBackup(1, { vm: a.vm, key: "cp2", time: "2025-02-01T02:00:00Z" });
    const handle = handler();
    await expect(handle(b.events[0]!)).rejects.toMatchObject({ code: "STORE_POINT_NOT_RECORDED" });
    expect(ids(await kv.read(a.vm.id))).toEqual(["rp-20250131T020000Z"]);
    expect(ids(await store.readManifest(a.vm.name))).toEqual(["rp-20250131T020000Z"]);
    // The backup after that records normally, in both.
    const c = await placedBackup(1, { vm: a.vm, key: "cp3", time: "2025-02-02T02:00:00Z" });
    expect(await handle(c.events[0]!)).toHaveLength(1);
    expect(ids(await kv.read(a.vm.id))).toEqual(["rp-20250131T020000Z", "rp-20250202T020000Z"]);
    expect(ids(await store.readManifest(a.vm.name))).toEqual(["rp-20250131T020000Z", "rp-20250202T020000Z"]);
  });

  it("disk-transferred ordering - disks arriving at once and a KV change during the store write end in one point in both", async () => {
    const { vm, events } = await placedBackup(3);
    // Someone else changes the record while the manifest is written (compare-and-set must hold).
    const busy: ManifestWriter = {
      async writeManifest(r) {
        await kv.change(vm, (cur) => ({ ...cur, updatedAt: new Date().toISOString() }));
        return store.writeManifest(r);
      },
    };
    const handle = handler({ store: busy });
    const outs = (await Promise.all(events.map((e) => handle(e)))).flat();
    expect(outs.map((o) => o.event.id)).toEqual([`${vm.id}:rp-20250131T020000Z:chain.updated`]);
    const kvAfter = await kv.read(vm.id);
    expect(ids(kvAfter)).toEqual(["rp-20250131T020000Z"]);
    expect(kvAfter?.restorePoints[0]!.disks.map((d) => d.diskId).sort()).toEqual(["d1", "d2", "d3"]);
    expect(kvAfter?.incoming).toBeUndefined();
    expect(ids(await store.readManifest(vm.name))).toEqual(["rp-20250131T020000Z"]);
  });
});
