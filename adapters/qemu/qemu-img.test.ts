import { execFileSync } from "node:child_process";
import { mkdtemp, open, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createQemuImg,
  QemuCheckUnsupportedError,
  QemuImageCorruptError,
  QemuImageLeaksError,
  QemuTimeoutError,
  QemuToolError,
  qemuImg,
} from "./mod.ts";
import { waitFor } from "../../test/harness/wait-for.ts";

const MiB = 1024 * 1024;
let dir: string;

function qemuIo(path: string, cmd: string, format = "qcow2") {
  execFileSync("qemu-io", ["-f", format, "-c", cmd, path], { stdio: "ignore" });
}

/** Set the 16-bit refcount of one cluster directly in the file (refcount block 0). */
async function setRefcount(path: string, cluster: number, value: number) {
  const fh = await open(path, "r+");
  try {
    const hdr = Buffer.alloc(72);
    await fh.read(hdr, 0, 72, 0);
    const clusterBits = hdr.readUInt32BE(20);
    const rtOffset = Number(hdr.readBigUInt64BE(48));
    const entry = Buffer.alloc(8);
    await fh.read(entry, 0, 8, rtOffset);
    const rbOffset = Number(entry.readBigUInt64BE(0));
    expect(cluster).toBeLessThan((1 << clusterBits) / 2);
    const v = Buffer.alloc(2);
    v.writeUInt16BE(value);
    await fh.write(v, 0, 2, rbOffset + cluster * 2);
  } finally {
    await fh.close();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-qemu-img-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("qemuImg", () => {
  it("qemuImg.create - makes qcow2 v3, qcow2 v2 and raw images of the asked size", async () => {
    const v3 = join(dir, "v3.qcow2");
    const v2 = join(dir, "v2.qcow2");
    const raw = join(dir, "d.raw");
    await qemuImg.create({ path: v3, format: "qcow2", size: 4 * MiB });
    await qemuImg.create({ path: v2, format: "qcow2", size: 2 * MiB, options: { compat: "0.10" } });
    await qemuImg.create({ path: raw, format: "raw", size: MiB });
    const i3 = await qemuImg.info(v3, { format: "qcow2" });
    expect(i3).toMatchObject({ format: "qcow2", virtualSize: 4 * MiB, compat: "1.1", bitmaps: [] });
    expect((await qemuImg.info(v2, { format: "qcow2" })).compat).toBe("0.10");
    expect(await qemuImg.info(raw, { format: "raw" })).toMatchObject({ format: "raw", virtualSize: MiB });
  });

  it("qemuImg.create - rejects a missing size without a backing file, nothing created", async () => {
    const p = join(dir, "nosize.qcow2");
    await expect(qemuImg.create({ path: p, format: "qcow2" })).rejects.toBeInstanceOf(QemuToolError);
    await expect(readFile(p)).rejects.toThrow();
  });

  it("qemuImg.info - reads a backing chain with --backing-chain and the explicit backing format", async () => {
    const base = join(dir, "chain-base.raw");
    const mid = join(dir, "chain-mid.qcow2");
    const top = join(dir, "chain-top.qcow2");
    await qemuImg.create({ path: base, format: "raw", size: 2 * MiB });
    await qemuImg.create({ path: mid, format: "qcow2", backing: { path: base, format: "raw" } });
    await qemuImg.create({ path: top, format: "qcow2", backing: { path: mid, format: "qcow2" } });
    const chain = await qemuImg.info(top, { format: "qcow2", backingChain: true });
    expect(chain.map((i) => i.format)).toEqual(["qcow2", "qcow2", "raw"]);
    expect(chain[0]?.backingFilename).toBe(mid);
    expect(chain[0]?.backingFormat).toBe("qcow2");
    expect(chain[1]?.backingFormat).toBe("raw");
    expect(chain[2]?.virtualSize).toBe(2 * MiB);
  });

  it("qemuImg.info - an untrusted image must be opened with an explicit format", async () => {
    await expect(qemuImg.info(join(dir, "v3.qcow2"), { untrusted: true })).rejects.toThrow(/explicit format/);
    const i = await qemuImg.info(join(dir, "v3.qcow2"), { untrusted: true, format: "qcow2" });
    expect(i.virtualSize).toBe(4 * MiB);
  });

  it("qemuImg.info - -U reads an image that qemu-io holds open for writing", async () => {
    const p = join(dir, "locked.qcow2");
    await qemuImg.create({ path: p, format: "qcow2", size: MiB });
    // An interactive qemu-io holds the image open with a write lock until it is killed. It opens
    // the image before it prints its first "qemu-io> " prompt, so the prompt means "locked".
    const { spawn } = await import("node:child_process");
    const holder = spawn("qemu-io", ["-f", "qcow2", p], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    holder.stdout.on("data", (d: Buffer) => (out += d.toString()));
    holder.stderr.on("data", (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => out.includes("qemu-io> "), { what: () => `qemu-io to open ${p} (output so far: ${JSON.stringify(out)})` });
      await expect(qemuImg.info(p, { format: "qcow2" })).rejects.toThrow(/lock/i);
      expect((await qemuImg.info(p, { format: "qcow2", forceShare: true })).virtualSize).toBe(MiB);
    } finally {
      holder.kill("SIGKILL");
    }
  });

  it("qemuImg.check - clean image passes and reports allocation", async () => {
    const p = join(dir, "clean.qcow2");
    await qemuImg.create({ path: p, format: "qcow2", size: 4 * MiB });
    qemuIo(p, "write -P 0x11 0 128k");
    const r = await qemuImg.check(p, { format: "qcow2" });
    expect(r).toMatchObject({ format: "qcow2", checkErrors: 0, corruptions: 0, leaks: 0, allocatedClusters: 2 });
  });

  it("qemuImg.check - exit 3 leaked clusters become QemuImageLeaksError, repair fixes them", async () => {
    const p = join(dir, "leaky.qcow2");
    await qemuImg.create({ path: p, format: "qcow2", size: 4 * MiB });
    await truncate(p, 41 * 65536);
    await setRefcount(p, 40, 1); // a cluster inside the file that nothing references
    const err = await qemuImg.check(p, { format: "qcow2" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QemuImageLeaksError);
    expect((err as QemuImageLeaksError).code).toBe("QEMU_IMAGE_LEAKS");
    expect((err as QemuImageLeaksError).result.leaks).toBe(1);
    await qemuImg.check(p, { format: "qcow2", repair: "leaks" });
    expect((await qemuImg.check(p, { format: "qcow2" })).leaks).toBe(0);
  });

  it("qemuImg.check - exit 2 corruption becomes QemuImageCorruptError", async () => {
    const p = join(dir, "corrupt.qcow2");
    await qemuImg.create({ path: p, format: "qcow2", size: 4 * MiB });
    await setRefcount(p, 0, 0); // the header cluster is in use but counted 0
    const err = await qemuImg.check(p, { format: "qcow2" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QemuImageCorruptError);
    expect((err as QemuImageCorruptError).code).toBe("QEMU_IMAGE_CORRUPT");
    expect((err as QemuImageCorruptError).result.corruptions).toBeGreaterThan(0);
  });

  it("qemuImg.check - a raw image has no check (exit 63)", async () => {
    await expect(qemuImg.check(join(dir, "d.raw"), { format: "raw" })).rejects.toBeInstanceOf(QemuCheckUnsupportedError);
  });

  it("qemuImg.compare - identical, different with offset, error on a missing file", async () => {
    const a = join(dir, "cmp-a.qcow2");
    const b = join(dir, "cmp-b.raw");
    await qemuImg.create({ path: a, format: "qcow2", size: 2 * MiB });
    await qemuImg.create({ path: b, format: "raw", size: 2 * MiB });
    qemuIo(a, "write -P 0x5a 1M 64k");
    qemuIo(b, "write -P 0x5a 1M 64k", "raw");
    const same = await qemuImg.compare(a, b, { formatA: "qcow2", formatB: "raw" });
    expect(same).toMatchObject({ identical: true });
    expect(same.detail).toMatch(/identical/);
    qemuIo(b, "write -P 0x01 1572864 512", "raw");
    const diff = await qemuImg.compare(a, b, { formatA: "qcow2", formatB: "raw" });
    expect(diff).toMatchObject({ identical: false, offset: 1572864 });
    await expect(qemuImg.compare(a, join(dir, "missing.raw"), { formatA: "qcow2", formatB: "raw" })).rejects.toBeInstanceOf(
      QemuToolError,
    );
  });

  it("qemuImg.measure - sizes for a new image and for an existing one", async () => {
    const m = await qemuImg.measure({ outputFormat: "qcow2", size: 64 * MiB });
    expect(m.fullyAllocated).toBeGreaterThan(64 * MiB);
    expect(m.required).toBeLessThan(MiB);
    const e = await qemuImg.measure({ outputFormat: "qcow2", image: { path: join(dir, "clean.qcow2"), format: "qcow2" } });
    expect(e.required).toBeGreaterThanOrEqual(128 * 1024);
  });

  it("qemuImg.bitmap - add, writes dirty it, merge from another image, disable, clear, remove", async () => {
    const p = join(dir, "bm.qcow2");
    const o = join(dir, "bm-overlay.qcow2");
    await qemuImg.create({ path: p, format: "qcow2", size: 4 * MiB });
    await qemuImg.bitmap(p, { op: "add", name: "cp1" });
    await qemuImg.bitmap(p, { op: "add", name: "cp0", granularity: 128 * 1024, disabled: true });
    let info = await qemuImg.info(p, { format: "qcow2" });
    expect(info.bitmaps.map((b) => [b.name, b.granularity, b.flags.includes("auto")])).toEqual([
      ["cp1", 65536, true],
      ["cp0", 131072, false],
    ]);
    await qemuImg.create({ path: o, format: "qcow2", backing: { path: p, format: "qcow2" } });
    await qemuImg.bitmap(o, { op: "add", name: "cp1" });
    await qemuImg.bitmap(p, { op: "merge", name: "cp1", source: "cp1", sourceImage: { path: o, format: "qcow2" } });
    await qemuImg.bitmap(p, { op: "enable", name: "cp0" });
    await qemuImg.bitmap(p, { op: "disable", name: "cp1" });
    info = await qemuImg.info(p, { format: "qcow2" });
    expect(info.bitmaps.find((b) => b.name === "cp1")?.flags).not.toContain("auto");
    expect(info.bitmaps.find((b) => b.name === "cp0")?.flags).toContain("auto");
    await qemuImg.bitmap(p, { op: "clear", name: "cp1" });
    await qemuImg.bitmap(p, { op: "remove", name: "cp1" });
    expect((await qemuImg.info(p, { format: "qcow2" })).bitmaps.map((b) => b.name)).toEqual(["cp0"]);
    await expect(qemuImg.bitmap(p, { op: "remove", name: "nope" })).rejects.toBeInstanceOf(QemuToolError);
    await expect(qemuImg.bitmap(p, { op: "merge", name: "cp0" })).rejects.toThrow(/source/);
  });

  it("qemuImg.commit/rebase/convert/map - overlay data reaches the base and the chain flattens", async () => {
    const base = join(dir, "c-base.qcow2");
    const top = join(dir, "c-top.qcow2");
    await qemuImg.create({ path: base, format: "qcow2", size: 4 * MiB });
    qemuIo(base, "write -P 0x01 0 64k");
    await qemuImg.create({ path: top, format: "qcow2", backing: { path: base, format: "qcow2" } });
    qemuIo(top, "write -P 0x02 1M 64k");
    const map = await qemuImg.map(top, { format: "qcow2" });
    expect(map.filter((e) => e.data).map((e) => [e.start, e.length, e.depth])).toEqual([
      [0, 65536, 1],
      [MiB, 65536, 0],
    ]);
    const flat = join(dir, "c-flat.raw");
    await qemuImg.convert({ path: top, format: "qcow2" }, { path: flat, format: "raw" });
    await qemuImg.commit(top, { format: "qcow2" });
    expect((await qemuImg.compare(base, flat, { formatA: "qcow2", formatB: "raw" })).identical).toBe(true);
    // Unsafe rebase onto nothing: top no longer has a backing file.
    await qemuImg.rebase(top, { format: "qcow2", backing: null, unsafe: true });
    expect((await qemuImg.info(top, { format: "qcow2" })).backingFilename).toBeUndefined();
    // Safe rebase of a fresh overlay onto another base copies the differences.
    const other = join(dir, "c-other.qcow2");
    await qemuImg.create({ path: other, format: "qcow2", size: 4 * MiB });
    const o2 = join(dir, "c-o2.qcow2");
    await qemuImg.create({ path: o2, format: "qcow2", backing: { path: base, format: "qcow2" } });
    await qemuImg.rebase(o2, { format: "qcow2", backing: { path: other, format: "qcow2" } });
    expect((await qemuImg.compare(o2, flat, { formatA: "qcow2", formatB: "raw" })).identical).toBe(true);
  });

  it("qemuImg.convert - onProgress adds -p and reports qemu-img's percentages, rising to 100", async () => {
    const src = join(dir, "p-src.qcow2");
    await qemuImg.create({ path: src, format: "qcow2", size: 8 * MiB });
    qemuIo(src, "write -P 0x05 0 4M");
    const seen: number[] = [];
    await qemuImg.convert({ path: src, format: "qcow2" }, { path: join(dir, "p-out.raw"), format: "raw" }, { onProgress: (p) => seen.push(p) });
    expect(seen.length).toBeGreaterThan(1);
    expect(seen.at(-1)).toBe(100);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
  });

  it("qemuImg.amend - upgrades qcow2 v2 to v3 so it can hold bitmaps", async () => {
    const p = join(dir, "amend.qcow2");
    await qemuImg.create({ path: p, format: "qcow2", size: MiB, options: { compat: "0.10" } });
    await expect(qemuImg.bitmap(p, { op: "add", name: "x" })).rejects.toThrow(/v2|compat|bitmap/i);
    await qemuImg.amend(p, { format: "qcow2", options: { compat: "1.1" } });
    await qemuImg.bitmap(p, { op: "add", name: "x" });
    expect((await qemuImg.info(p, { format: "qcow2" })).compat).toBe("1.1");
  });

  it("createQemuImg - untrusted limits: a run past the timeout ends with QemuTimeoutError", async () => {
    // A fake qemu-img that hangs stands in for an image that makes qemu spin.
    const fake = join(dir, "hang-qemu-img.sh");
    await writeFile(fake, "#!/bin/sh\nexec sleep 30\n", { mode: 0o755 });
    const slow = createQemuImg({ binary: fake, untrustedLimits: { timeoutMs: 300, cpuSeconds: 5, addressSpaceBytes: 512 * MiB } });
    const t0 = Date.now();
    await expect(slow.info(join(dir, "v3.qcow2"), { format: "qcow2", untrusted: true })).rejects.toBeInstanceOf(QemuTimeoutError);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("createQemuImg - untrusted limits: the address-space cap is applied through prlimit", async () => {
    const tiny = createQemuImg({ untrustedLimits: { timeoutMs: 10_000, addressSpaceBytes: 16 * MiB } });
    await expect(tiny.info(join(dir, "v3.qcow2"), { format: "qcow2", untrusted: true })).rejects.toBeInstanceOf(QemuToolError);
    const roomy = createQemuImg({ untrustedLimits: { timeoutMs: 10_000, addressSpaceBytes: 1024 * MiB } });
    expect((await roomy.info(join(dir, "v3.qcow2"), { format: "qcow2", untrusted: true })).virtualSize).toBe(4 * MiB);
  });

  it("qemuImg - an aborted signal stops the call", async () => {
    const ac = new AbortController();
    ac.abort(new Error("stop now"));
    await expect(qemuImg.info(join(dir, "v3.qcow2"), { format: "qcow2", signal: ac.signal })).rejects.toThrow("stop now");
  });
});
