/**
 * The retry policy for one imageio range: a few attempts with exponential backoff for transient
 * failures (5xx, reset, premature close, timeout). Never for a PermanentError (403, 400, 416,
 * protocol errors), and never once the signal has fired.
 */
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { sleep } from "../ovirt/sleep.ts";

export interface RetryPolicy {
  /** Total attempts, including the first. Default 4. */
  readonly attempts?: number;
  /** First backoff; doubles each time, ±50 % jitter. Default 200 ms. */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  readonly signal?: AbortSignal | undefined;
  /** Called before each new attempt (for logging by the caller; adapters do not log). */
  readonly onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

export function isRetryable(err: unknown): boolean {
  return err instanceof TransientError && !(err instanceof PermanentError);
}

export async function withRetry<T>(fn: (attempt: number) => Promise<T>, p: RetryPolicy = {}): Promise<T> {
  const attempts = Math.max(1, p.attempts ?? 4);
  const base = p.baseDelayMs ?? 200;
  const max = p.maxDelayMs ?? 5_000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= attempts || !isRetryable(err) || p.signal?.aborted) throw err;
      const delay = Math.round(Math.min(max, base * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2));
      p.onRetry?.(err, attempt, delay);
      await sleep(delay, p.signal);
    }
  }
}
