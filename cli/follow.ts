/**
 * Following one request on the bus until its outcome (`ferry backup --wait`, `ferry restore
 * --wait`): every event whose correlationId is the request's id, progress drawn as it comes, the
 * first outcome decides the exit code. Subscribe BEFORE publishing, so no outcome can be missed.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { ExitCode, type CommandIO } from "./command.ts";

export interface Follow {
  readonly id: string;
  /** What is being followed, for the timeout message ("backup", "restore"). */
  readonly what: string;
  readonly timeoutMs: number;
  /** transfer.progress events of the request. */
  readonly onProgress?: (e: Record<string, unknown>) => void;
  /** Outcome subjects → what to print and the exit code. */
  readonly outcomes: Readonly<Record<string, (e: Record<string, unknown>) => number>>;
}

export function followRequest(nc: NatsConnection, subs: Subscription[], io: CommandIO, f: Follow): Promise<number> {
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(code);
    };
    const timer = setTimeout(() => {
      io.stderr.write(`\nferry ${f.what}: no outcome after ${Math.round(f.timeoutMs / 60_000)} min; the ${f.what} may still be running\n`);
      finish(ExitCode.failed);
    }, f.timeoutMs);
    io.signal.addEventListener("abort", () => finish(ExitCode.failed), { once: true });
    const listen = (subject: string, on: (e: Record<string, unknown>) => void) => {
      subs.push(
        nc.subscribe(subject, {
          callback: (_err, msg) => {
            let e: Record<string, unknown>;
            try {
              e = msg.json<Record<string, unknown>>();
            } catch {
              return;
            }
            if (e.correlationId === f.id && !done) on(e);
          },
        }),
      );
    };
    if (f.onProgress) listen("transfer.progress", f.onProgress);
    for (const [subject, on] of Object.entries(f.outcomes)) listen(subject, (e) => finish(on(e)));
  });
}
