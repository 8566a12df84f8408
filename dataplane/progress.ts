/** Transfer progress: bytes of data moved so far out of the data to move. */
export interface Progress {
  bytes: number;
  total: number;
}
export type ProgressCallback = (p: Progress) => void;

/**
 * Calls `cb` at most every `intervalMs` while bytes accumulate, and always once at the end, so
 * a fast transfer of many small pieces does not flood the caller (or the bus, via
 * transfer.progress events).
 */
export function throttledProgress(total: number, cb: ProgressCallback | undefined, intervalMs = 250) {
  let bytes = 0;
  let last = Number.NEGATIVE_INFINITY;
  return {
    add(n: number): void {
      bytes += n;
      if (!cb) return;
      const now = performance.now();
      if (now - last >= intervalMs) {
        last = now;
        cb({ bytes, total });
      }
    },
    finish(): void {
      cb?.({ bytes, total });
    },
    get bytes(): number {
      return bytes;
    },
  };
}
