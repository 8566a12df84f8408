/**
 * Waiting for a child process to say it is ready: its output is collected until `match` finds
 * what it waits for, the child exits, the time runs out or the demo is aborted. One place for the
 * listeners and their removal (the console, nats-server and `ferry run all` steps all wait this way).
 */
import type { ChildProcess } from "node:child_process";

export interface WaitForOutput<T> {
  readonly stream: "stdout" | "stderr";
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  /** What the output so far says, or undefined while it says nothing yet. */
  match(text: string): T | undefined;
  timedOut(text: string): Error;
  exited(code: number | null, signal: NodeJS.Signals | null, text: string): Error;
  /** The child could not be started at all (spawn's `error`); unset: not listened for. */
  spawnFailed?(err: Error): Error;
}

export function waitForOutput<T>(child: ChildProcess, o: WaitForOutput<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const out = child[o.stream];
    let text = "";
    const timer = setTimeout(() => finish(o.timedOut(text)), o.timeoutMs);
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      const found = o.match(text);
      if (found !== undefined) finish(undefined, found);
    };
    const onExit = (code: number | null, sig: NodeJS.Signals | null) => finish(o.exited(code, sig, text));
    const onError = (err: Error) => finish(o.spawnFailed!(err));
    const onAbort = () => finish(new Error("aborted"));
    function finish(err: Error | undefined, found?: T) {
      clearTimeout(timer);
      out?.off("data", onData);
      child.off("exit", onExit);
      child.off("error", onError);
      o.signal.removeEventListener("abort", onAbort);
      if (err) reject(err);
      else resolve(found as T);
    }
    out?.on("data", onData);
    child.once("exit", onExit);
    if (o.spawnFailed) child.once("error", onError);
    o.signal.addEventListener("abort", onAbort, { once: true });
  });
}
