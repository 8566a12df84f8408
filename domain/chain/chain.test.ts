import { describe, expect, it } from "vitest";
import {
  addIncomingDisk,
  addRestorePoint,
  chainRecordJsonSchema,
  compactTime,
  diskChains,
  emptyChain,
  findPoint,
  layerChain,
  layerPath,
  digestsPath,
  markCheckpointsReleased,
  numberedPoints,
  parseChainJson,
  parseChainRecord,
  pointDependencies,
  summarizeChain,
  syncFromStore,
  tipLayer,
  type ChainRecord,
  type DiskLayer,
  type LayerKind,
} from "./mod.ts";

const VM = { id: "vm-1", name: "web01" };
const HEX = "a".repeat(64);

function disk(diskId: string, time: string, key: string, kind: LayerKind, parentLayer?: string): DiskLayer {
  return {
    diskId,
    alias: `${diskId}-alias`,
    virtualSize: 1 << 20,
    layer: layerPath(VM.name, diskId, time, key, kind),
    ...(parentLayer ? { parentLayer } : {}),
    kind,
    size: 4096,
    checksum: { algorithm: "sha256", blockSize: 4 << 20, value: HEX },
    digestsFile: digestsPath(VM.name, key, diskId),
  };
}

/** Three points: full(d1), incremental(d1), incremental(d1) + new full disk d2; then incremental both. */
function sample(): ChainRecord {
  let r = emptyChain(VM, new Date("2025-01-01T00:00:00Z"));
  const t = ["2025-01-01T02:00:00Z", "2025-01-02T02:00:00Z", "2025-01-03T02:00:00Z", "2025-01-04T02:00:00Z"];
  const a1 = disk("d1", t[0]!, "c1", "full");
  r = addRestorePoint(r, { id: "rp1", time: t[0]!, checkpointId: "c1", reason: "first backup", disks: [a1] });
  const a2 = disk("d1", t[1]!, "c2", "incremental", a1.layer);
  r = addRestorePoint(r, { id: "rp2", time: t[1]!, checkpointId: "c2", parentId: "rp1", disks: [a2] });
  const a3 = disk("d1", t[2]!, "c3", "incremental", a2.layer);
  const b3 = { ...disk("d2", t[2]!, "c3", "full"), reason: "new disk" };
  r = addRestorePoint(r, { id: "rp3", time: t[2]!, checkpointId: "c3", parentId: "rp2", disks: [a3, b3] });
  const a4 = disk("d1", t[3]!, "c4", "incremental", a3.layer);
  const b4 = disk("d2", t[3]!, "c4", "incremental", b3.layer);
  return addRestorePoint(r, { id: "rp4", time: t[3]!, checkpointId: "c4", parentId: "rp3", disks: [a4, b4] });
}

describe("chain", () => {
  it("addRestorePoint - assigns monotonic seq and derives the kind from the disks", () => {
    const r = sample();
    expect(r.restorePoints.map((p) => [p.id, p.seq, p.kind])).toEqual([
      ["rp1", 1, "full"],
      ["rp2", 2, "incremental"],
      ["rp3", 3, "incremental"],
      ["rp4", 4, "incremental"],
    ]);
    expect(r.nextSeq).toBe(5);
    expect(r.restorePoints[2]!.disks[1]!.reason).toBe("new disk");
  });

  it("addRestorePoint - rejects a parent layer that is missing or not the newest layer of the disk", () => {
    const r = sample();
    const orphan = disk("d1", "2025-01-05T02:00:00Z", "c5", "incremental", "web01/d1/20250101T000000Z.cX.full.qcow2");
    expect(() => addRestorePoint(r, { id: "rp5", time: "2025-01-05T02:00:00Z", disks: [orphan] })).toThrow(/newest recorded layer of disk d1/);
    const branch = disk("d1", "2025-01-05T02:00:00Z", "c5", "incremental", r.restorePoints[1]!.disks[0]!.layer);
    expect(() => addRestorePoint(r, { id: "rp5", time: "2025-01-05T02:00:00Z", disks: [branch] })).toThrow(/CHAIN|newest/);
    const wrongKind = disk("d1", "2025-01-05T02:00:00Z", "c5", "full");
    expect(() => addRestorePoint(r, { id: "rp5", kind: "incremental", time: "2025-01-05T02:00:00Z", disks: [wrongKind] })).toThrow(/declared incremental/);
  });

  it("addRestorePoint - adding the same point again is a no-op; other layers under the same id are refused", () => {
    const r = sample();
    const p4 = r.restorePoints[3]!;
    expect(addRestorePoint(r, { ...p4 })).toBe(r);
    const other = { ...p4, disks: [{ ...p4.disks[0]!, checksum: { ...p4.disks[0]!.checksum, value: "b".repeat(64) } }, p4.disks[1]!] };
    expect(() => addRestorePoint(r, other)).toThrow(/already recorded/);
  });

  it("layerChain - per-disk dependencies: a new disk's full layer needs nothing older", () => {
    const r = sample();
    expect(layerChain(r, "rp4", "d1").map((l) => l.layer)).toEqual([
      "web01/d1/20250104T020000Z.c4.incremental.qcow2",
      "web01/d1/20250103T020000Z.c3.incremental.qcow2",
      "web01/d1/20250102T020000Z.c2.incremental.qcow2",
      "web01/d1/20250101T020000Z.c1.full.qcow2",
    ]);
    expect(layerChain(r, "rp4", "d2").map((l) => l.layer)).toEqual([
      "web01/d2/20250104T020000Z.c4.incremental.qcow2",
      "web01/d2/20250103T020000Z.c3.full.qcow2",
    ]);
    expect([...pointDependencies(r, "rp4")].sort()).toEqual(["rp1", "rp2", "rp3", "rp4"]);
    expect([...pointDependencies(r, "rp1")]).toEqual(["rp1"]);
    const chains = diskChains(r);
    expect(chains.get("d1")!.map((c) => c.map((x) => x.pointId))).toEqual([["rp1", "rp2", "rp3", "rp4"]]);
    expect(chains.get("d2")!.map((c) => c.map((x) => x.pointId))).toEqual([["rp3", "rp4"]]);
    expect(tipLayer(r, "d2")!.layer).toBe("web01/d2/20250104T020000Z.c4.incremental.qcow2");
  });

  it("findPoint - friendly numbers start at 1 for the oldest; 'latest', ids and checkpoint ids work too", () => {
    const r = sample();
    expect(numberedPoints(r).map((n) => [n.number, n.point.id])).toEqual([[1, "rp1"], [2, "rp2"], [3, "rp3"], [4, "rp4"]]);
    expect(findPoint(r, 1).point.id).toBe("rp1");
    expect(findPoint(r, "3").point.id).toBe("rp3");
    expect(findPoint(r, "latest").point.id).toBe("rp4");
    expect(findPoint(r, "c2").number).toBe(2);
    expect(() => findPoint(r, 9)).toThrow(/no restore point 9 \(restore points: 1-4\)/);
  });

  it("parseChainRecord - round-trips a record through JSON", () => {
    const r = sample();
    expect(parseChainJson(JSON.stringify(r))).toEqual(r);
  });

  it("parseChainRecord - rejects hostile paths and broken references with a clear error", () => {
    const r = sample();
    const withLayer = (mut: (d: DiskLayer) => DiskLayer) => ({
      ...r,
      restorePoints: r.restorePoints.map((p, i) => (i === 1 ? { ...p, disks: p.disks.map(mut) } : p)),
    });
    expect(() => parseChainRecord(withLayer((d) => ({ ...d, layer: "/etc/passwd" })))).toThrow(/not a valid chain record/);
    expect(() => parseChainRecord(withLayer((d) => ({ ...d, layer: "web01/../../etc/x.full.qcow2" })))).toThrow(/not a valid chain record/);
    expect(() => parseChainRecord(withLayer((d) => ({ ...d, layer: "other/d1/20250102T020000Z.c2.incremental.qcow2" })))).toThrow(/not a layer file under web01\/d1/);
    expect(() => parseChainRecord(withLayer((d) => ({ ...d, parentLayer: "web01/d1/20240101T000000Z.zz.full.qcow2" })))).toThrow(/is not a layer of an earlier restore point/);
    expect(() => parseChainRecord(withLayer((d) => ({ ...d, digestsFile: "web01/ovf/c2.d1" })))).toThrow(/digests file/);
    expect(() => parseChainRecord({ ...r, vm: { id: "x", name: "../x" } })).toThrow(/not a valid chain record/);
    expect(() => parseChainRecord({ ...r, nextSeq: 2 })).toThrow(/nextSeq/);
    expect(() => parseChainJson("{nope")).toThrow(/not valid JSON/);
  });

  it("addIncomingDisk - a point completes when its last disk arrives, idempotently", () => {
    let r = emptyChain(VM);
    const meta = { id: "rp1", time: "2025-01-01T02:00:00Z", checkpointId: "c1", diskCount: 2 };
    const d1 = disk("d1", meta.time, "c1", "full");
    const d2 = disk("d2", meta.time, "c1", "full");
    let out = addIncomingDisk(r, { ...meta, disk: d1 });
    expect(out.completed).toBeUndefined();
    out = addIncomingDisk(out.record, { ...meta, disk: d1 });
    expect(out.record.incoming?.[0]?.disks).toHaveLength(1);
    out = addIncomingDisk(out.record, { ...meta, disk: d2 });
    expect(out.completed?.id).toBe("rp1");
    expect(out.record.incoming).toBeUndefined();
    r = out.record;
    expect(addIncomingDisk(r, { ...meta, disk: d2 }).record).toBe(r);
  });

  it("summarizeChain - what the backup decision needs", () => {
    const r = markCheckpointsReleased(sample(), ["c1"]);
    expect(summarizeChain(r)).toEqual({
      last: { id: "rp4", time: "2025-01-04T02:00:00Z", checkpointId: "c4" },
      lastFullTime: "2025-01-01T02:00:00Z",
      incrementalsSinceFull: 3,
      ownCheckpoints: ["c2", "c3", "c4"],
    });
    expect(summarizeChain(undefined)).toEqual({ incrementalsSinceFull: 0, ownCheckpoints: [] });
  });

  it("compactTime - no ':' so qemu never reads a backing name as a protocol", () => {
    expect(compactTime("2025-01-31T02:00:00.123Z")).toBe("20250131T020000Z");
    expect(compactTime("2025-01-31T03:00:00+01:00")).toBe("20250131T020000Z");
    expect(() => layerPath("../x", "d1", "2025-01-31T02:00:00Z", "c1", "full")).toThrow(/VM name "..\/x" is not allowed/);
    expect(() => layerPath("web01", "d/1", "2025-01-31T02:00:00Z", "c1", "full")).toThrow(/disk id/);
  });

  it("syncFromStore - the store's points win; KV keeps its flags, newer points and incoming disks", () => {
    const full = sample();
    // The store dropped rp1 and rp2 (retention); KV still has them, plus a released flag on rp3.
    const storeRec = { ...full, restorePoints: full.restorePoints.slice(2).map((p, i) => (i === 0 ? { ...p, parentId: undefined, kind: "full" as const, disks: p.disks.map((d) => (d.diskId === "d1" ? { ...d, kind: "full" as const, parentLayer: undefined, layer: d.layer.replace("incremental", "full") } : d)) } : p)) };
    storeRec.restorePoints[1] = { ...storeRec.restorePoints[1]!, disks: storeRec.restorePoints[1]!.disks.map((d) => (d.diskId === "d1" ? { ...d, parentLayer: storeRec.restorePoints[0]!.disks[0]!.layer } : d)) };
    for (const p of storeRec.restorePoints) for (const d of p.disks) if (d.parentLayer === undefined) delete (d as { parentLayer?: string }).parentLayer;
    delete storeRec.restorePoints[0]!.parentId;
    const kv = markCheckpointsReleased(full, ["c3"]);
    const synced = syncFromStore(kv, parseChainRecord(storeRec));
    expect(synced.restorePoints.map((p) => p.id)).toEqual(["rp3", "rp4"]);
    expect(synced.restorePoints[0]!.checkpointReleased).toBe(true);
    // KV is a point ahead of the store, built on the store's tip: kept.
    const d1 = disk("d1", "2025-01-05T02:00:00Z", "c5", "incremental", synced.restorePoints[1]!.disks[0]!.layer);
    const d2 = disk("d2", "2025-01-05T02:00:00Z", "c5", "incremental", synced.restorePoints[1]!.disks[1]!.layer);
    const ahead = addRestorePoint(synced, { id: "rp5", time: "2025-01-05T02:00:00Z", disks: [d1, d2] });
    expect(syncFromStore(ahead, parseChainRecord(storeRec)).restorePoints.map((p) => p.id)).toEqual(["rp3", "rp4", "rp5"]);
    // Built on a layer the store renamed: dropped rather than recorded inconsistently.
    const stale = addRestorePoint(kv, { id: "rp5", time: "2025-01-05T02:00:00Z", disks: [disk("d1", "2025-01-05T02:00:00Z", "c5", "incremental", kv.restorePoints[3]!.disks[0]!.layer)] });
    const storeRenamed = parseChainRecord({ ...storeRec, restorePoints: storeRec.restorePoints.slice(0, 1) });
    expect(syncFromStore(stale, storeRenamed).restorePoints.map((p) => p.id)).toEqual(["rp3"]);
  });

  it("chainRecordJsonSchema - the record's JSON Schema is generated from the zod schema", () => {
    const js = chainRecordJsonSchema() as { properties: Record<string, unknown>; required: string[] };
    expect(Object.keys(js.properties)).toEqual(expect.arrayContaining(["format", "vm", "nextSeq", "restorePoints", "pending"]));
    expect(js.required).toEqual(expect.arrayContaining(["format", "vm", "restorePoints"]));
  });
});
