/**
 * Runs work items on a fixed number of workers. The first failure aborts the shared signal so
 * the other workers stop pulling (and their in-flight requests are cancelled by whoever listens
 * to that signal); the pool settles only when every worker has returned, so callers can clean
 * up knowing nothing is still writing.
 */
export async function runPool<T>(
  items: readonly T[],
  workers: number,
  work: (item: T, signal: AbortSignal, worker: number) => Promise<void>,
  signal: AbortSignal,
  onFailure: (err: unknown) => void,
): Promise<void> {
  let next = 0;
  const worker = async (_: unknown, index: number) => {
    while (!signal.aborted) {
      const i = next++;
      if (i >= items.length) return;
      try {
        await work(items[i]!, signal, index);
      } catch (err) {
        onFailure(err);
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(workers, items.length)) }, worker));
}

/**
 * A transfer buffer over a SharedArrayBuffer: a hashing thread (hash-pool.ts) reads it in place
 * while this thread sends the same bytes, with no copy and no transfer of ownership.
 */
export function sharedBuffer(size: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(size));
}

/**
 * Runs items through two stages over a fixed set of reusable buffers. `workers` run the first
 * stage (a GET, or a local read) into a free buffer, hand the buffer to the second stage (the
 * local write and hashing, or the PUT) and go on with the next item at once, so the first stage
 * never waits for the second. A buffer returns to the pool when its second stage ends: memory is
 * `buffers × bufferSize`, whatever the speed of either side. Settles only when every stage has.
 */
export async function runStagedPool<T, R>(
  items: readonly T[],
  o: { workers: number; buffers: number; bufferSize: number },
  first: (item: T, buffer: Buffer) => Promise<R>,
  second: (item: T, buffer: Buffer, r: R) => Promise<void>,
  signal: AbortSignal,
  onFailure: (err: unknown) => void,
): Promise<void> {
  // Allocated up front, all of them: memory is known before the first byte moves and never grows.
  const free: Buffer[] = Array.from({ length: Math.max(1, o.buffers) }, () => sharedBuffer(o.bufferSize));
  const waiters: ((b: Buffer) => void)[] = [];
  const acquire = (): Promise<Buffer> => {
    const b = free.pop();
    if (b) return Promise.resolve(b);
    return new Promise((resolve) => waiters.push(resolve));
  };
  const release = (b: Buffer) => {
    const w = waiters.shift();
    if (w) w(b);
    else free.push(b);
  };
  const seconds = new Set<Promise<void>>();
  let next = 0;
  const worker = async () => {
    while (!signal.aborted) {
      const i = next++;
      if (i >= items.length) return;
      const item = items[i]!;
      const buffer = await acquire();
      let r: R;
      try {
        if (signal.aborted) {
          release(buffer);
          return;
        }
        r = await first(item, buffer);
      } catch (err) {
        release(buffer);
        onFailure(err);
        return;
      }
      const p = second(item, buffer, r)
        .catch(onFailure)
        .finally(() => {
          release(buffer);
          seconds.delete(p);
        });
      seconds.add(p);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.workers, items.length)) }, worker));
  while (seconds.size) await Promise.all([...seconds]);
}
