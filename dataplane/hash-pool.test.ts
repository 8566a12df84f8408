import { createHash, randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { DigestsError } from "./blkhash.ts";
import type { HashJob } from "./hash-job.ts";
import { hasherFor, hashThreadsRunning, inlineHasher, sharedHashPool, startHashPool } from "./hash-pool.ts";
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

  it("transfers in one process share one pool: one set of threads however many transfers, ended with the last user", async () => {
    const before = hashThreadsRunning();
    const users = Array.from({ length: 4 }, () => sharedHashPool(1));
    expect(hashThreadsRunning() - before).toBe(1);
    const windows = users.map(() => window());
    const out = await Promise.all(users.map((u, i) => u.hash(windows[i]!.job, windows[i]!.memory)));
    out.forEach((d, i) => expect(d.equals(windows[i]!.expected)).toBe(true));
    await users[0]!.close();
    await expect(users[0]!.hash(windows[0]!.job, windows[0]!.memory)).rejects.toMatchObject({ code: "HASH_POOL_CLOSED" });
    // The others still hash on the same thread.
    expect((await users[1]!.hash(windows[1]!.job, windows[1]!.memory)).equals(windows[1]!.expected)).toBe(true);
    for (const u of users.slice(1)) await u.close();
    await expect.poll(() => hashThreadsRunning()).toBe(before);
    // A big transfer with the default thread count uses the shared pool; a given count gets its own.
    const a = hasherFor(64, 4 * MiB);
    const b = hasherFor(64, 4 * MiB);
    const started = hashThreadsRunning() - before;
    const own = hasherFor(64, 4 * MiB, 1);
    expect(hashThreadsRunning() - before).toBe(started + 1);
    await Promise.all([a.close(), b.close(), own.close()]);
    await expect.poll(() => hashThreadsRunning()).toBe(before);
  });
});
