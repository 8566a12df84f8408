/**
 * What every phase wait shares: options, default deadlines, the monotonic clock, which poll
 * failures do not end a wait, and best-effort cleanup calls.
 */
import { TransientError } from "../../contracts/errors.ts";
import type { EngineClient } from "./client.ts";
import { EngineConflictError } from "./errors.ts";
import { sleep } from "./sleep.ts";

export interface WaitOptions {
  /** Give up after this long (each wait has its own default). */
  readonly timeoutMs?: number | undefined;
  /** Poll interval; default `engine.pollIntervalMs` (1 s). */
  readonly intervalMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

export const WAIT_DEFAULTS = {
  transferReadyMs: 60_000,
  transferFinishedMs: 300_000,
  backupReadyMs: 600_000,
  backupFinishedMs: 600_000,
  diskOkMs: 600_000,
  snapshotMs: 600_000,
  checkpointGoneMs: 300_000,
  vmStatusMs: 600_000,
} as const;

/** Cleanup calls run after the caller's signal may have fired, so they get their own short budget. */
export const CLEANUP_TIMEOUT_MS = 30_000;

export function clock(engine: EngineClient, o: WaitOptions, defaultTimeoutMs: number) {
  const deadline = performance.now() + (o.timeoutMs ?? defaultTimeoutMs);
  const interval = o.intervalMs ?? engine.pollIntervalMs;
  return {
    expired: () => performance.now() >= deadline,
    pause: () => sleep(Math.min(interval, Math.max(0, deadline - performance.now())), o.signal),
  };
}

/** A poll failure that should not end the wait. */
export function isPollHiccup(err: unknown): boolean {
  return err instanceof TransientError && !(err instanceof EngineConflictError);
}

export async function bestEffort(fn: (signal: AbortSignal) => Promise<unknown>): Promise<void> {
  try {
    await fn(AbortSignal.timeout(CLEANUP_TIMEOUT_MS));
  } catch {
    // Cleanup must not hide the failure that made it necessary.
  }
}


/**
 * Poll `get` (which returns the entity's current state) until the entity is gone (404). Any state
 * means "still there", so there is nothing to switch on; poll hiccups are tolerated, and a timeout
 * throws `timeout(lastState, lastError)`.
 */
export async function pollUntilGone(
  t: ReturnType<typeof clock>,
  initialState: string,
  get: () => Promise<string>,
  timeout: (state: string, cause: unknown) => Error,
  isGone: (err: unknown) => boolean,
): Promise<void> {
  let state = initialState;
  let lastError: unknown;
  for (;;) {
    try {
      state = await get();
    } catch (err) {
      if (isGone(err)) return;
      if (!isPollHiccup(err)) throw err;
      lastError = err;
    }
    if (t.expired()) throw timeout(state, lastError);
    await t.pause();
  }
}
