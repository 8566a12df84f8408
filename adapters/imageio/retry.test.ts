import { describe, expect, it } from "vitest";
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { withRetry } from "./retry.ts";

describe("imageio retry", () => {
  it("imageio retry - transient errors are retried up to the attempt limit", async () => {
    let n = 0;
    const delays: number[] = [];
    const err = await withRetry(
      async () => {
        n++;
        throw new TransientError("X", "flaky");
      },
      { attempts: 3, baseDelayMs: 4, onRetry: (_e, _a, d) => delays.push(d) },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect(n).toBe(3);
    expect(delays).toHaveLength(2);
    expect(delays[1]!).toBeGreaterThanOrEqual(4);
  });

  it("imageio retry - permanent and unknown errors are not retried", async () => {
    for (const e of [new PermanentError("P", "403"), new Error("plain")]) {
      let n = 0;
      await expect(withRetry(async () => (n++, Promise.reject(e)), { baseDelayMs: 1 })).rejects.toBe(e);
      expect(n).toBe(1);
    }
  });

  it("imageio retry - the result of a later attempt is returned", async () => {
    const v = await withRetry(async (a) => {
      if (a < 2) throw new TransientError("X", "once");
      return a;
    }, { baseDelayMs: 1 });
    expect(v).toBe(2);
  });

  it("imageio retry - an abort during backoff rejects with the reason", async () => {
    const ac = new AbortController();
    const reason = new Error("stop");
    const p = withRetry(
      async () => {
        setTimeout(() => ac.abort(reason), 5);
        throw new TransientError("X", "flaky");
      },
      { baseDelayMs: 5_000, signal: ac.signal },
    );
    await expect(p).rejects.toBe(reason);
  });
});
