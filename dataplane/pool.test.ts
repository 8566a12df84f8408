import { describe, expect, it } from "vitest";
import { runPool, runStagedPool } from "./pool.ts";
import { throttledProgress } from "./progress.ts";

const tick = (ms = 1) => new Promise((r) => setTimeout(r, ms));

describe("pool", () => {
  it("runStagedPool - never holds more buffers than allowed, and the first stage runs ahead of a slow second", async () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    const seen = new Set<Buffer>();
    let inSecond = 0;
    let maxInSecond = 0;
    const done: number[] = [];
    await runStagedPool(
      items,
      { workers: 2, buffers: 3, bufferSize: 16 },
      async (i, buf) => {
        seen.add(buf);
        buf.fill(i);
        await tick();
        return i;
      },
      async (i, buf, r) => {
        inSecond++;
        maxInSecond = Math.max(maxInSecond, inSecond);
        await tick(5);
        // Nobody wrote into this buffer while it was in the second stage.
        expect(buf.every((b) => b === r)).toBe(true);
        done.push(i);
        inSecond--;
      },
      new AbortController().signal,
      (err) => {
        throw err;
      },
    );
    expect(seen.size).toBe(3);
    expect(maxInSecond).toBeGreaterThan(1);
    expect(done.sort((a, b) => a - b)).toEqual(items);
  });

  it("runStagedPool - a failure stops new work and every started stage settles before it returns", async () => {
    const controller = new AbortController();
    const errors: unknown[] = [];
    let running = 0;
    let started = 0;
    await runStagedPool(
      Array.from({ length: 50 }, (_, i) => i),
      { workers: 3, buffers: 4, bufferSize: 8 },
      async (i) => {
        started++;
        await tick();
        if (i === 5) throw new Error("boom");
        return i;
      },
      async () => {
        running++;
        await tick(10);
        running--;
      },
      controller.signal,
      (err) => {
        errors.push(err);
        controller.abort(err);
      },
    );
    expect(running).toBe(0);
    expect(errors.map((e) => (e as Error).message)).toEqual(["boom"]);
    expect(started).toBeLessThan(50);
  });

  it("runPool - runs every item on at most n workers and reports the worker index", async () => {
    let active = 0;
    let maxActive = 0;
    const workers = new Set<number>();
    await runPool(
      Array.from({ length: 10 }, (_, i) => i),
      3,
      async (_i, _s, w) => {
        workers.add(w);
        active++;
        maxActive = Math.max(maxActive, active);
        await tick(2);
        active--;
      },
      new AbortController().signal,
      (err) => {
        throw err;
      },
    );
    expect(maxActive).toBe(3);
    expect([...workers].sort()).toEqual([0, 1, 2]);
  });

  it("progress - throttled while running, always reported at the end", async () => {
    const calls: number[] = [];
    const p = throttledProgress(100, (x) => calls.push(x.bytes), 10_000);
    for (let i = 0; i < 10; i++) p.add(10);
    expect(calls.length).toBe(1);
    p.finish();
    expect(calls.at(-1)).toBe(100);
    expect(p.bytes).toBe(100);
  });
});
