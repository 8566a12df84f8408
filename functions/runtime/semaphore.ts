/** Counting semaphore: bounds how many messages one process handles at once. Release in `finally`. */
export class Semaphore {
  #free: number;
  readonly #waiters: Array<() => void> = [];

  readonly size: number;
  constructor(size: number) {
    this.size = size;
    if (!Number.isInteger(size) || size < 1) throw new Error("semaphore size must be an integer >= 1");
    this.#free = size;
  }

  get inUse(): number {
    return this.size - this.#free;
  }

  /** Resolves with a release function once a slot is free; rejects if `signal` aborts first. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve(this.#releaser());
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiters.indexOf(grant);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal?.reason);
      };
      const grant = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve(this.#releaser());
      };
      this.#waiters.push(grant);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return; // a double release must not create a slot
      released = true;
      const next = this.#waiters.shift();
      if (next) next();
      else this.#free++;
    };
  }
}
