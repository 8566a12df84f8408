import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { guestWrite, makeSource, MiB, qemuNbdPidsMentioning } from "../bench/lab-fixture.ts";
import transfer from "../cli/commands/transfer.ts";
import { digestBuffer, checksumHex, digestLocalImage } from "../dataplane/mod.ts";

/** ovirt-api.md A.1 longhand, over the raw guest view. */
function naiveChecksum(raw: Buffer, blockSize = 4 * MiB): string {
  const outer = createHash("sha256");
  for (let off = 0; off < raw.length; off += blockSize) {
    outer.update(createHash("sha256").update(raw.subarray(off, off + blockSize)).digest());
  }
  return outer.digest("hex");
}

let dir: string;
let base: string;
let top: string;
let rawTop: Buffer;
const SIZE = 64 * MiB + 12 * 1024; // a last block shorter than 4 MiB

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-dp-cks-"));
  const src = await makeSource(dir, 4 * MiB);
  base = join(dir, "base.qcow2");
  top = join(dir, "top.qcow2");
  await qemuImg.create({ path: base, format: "qcow2", size: SIZE });
  await guestWrite(base, [
    { op: "write", offset: 0, length: 3 * MiB },
    { op: "write", offset: 10 * MiB + 4096, length: 2 * MiB },
    { op: "write", offset: 40 * MiB, length: 4 * MiB },
    { op: "write", offset: 64 * MiB, length: 12 * 1024 },
  ], src);
  await qemuImg.create({ path: top, format: "qcow2", backing: { path: base, format: "qcow2" } });
  await guestWrite(top, [
    { op: "write", offset: 20 * MiB, length: 64 * 1024 },
    { op: "zero", offset: 40 * MiB + MiB, length: MiB },
  ], src);
  const rawFile = join(dir, "top.raw");
  await qemuImg.convert({ path: top, format: "qcow2" }, { path: rawFile, format: "raw" });
  rawTop = await readFile(rawFile);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function io() {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = "";
  let stderr = "";
  out.on("data", (d: Buffer) => (stdout += d.toString()));
  err.on("data", (d: Buffer) => (stderr += d.toString()));
  return {
    io: { stdout: out, stderr: err, env: {}, cwd: dir, signal: new AbortController().signal },
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
  };
}

describe("dataplane checksum", () => {
  it("digestLocalImage - equals a naive sha256 blkhash over the merged raw guest view of a qcow2 chain", async () => {
    expect(rawTop.length).toBe(SIZE);
    const d = await digestLocalImage({ image: top, format: "qcow2" });
    expect(d.virtualSize).toBe(SIZE);
    expect(d.checksum).toBe(naiveChecksum(rawTop));
    expect(d.digests.equals(digestBuffer(rawTop).digests)).toBe(true);
    expect(await qemuNbdPidsMentioning(dir)).toEqual([]);
  });

  it("digestLocalImage - a raw image and its format probe give the same checksum", async () => {
    const d = await digestLocalImage({ image: join(dir, "top.raw") });
    expect(d.checksum).toBe(checksumHex(digestBuffer(rawTop)));
  });

  it("digestLocalImage - works for an image on tmpfs", async () => {
    const shm = await mkdtemp(join("/dev/shm", "ferry-dp-cks-"));
    try {
      const raw = join(shm, "top.raw");
      await qemuImg.convert({ path: top, format: "qcow2" }, { path: raw, format: "raw" });
      const d = await digestLocalImage({ image: raw, format: "raw" });
      expect(d.checksum).toBe(naiveChecksum(rawTop));
      expect(await qemuNbdPidsMentioning(shm)).toEqual([]);
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  });

  it("ferry transfer checksum - prints imageio's exact JSON shape", async () => {
    const t = io();
    const code = await transfer.run(["checksum", "top.qcow2", "--format", "qcow2"], t.io);
    expect(t.stderr).toBe("");
    expect(code).toBe(0);
    expect(t.stdout).toBe(`{"algorithm": "sha256", "block_size": 4194304, "checksum": "${naiveChecksum(rawTop)}"}\n`);
  });

  it("ferry transfer checksum - a missing image is something needed that is missing: exit 3, naming the path", async () => {
    const t = io();
    const code = await transfer.run(["checksum", "nope.qcow2", "--format", "qcow2"], t.io);
    expect(code).toBe(3);
    expect(t.stderr).toBe("ferry transfer checksum: image nope.qcow2 does not exist\n");
    const u = io();
    expect(await transfer.run(["checksum", "a", "b"], u.io)).toBe(2);
    expect(await transfer.run(["checksum", "a", "--format", "vmdk"], u.io)).toBe(2);
  });
});
