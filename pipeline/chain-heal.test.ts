import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chainsKv, openStore, writeManifestFile, type Store } from "../adapters/store/mod.ts";
import { memoryKv } from "../adapters/nats/testing/memory-kv.ts";
import { addRestorePoint, digestsPath, emptyChain, layerPath, type ChainRecord } from "../domain/chain/mod.ts";
import { healingChains } from "./chain-heal.ts";

const VM = { id: "vm-heal-1", name: "web01" };
let dir: string;
let store: Store;

function recordOf(vm: { id: string; name: string }, points: number): ChainRecord {
  let r = emptyChain(vm, new Date("2026-01-01T00:00:00Z"));
  let parent: string | undefined;
  for (let i = 0; i < points; i++) {
    const time = new Date(Date.UTC(2026, 0, 1 + i)).toISOString();
    const kind = parent ? "incremental" : "full";
    const layer = layerPath(vm.name, "d1", time, `cp${i}`, kind);
    r = addRestorePoint(r, {
      id: `rp${i}`, time, checkpointId: `cp${i}`,
      disks: [{ diskId: "d1", alias: "d1", virtualSize: 1 << 20, layer, ...(parent ? { parentLayer: parent } : {}), kind, size: 1, checksum: { algorithm: "sha256", blockSize: 4 << 20, value: "a".repeat(64) }, digestsFile: digestsPath(vm.name, `cp${i}`, "d1") }],
    }, new Date(time));
    parent = layer;
  }
  return r;
}

function logSpy() {
  const lines: { o: object; m?: string | undefined }[] = [];
  return { lines, info: (o: object, m?: string) => lines.push({ o, m }), warn: (o: object, m?: string) => lines.push({ o, m }) };
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-heal-"));
  store = openStore({ root: dir });
  await store.init();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("healingChains", () => {
  it("chain heal - a read of a VM KV lost is answered from the store's manifest, written to KV and logged once", async () => {
    await writeManifestFile(store.paths, recordOf(VM, 3));
    const kv = chainsKv(memoryKv());
    const log = logSpy();
    const chains = healingChains(kv, store, { log });
    const healed = await chains.read(VM.id);
    expect(healed?.restorePoints.map((p) => p.seq)).toEqual([1, 2, 3]);
    expect(healed?.nextSeq).toBe(4);
    expect((await kv.read(VM.id))?.restorePoints).toHaveLength(3);
    await chains.read(VM.id);
    expect(log.lines.filter((l) => l.m?.includes("rebuilt from the store"))).toHaveLength(1);
  });

  it("chain heal - change() heals first, so the update builds on the stored chain", async () => {
    await writeManifestFile(store.paths, recordOf(VM, 2));
    const kv = chainsKv(memoryKv());
    const chains = healingChains(kv, store);
    const seen: number[] = [];
    await chains.change(VM, (cur) => {
      seen.push(cur.restorePoints.length, cur.nextSeq);
      return cur;
    });
    expect(seen).toEqual([2, 3]);
  });

  it("chain heal - a VM the store does not know, or another VM's folder of the same name, is not healed", async () => {
    await writeManifestFile(store.paths, recordOf({ id: "someone-else", name: VM.name }, 1));
    const kv = chainsKv(memoryKv());
    const chains = healingChains(kv, store);
    expect(await chains.read(VM.id)).toBeUndefined();
    expect(await chains.read("never-backed-up")).toBeUndefined();
    // Nothing was written for either VM (nor for the folder's own VM, which nobody asked about).
    expect(await kv.vmIds()).toEqual([]);
  });
});
