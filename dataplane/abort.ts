/**
 * One internal AbortController per transfer: it follows the caller's signal and is also
 * aborted by the first failure, so every in-flight request stops at once.
 */
import { FerryError, PermanentError } from "../contracts/errors.ts";

export class TransferCancelledError extends PermanentError {
  constructor(cause?: unknown) {
    super("TRANSFER_CANCELLED", "the transfer was cancelled", {}, { cause });
  }
}

export function linkedAbort(parent?: AbortSignal): { controller: AbortController; dispose: () => void } {
  const controller = new AbortController();
  if (!parent) return { controller, dispose: () => {} };
  const onAbort = () => controller.abort(new TransferCancelledError(parent.reason));
  if (parent.aborted) onAbort();
  else parent.addEventListener("abort", onAbort, { once: true });
  return { controller, dispose: () => parent.removeEventListener("abort", onAbort) };
}

/** The error a failed transfer reports: a cancellation if the caller asked for one, else the first failure. */
export function abortReason(first: unknown, callerSignal?: AbortSignal): unknown {
  if (callerSignal?.aborted) return first instanceof TransferCancelledError ? first : new TransferCancelledError(callerSignal.reason);
  if (first instanceof FerryError || first instanceof Error) return first;
  return new Error(String(first));
}
