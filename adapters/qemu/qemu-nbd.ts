import { execa, type ResultPromise } from "execa";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { rm } from "node:fs/promises";
import { cleanStderr } from "./run.ts";
import { QemuNbdStartError } from "./errors.ts";
import type { ImageFormat } from "./qemu-img.ts";

/**
 * qemu-nbd serving one image on a unix socket. The server is started `--persistent` so that a
 * client disconnect (including our own readiness probe) does not end it; `stop()` ends it with
 * SIGTERM, which lets qemu write persistent bitmaps back cleanly, and SIGKILL after a grace.
 */
export interface QemuNbdOptions {
  image: string;
  format: ImageFormat;
  socket: string;
  readOnly?: boolean;
  /** Export this persistent dirty bitmap as `qemu:dirty-bitmap:<name>` (`--bitmap`). */
  bitmap?: string;
  /** Default: "" (the default export). */
  exportName?: string;
  /** `--discard=unmap` when true. */
  discard?: boolean;
  detectZeroes?: "off" | "on" | "unmap";
  cache?: "none" | "writeback" | "writethrough" | "directsync" | "unsafe";
  aio?: "threads" | "native" | "io_uring";
  /** false: open only this qcow2 layer, its unallocated areas read as holes (default: the whole chain). */
  backingChain?: boolean;
  /** Expose `qemu:allocation-depth` (`--allocation-depth`), so unallocated areas can be told from zeroes. */
  allocationDepth?: boolean;
  /** Max simultaneous clients (`--shared`); default 8 (imageio's max connections). */
  shared?: number;
  binary?: string;
  /** How long to wait for the socket to accept (default 10 s). */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL (default 5 s). */
  stopGraceMs?: number;
  signal?: AbortSignal;
}

export interface QemuNbdServer {
  socket: string;
  exportName: string;
  pid: number | undefined;
  /** Resolves when the process has exited (SIGTERM, then SIGKILL after the grace). Idempotent. */
  stop(): Promise<void>;
}

function buildArgs(o: QemuNbdOptions, exportName: string): string[] {
  const args = ["--socket", o.socket, "--persistent", `--shared=${o.shared ?? 8}`, "--export-name", exportName];
  if (o.readOnly) args.push("--read-only");
  if (o.bitmap) args.push("--bitmap", o.bitmap);
  if (o.discard) args.push("--discard=unmap");
  if (o.detectZeroes) args.push(`--detect-zeroes=${o.detectZeroes}`);
  if (o.cache) args.push(`--cache=${o.cache}`);
  if (o.aio) args.push(`--aio=${o.aio}`);
  if (o.allocationDepth) args.push("--allocation-depth");
  if (o.backingChain === false && o.format === "qcow2") {
    // json: pseudo-protocol so we can say "no backing file" explicitly; the format is in the JSON.
    const spec = { driver: "qcow2", file: { driver: "file", filename: o.image }, backing: null };
    args.push(`json:${JSON.stringify(spec)}`);
  } else {
    args.push("--format", o.format, o.image);
  }
  return args;
}

// qemu-nbd binds and listens BEFORE it opens the image, so an accepted connection does not mean
// it will serve: it may be about to exit with "Could not open". The newstyle greeting
// ("NBDMAGIC") is sent only once the export is open, so that is what readiness waits for.
const GREETING = Buffer.from("NBDMAGIC");

function probe(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    let got = Buffer.alloc(0);
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.on("data", (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= GREETING.length) done(got.subarray(0, GREETING.length).equals(GREETING));
    });
    s.once("error", () => done(false));
    s.once("close", () => done(false));
    s.setTimeout(2000, () => done(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SETPRIV = existsSync("/usr/bin/setpriv") ? "/usr/bin/setpriv" : undefined;

export async function startQemuNbd(o: QemuNbdOptions): Promise<QemuNbdServer> {
  o.signal?.throwIfAborted();
  const exportName = o.exportName ?? "";
  await rm(o.socket, { force: true });
  const argv = [o.binary ?? "qemu-nbd", ...buildArgs(o, exportName)];
  // A worker killed with SIGKILL (OOM, kill -9) runs no cleanup; --pdeathsig makes its qemu-nbd
  // exit too (SIGTERM: bitmaps written back) instead of holding the image open under init.
  const command = SETPRIV ? [SETPRIV, "--pdeathsig", "SIGTERM", "--", ...argv] : argv;
  const child: ResultPromise = execa(command[0]!, command.slice(1), {
    reject: false,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    env: { LC_ALL: "C" },
    // A late abort (after start) must not kill the server behind the owner's back: the owner calls stop().
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    if (stderr.length < 4000) stderr += d.toString();
  });
  let exited = false;
  const done = child.then(() => {
    exited = true;
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exited) {
        child.kill("SIGTERM");
        const grace = o.stopGraceMs ?? 5000;
        const timer = setTimeout(() => {
          if (!exited) child.kill("SIGKILL");
        }, grace);
        await done;
        clearTimeout(timer);
      }
      await rm(o.socket, { force: true });
    })();
    return stopping;
  };

  const deadline = Date.now() + (o.startTimeoutMs ?? 10_000);
  for (;;) {
    if (exited) {
      await done;
      throw new QemuNbdStartError(`qemu-nbd exited while starting: ${cleanStderr(stderr) || "no output"}`, {
        image: o.image,
      });
    }
    if (o.signal?.aborted) {
      await stop();
      throw o.signal.reason instanceof Error ? o.signal.reason : new DOMException("aborted", "AbortError");
    }
    if (await probe(o.socket)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new QemuNbdStartError(`qemu-nbd did not accept connections on its socket within ${o.startTimeoutMs ?? 10_000} ms`, {
        image: o.image,
        stderr: cleanStderr(stderr),
      });
    }
    await sleep(20);
  }
  return { socket: o.socket, exportName, pid: child.pid, stop };
}
