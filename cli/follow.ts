/**
 * Following one request on the bus until its outcome (`ferry backup --wait`, `ferry restore
 * --wait`): every event whose correlationId is the request's id, progress drawn as it comes, the
 * first outcome decides the exit code. Subscribe BEFORE publishing, so no outcome can be missed.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { runningWorkers } from "../functions/runtime/workers.ts";
import { ExitCode, type CommandIO } from "./command.ts";
import { bytes } from "./format.ts";

export interface Follow {
  readonly id: string;
  /** What is being followed, for the timeout message ("backup", "restore"). */
  readonly what: string;
  readonly timeoutMs: number;
  /** Draw per-disk progress (transfer.progress) on stderr under this VM name; omit for none (--json). */
  readonly progressOf?: string | undefined;
  /**
   * Facts that say a disk is done (disk.transferred for a backup): its alias and final size,
   * or undefined when the event is not about one disk.
   */
  readonly diskDone?: { readonly subject: string; readonly read: (e: Record<string, unknown>) => { id: string; alias?: string | undefined; bytes: number } | undefined };
  /** Outcome subjects → what to print and the exit code. */
  readonly outcomes: Readonly<Record<string, (e: Record<string, unknown>) => number>>;
  /** Outcome subjects that mean success: every disk shown is drawn at 100% before the outcome's line. */
  readonly success?: readonly string[];
}

export interface DiskProgress {
  /** What the operator knows the disk by: its alias, else the start of its id. */
  label: string;
  bytes: number;
  total: number;
  done?: boolean;
}

export function progressLine(vm: string, disks: ReadonlyMap<string, DiskProgress>): string {
  const parts = [...disks.values()].map((p) => {
    const pct = p.done ? 100 : p.total > 0 ? Math.min(100, Math.floor((p.bytes / p.total) * 100)) : 0;
    const size = p.done ? bytes(Math.max(p.bytes, p.total)) : `${bytes(p.bytes)}/${bytes(p.total)}`;
    return `${p.label} ${String(pct).padStart(3)}% ${size}`;
  });
  return `${vm}: ${parts.join("  ")}`;
}

/**
 * undefined when a worker runs `fn`; else prints why the request would wait forever (with the
 * command that fixes it) and returns the exit code.
 */
export async function requireWorker(nc: NatsConnection, fn: string, command: string, io: CommandIO): Promise<number | undefined> {
  if ((await runningWorkers(nc)).has(fn)) return undefined;
  io.stderr.write(`ferry ${command}: no ${fn} worker is running: start \`ferry run ${fn}\` (or \`ferry run all\`). Nothing was requested.\n`);
  return ExitCode.unavailable;
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
    const draw = (force: boolean) => {
      if (vm === undefined || disks.size === 0) return;
      const now = Date.now();
      if (tty) io.stderr.write(`\r${progressLine(vm, disks)}`);
      else if (force || now - lastLine > 5000) {
        lastLine = now;
        io.stderr.write(`${progressLine(vm, disks)}\n`);
      }
    };
    const labelOf = (id: string, alias: unknown) => (typeof alias === "string" && alias ? alias : (disks.get(id)?.label ?? id.slice(0, 8)));
    if (vm !== undefined) {
      listen("transfer.progress", (e) => {
        const id = String(e.disk);
        const cur = disks.get(id);
        if (cur?.done) return; // a late progress event after the disk's fact
        disks.set(id, { label: labelOf(id, e.alias), bytes: Number(e.bytes), total: Number(e.total) });
        draw(false);
      });
      if (f.diskDone) {
        const dd = f.diskDone;
        listen(dd.subject, (e) => {
          const d = dd.read(e);
          if (!d) return;
          disks.set(d.id, { label: labelOf(d.id, d.alias), bytes: d.bytes, total: d.bytes, done: true });
          draw(true);
        });
      }
    }
    for (const [subject, on] of Object.entries(f.outcomes)) {
      listen(subject, (e) => {
        if (f.success?.includes(subject) && disks.size) {
          // The outcome says every disk is in: the last progress event may have been throttled away.
          for (const d of disks.values()) if (!d.done) Object.assign(d, { done: true, bytes: Math.max(d.bytes, d.total) });
          draw(true);
        }
        if (tty && disks.size) io.stderr.write("\n"); // end the progress line
        finish(on(e));
      });
    }
  });
}
