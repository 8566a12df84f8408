import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createStorePort } from "./store-port.ts";

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "ferry-store-port-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function plant(rel: string): Promise<void> {
  await mkdir(dirname(join(root, rel)), { recursive: true });
  await writeFile(join(root, rel), "x");
}

async function tree(): Promise<string[]> {
  return (await readdir(root, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(root.length + 1)).sort();
}

describe("createStorePort", () => {
  it("layer target - a new layer first removes the temp files dead runs left in its VM folder, however fresh; layers, OVFs, digests, unknown files and other VMs' temp files stay", async () => {
    const kept = [
      "web01/d1/20260101T000000Z.cp1.full.qcow2",
      "web01/ovf/cp1.ovf",
      "web01/blockhashes/cp1.d1",
      "web01/notes.txt",
      "web02/d9/.20260102T000000Z.cp2.full.qcow2.part-0abc",
    ];
    const dead = [
      "web01/d1/.20260102T000000Z.cp2.incremental.qcow2.part-0abc",
      "web01/d2/.tmp-5b1c",
      "web01/.tmp-1234",
      "web01/blockhashes/cp2.d1.tmp-77-k2",
    ];
    for (const f of [...kept, ...dead]) await plant(f);
    const port = createStorePort(root);
    const t = await port.layerTarget({ vmName: "web01", diskId: "d1", time: "2026-01-03T00:00:00.000Z", key: "cp3", mode: "incremental" });
    expect(t.relPath).toBe("web01/d1/20260103T000000Z.cp3.incremental.qcow2");
    expect(await tree()).toEqual([...kept].sort());
  });

  it("layer target - the first layer of a VM (no folder yet) gets its folder", async () => {
    const port = createStorePort(root);
    const t = await port.layerTarget({ vmName: "web03", diskId: "d1", time: "2026-01-03T00:00:00.000Z", key: "cp1", mode: "full" });
    expect(t.finalPath).toBe(join(root, "web03/d1/20260103T000000Z.cp1.full.qcow2"));
    expect(await readdir(join(root, "web03"))).toEqual(["d1"]);
  });
});
