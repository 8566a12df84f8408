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
  /** Draw per-disk progress (transfer.progress) on stderr under this VM name; omit for none (--json). */
  readonly progressOf?: string | undefined;
  /** Outcome subjects → what to print and the exit code. */
  readonly outcomes: Readonly<Record<string, (e: Record<string, unknown>) => number>>;
}

interface DiskProgress {
  bytes: number;
  total: number;
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export function progressLine(vm: string, disks: ReadonlyMap<string, DiskProgress>): string {
  const parts = [...disks].map(([id, p]) => {
    const pct = p.total > 0 ? Math.min(100, Math.floor((p.bytes / p.total) * 100)) : 100;
    return `${id.slice(0, 8)} ${String(pct).padStart(3)}% ${mib(p.bytes)}/${mib(p.total)}`;
  });
  return `${vm}: ${parts.join("  ")}`;
}

export function followRequest(nc: NatsConnection, subs: Subscription[], io: CommandIO, f: Follow): Promise<number> {
  const disks = new Map<string, DiskProgress>();
  const tty = (io.stderr as { isTTY?: boolean }).isTTY === true;
  let lastLine = 0;
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
    const vm = f.progressOf;
    if (vm !== undefined) {
      listen("transfer.progress", (e) => {
        disks.set(String(e.disk), { bytes: Number(e.bytes), total: Number(e.total) });
        const now = Date.now();
        if (tty) io.stderr.write(`\r${progressLine(vm, disks)}`);
        else if (now - lastLine > 5000) {
          lastLine = now;
          io.stderr.write(`${progressLine(vm, disks)}\n`);
        }
      });
    }
    for (const [subject, on] of Object.entries(f.outcomes)) {
      listen(subject, (e) => {
        if (tty && disks.size) io.stderr.write("\n"); // end the progress line
        finish(on(e));
      });
    }
  });
}
