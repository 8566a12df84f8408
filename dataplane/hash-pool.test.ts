import { createHash, randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { DigestsError } from "./blkhash.ts";
import type { HashJob } from "./hash-job.ts";
import { inlineHasher, startHashPool } from "./hash-pool.ts";
import { sharedBuffer } from "./pool.ts";

const MiB = 1024 * 1024;
const pool = startHashPool(2);
afterAll(() => pool.close());

/** A 8 MiB window at guest offset 64 MiB: block 16 is data | zeroes | data, block 17 zeroes then data. */
function window() {
  const base = 64 * MiB;
  const memory = sharedBuffer(8 * MiB);
  const guest = Buffer.alloc(8 * MiB);
  const put = (at: number, n: number) => {
    const d = randomBytes(n);
    d.copy(memory, at);
    d.copy(guest, at);
  };
  put(0, MiB);
  put(3 * MiB, MiB);
  put(6 * MiB + 64 * 1024, 2 * MiB - 64 * 1024);
  // Garbage where the job says "zero": the hasher must not read it.
  memory.fill(0xee, MiB, 3 * MiB);
  memory.fill(0xee, 4 * MiB, 6 * MiB + 64 * 1024);
  const job: HashJob = {
    base,
    blocks: [
      { index: 16, length: 4 * MiB, parts: [base, MiB, 1, base + MiB, 2 * MiB, 0, base + 3 * MiB, MiB, 1] },
      { index: 17, length: 4 * MiB, parts: [base + 4 * MiB, 2 * MiB + 64 * 1024, 0, base + 6 * MiB + 64 * 1024, 2 * MiB - 64 * 1024, 1] },
    ],
  };
  const expected = Buffer.concat([0, 1].map((b) => createHash("sha256").update(guest.subarray(b * 4 * MiB, (b + 1) * 4 * MiB)).digest()));
  return { job, memory, expected };
}

describe("hash pool", () => {
  it("hashes a job on a thread exactly as sha256 of the guest bytes, zero parts from zeroes (not the buffer)", async () => {
    const { job, memory, expected } = window();
    expect((await pool.hash(job, memory)).equals(expected)).toBe(true);
    expect((await inlineHasher().hash(job, memory)).equals(expected)).toBe(true);
  });

  it("runs jobs in parallel across threads, each answered with its own digests", async () => {
    const windows = Array.from({ length: 6 }, window);
    const out = await Promise.all(windows.map((w) => pool.hash(w.job, w.memory)));
    out.forEach((d, i) => expect(d.equals(windows[i]!.expected)).toBe(true));
  });

  it("a job whose parts do not fill the block fails with the hasher's typed error", async () => {
    const memory = sharedBuffer(MiB);
    const job: HashJob = { base: 0, blocks: [{ index: 0, length: 4 * MiB, parts: [0, MiB, 1] }] };
    const err = await pool.hash(job, memory).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestsError);
    expect((err as DigestsError).code).toBe("BLKHASH_SHORT_BLOCK");
  });

  it("after close, jobs are refused", async () => {
    const p = startHashPool(1);
    await p.close();
    const { job, memory } = window();
    await expect(p.hash(job, memory)).rejects.toMatchObject({ code: "HASH_POOL_CLOSED" });
  });
});
