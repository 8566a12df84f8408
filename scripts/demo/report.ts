/**
 * What the demo prints: numbered steps with their duration, indented details, and a timeout on
 * every step so the demo can fail but never hang.
 */
import type { Writable } from "node:stream";

export class StepFailed extends Error {
  readonly step: string;
  readonly hint?: string | undefined;
  constructor(
    step: string,
    message: string,
    hint?: string,
  ) {
    super(message);
    this.step = step;
    this.hint = hint;
  }
}

export interface Reporter {
  /** Run one step: prints its title, fails it after `timeoutMs` (aborting its signal). */
  step<T>(title: string, timeoutMs: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T>;
  /** A detail line under the current step. */
  line(text?: string): void;
  /** A block (command output) indented under the current step. */
  block(text: string): void;
  /** A heading without a timer (the summary, hand-driving instructions). */
  heading(text: string): void;
  readonly timings: ReadonlyArray<{ title: string; ms: number }>;
}

export function createReporter(out: Writable, stop: AbortSignal): Reporter {
  let n = 0;
  const timings: Array<{ title: string; ms: number }> = [];
  const write = (s: string) => out.write(s);
  return {
    timings,
    line(text = "") {
      write(text ? `      ${text}\n` : "\n");
    },
    block(text) {
      for (const l of text.replace(/\s+$/, "").split("\n")) write(`      | ${l}\n`);
    },
    heading(text) {
      write(`\n== ${text}\n`);
    },
    async step(title, timeoutMs, fn) {
      n += 1;
      write(`\n[${n}] ${title}\n`);
      const started = performance.now();
      const ac = new AbortController();
      const onStop = () => ac.abort(new StepFailed(title, "interrupted"));
      stop.addEventListener("abort", onStop, { once: true });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const err = new StepFailed(title, `timed out after ${Math.round(timeoutMs / 1000)} s`);
          ac.abort(err);
          reject(err);
        }, timeoutMs);
      });
      const aborted = new Promise<never>((_, reject) => {
        ac.signal.addEventListener("abort", () => reject(ac.signal.reason), { once: true });
      });
      try {
        const value = await Promise.race([fn(ac.signal), timeout, aborted]);
        const ms = performance.now() - started;
        timings.push({ title, ms });
        write(`      ✓ ${seconds(ms)}\n`);
        return value;
      } catch (err) {
        if (err instanceof StepFailed) throw err;
        throw new StepFailed(title, err instanceof Error ? err.message : String(err));
      } finally {
        clearTimeout(timer);
        stop.removeEventListener("abort", onStop);
      }
    },
  };
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

export function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(bytes < 10 * 1048576 ? 1 : 0)} MiB`;
}
