import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  BLOCK_SIZE,
  BlockHasher,
  DigestBuilder,
  checksumHex,
  checksumResult,
  decodeDigests,
  deriveDigests,
  digestBuffer,
  encodeDigests,
  formatChecksumJson,
  readDigestsFile,
  writeDigestsFile,
  zeroDigest,
  zeroDigests,
} from "./blkhash.ts";

const MiB = 1024 * 1024;

/** The algorithm of ovirt-api.md A.1 written out longhand, independent of the module. */
function naiveChecksum(image: Buffer, blockSize = BLOCK_SIZE): string {
  const outer = createHash("sha256");
  for (let off = 0; off < image.length; off += blockSize) {
    outer.update(createHash("sha256").update(image.subarray(off, off + blockSize)).digest());
  }
  return outer.digest("hex");
}

function sparseImage(size: number, runs: [offset: number, length: number][]): Buffer {
  const img = Buffer.alloc(size);
  for (const [o, l] of runs) randomBytes(l).copy(img, o);
  return img;
}

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("blkhash", () => {
  it("blkhash - digestBuffer equals the naive computation, last block shorter", () => {
    const img = sparseImage(9 * MiB + 12345, [[100, 5000], [4 * MiB - 10, 20], [9 * MiB, 12345]]);
    const d = digestBuffer(img);
    expect(d.digests.length).toBe(3 * 32);
    expect(checksumHex(d)).toBe(naiveChecksum(img));
  });

  it("blkhash - zero digests match hashing real zeroes for full and partial blocks", () => {
    const size = 2 * BLOCK_SIZE + 8192;
    const z = zeroDigests(size);
    expect(checksumHex(z)).toBe(naiveChecksum(Buffer.alloc(size)));
    expect(zeroDigest(8192).equals(createHash("sha256").update(Buffer.alloc(8192)).digest())).toBe(true);
  });

  it("blkhash - another block size works like imageio's block_size parameter", () => {
    const img = sparseImage(3 * MiB, [[0, 1000], [2 * MiB + 5, 300]]);
    expect(checksumHex(digestBuffer(img, MiB))).toBe(naiveChecksum(img, MiB));
    expect(() => digestBuffer(img, 1000)).toThrow(/multiple of 4096/);
  });

  it("blkhash - BlockHasher from parts equals hashing the whole block", () => {
    const block = sparseImage(BLOCK_SIZE, [[MiB, 1000], [3 * MiB, MiB]]);
    const h = new BlockHasher(BLOCK_SIZE);
    h.zeros(MiB);
    h.update(block.subarray(MiB, MiB + 1000));
    h.zeros(2 * MiB - 1000);
    h.update(block.subarray(3 * MiB));
    expect(h.digest().equals(createHash("sha256").update(block).digest())).toBe(true);
    const short = new BlockHasher(BLOCK_SIZE);
    short.zeros(10);
    expect(() => short.digest()).toThrow(/expected/);
  });

  it("blkhash - builder refuses to finish with a block missing", () => {
    const b = new DigestBuilder(3 * BLOCK_SIZE);
    b.setZero(0);
    b.setZero(2);
    expect(() => b.finish()).toThrow(/1 block digests missing \(first: 1\)/);
    b.setZero(1);
    expect(checksumHex(b.finish())).toBe(naiveChecksum(Buffer.alloc(3 * BLOCK_SIZE)));
  });

  it("blkhash - incremental derivation re-hashes only changed blocks and equals a full recompute", () => {
    const size = 5 * BLOCK_SIZE + 4096;
    const v1 = sparseImage(size, [[0, MiB], [2 * BLOCK_SIZE, 3 * MiB]]);
    const d1 = digestBuffer(v1);
    const v2 = Buffer.from(v1);
    randomBytes(4096).copy(v2, BLOCK_SIZE + 17);
    v2.fill(0, 2 * BLOCK_SIZE, 2 * BLOCK_SIZE + 3 * MiB);
    randomBytes(4096).copy(v2, 5 * BLOCK_SIZE);
    const changed = [1, 2, 5].map((i) => [i, digestBuffer(v2.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)).digests] as [number, Buffer]);
    const d2 = deriveDigests(d1, changed);
    expect(checksumHex(d2)).toBe(naiveChecksum(v2));
    expect(checksumHex(d2)).not.toBe(checksumHex(d1));
  });

  it("blkhash - a grown disk cannot reuse the old partial last block", () => {
    const small = sparseImage(BLOCK_SIZE + 8192, [[BLOCK_SIZE, 8192]]);
    const d1 = digestBuffer(small);
    const grown = Buffer.concat([small, Buffer.alloc(BLOCK_SIZE)]);
    const b = new DigestBuilder(grown.length, BLOCK_SIZE, d1);
    expect(b.canReuse(0)).toBe(true);
    expect(b.canReuse(1)).toBe(false);
    expect(b.canReuse(2)).toBe(false);
    expect(() => deriveDigests(d1, [], grown.length)).toThrow(/changed length/);
    const d2 = deriveDigests(d1, [1, 2].map((i) => [i, digestBuffer(grown).digests.subarray(i * 32, i * 32 + 32)] as [number, Buffer]), grown.length);
    expect(checksumHex(d2)).toBe(naiveChecksum(grown));
  });

  it("blkhash - checksum JSON has imageio's exact shape", () => {
    const r = checksumResult(zeroDigests(BLOCK_SIZE));
    const text = formatChecksumJson(r);
    expect(text).toBe(`{"algorithm": "sha256", "block_size": 4194304, "checksum": "${naiveChecksum(Buffer.alloc(BLOCK_SIZE))}"}`);
    expect(JSON.parse(text)).toEqual(r);
  });

  it("blkhash - file round trip, mode 0600, corruption detected", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ferry-blkhash-"));
    dirs.push(dir);
    const d = digestBuffer(sparseImage(3 * BLOCK_SIZE + 512, [[7, 9000]]));
    const file = join(dir, "ck1.disk1");
    await writeDigestsFile(file, d);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const back = await readDigestsFile(file);
    expect(back).toEqual(d);
    const raw = await readFile(file);
    raw[40] = raw[40]! ^ 1;
    await writeFile(file, raw);
    await expect(readDigestsFile(file)).rejects.toThrow(/integrity check failed/);
    await writeFile(file, raw.subarray(0, 30));
    await expect(readDigestsFile(file)).rejects.toThrow(/not a Ferry block digest file/);
    expect(() => decodeDigests(encodeDigests(d).subarray(0, 60))).toThrow(/BLKHASH|integrity|not a Ferry/);
  });
});

describe("blkhash zero prefixes", () => {
  it("BlockHasher - leading zero runs from saved states give the same digest as hashing them", () => {
    const block = Buffer.alloc(BLOCK_SIZE);
    randomBytes(3 * 65536).copy(block, 17 * 65536);
    const expected = createHash("sha256").update(block).digest();
    for (let round = 0; round < 2; round++) {
      const h = new BlockHasher(BLOCK_SIZE);
      h.zeros(17 * 65536);
      h.update(block.subarray(17 * 65536, 20 * 65536));
      h.zeros(BLOCK_SIZE - 20 * 65536);
      expect(h.digest().equals(expected)).toBe(true);
    }
    // Not a multiple of the step, and a whole zero block: the plain path.
    const odd = new BlockHasher(5000);
    odd.zeros(4000);
    odd.update(Buffer.alloc(1000));
    expect(odd.digest().equals(createHash("sha256").update(Buffer.alloc(5000)).digest())).toBe(true);
    const whole = new BlockHasher(BLOCK_SIZE);
    whole.zeros(BLOCK_SIZE);
    expect(whole.digest().equals(zeroDigest(BLOCK_SIZE))).toBe(true);
  });
});
