/**
 * Test helper: wait for something observable instead of sleeping and hoping.
 *
 *   await waitFor(() => c.inFlight === 6, { what: "6 reads in flight" });
 *   const conn = await waitFor(() => connect().catch(() => undefined), { what: "nbdkit to accept" });
 *
 * `cond` is polled (sync or async) every `intervalMs` until it returns a truthy value, which
 * `waitFor` resolves with. After `timeoutMs` it rejects with "timed out after N ms waiting for
 * <what>" (plus the last error `cond` threw, if any), so a test that never reaches the state fails
 * with a message that says which state it was waiting for.
 */
export interface WaitForOptions {
  /** Give up after this long. Default 10 s. */
  timeoutMs?: number;
  /** Poll interval. Default 20 ms. */
  intervalMs?: number;
  /** What is being waited for, for the failure message; a function is called at the timeout (for details). */
  what: string | (() => string);
}

export async function waitFor<T>(cond: () => T | Promise<T>, opts: WaitForOptions): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 20;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v as NonNullable<T>;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const what = typeof opts.what === "function" ? opts.what() : opts.what;
      const last = lastError === undefined ? "" : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
