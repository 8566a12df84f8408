/**
 * Test-only helpers for the NBD and imageio tests: temp dirs, qcow2 images, and real
 * qemu-nbd / nbdkit servers on unix sockets. (adapters/qemu has the production
 * qemu-nbd wrapper; these tests deliberately do not depend on it.)
 */
import { execa, type ResultPromise } from "execa";
import { existsSync } from "node:fs";
import { createConnection } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

export async function tempDir(prefix: string): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), `ferry-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function qemuImgCreate(file: string, size: number, format: "qcow2" | "raw" = "qcow2"): Promise<void> {
  await execa("qemu-img", ["create", "-q", "-f", format, file, String(size)]);
}

export async function qemuImgBitmapAdd(file: string, name: string): Promise<void> {
  await execa("qemu-img", ["bitmap", "--add", "-f", "qcow2", file, name]);
}

/** Write `pattern` bytes with qemu-io directly into the image (the server must not be running). */
export async function qemuIoWrite(file: string, offset: number, length: number, pattern: number): Promise<void> {
  await execa("qemu-io", ["-f", "qcow2", "-c", `write -P ${pattern} ${offset} ${length}`, file]);
}

export async function qemuIoZero(file: string, offset: number, length: number): Promise<void> {
  await execa("qemu-io", ["-f", "qcow2", "-c", `write -z ${offset} ${length}`, file]);
}

export interface RunningServer {
  socket: string;
  exportName: string;
  pid: number;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** Send a signal without waiting (simulate a crash with SIGKILL). */
  kill(signal: NodeJS.Signals): void;
  exited: Promise<unknown>;
}

/** A probe connection: the socket file exists from bind(), but connects are refused until listen(). */
function accepts(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(socket);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

async function waitForSocket(socket: string, proc: ResultPromise, what: string): Promise<void> {
  let exited = false;
  void proc.then(
    () => (exited = true),
    () => (exited = true),
  );
  const deadline = Date.now() + 15_000;
  while (!(existsSync(socket) && (await accepts(socket)))) {
    if (exited) throw new Error(`${what} exited before listening on ${socket}`);
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${socket}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function wrap(proc: ResultPromise, socket: string, exportName: string): RunningServer {
  const exited = proc.then(
    (r) => r,
    (e: unknown) => e,
  );
  return {
    socket,
    exportName,
    pid: proc.pid!,
    exited,
    kill: (signal) => void proc.kill(signal),
    stop: async () => {
      proc.kill("SIGTERM");
      await exited;
    },
  };
}

export async function startQemuNbd(o: {
  image: string;
  socket: string;
  format?: "qcow2" | "raw";
  exportName?: string;
  bitmap?: string;
  readOnly?: boolean;
  allocationDepth?: boolean;
  shared?: number;
}): Promise<RunningServer> {
  const exportName = o.exportName ?? "";
  const args = [
    `--socket=${o.socket}`,
    `--format=${o.format ?? "qcow2"}`,
    "--persistent",
    `--shared=${o.shared ?? 8}`,
    "--cache=writeback",
  ];
  if (exportName) args.push(`--export-name=${exportName}`);
  if (o.bitmap) args.push(`--bitmap=${o.bitmap}`);
  if (o.readOnly) args.push("--read-only");
  if (o.allocationDepth) args.push("--allocation-depth");
  args.push(o.image);
  const proc = execa("qemu-nbd", args, { reject: false, stdio: ["ignore", "ignore", "pipe"], cleanup: true });
  await waitForSocket(o.socket, proc, "qemu-nbd");
  return wrap(proc, o.socket, exportName);
}

/** `nbdkit --unix SOCK --foreground [--filter=F...] PLUGIN ARGS...` */
export async function startNbdkit(o: { socket: string; plugin: string; args: string[]; filters?: string[] }): Promise<RunningServer> {
  const args = ["--unix", o.socket, "--foreground", "--exit-with-parent"];
  for (const f of o.filters ?? []) args.push(`--filter=${f}`);
  args.push(o.plugin, ...o.args);
  const proc = execa("nbdkit", args, { reject: false, stdio: ["ignore", "ignore", "pipe"], cleanup: true });
  await waitForSocket(o.socket, proc, "nbdkit");
  return wrap(proc, o.socket, "");
}

/** A deterministic, non-repeating-looking byte pattern for a range. */
export function patternBytes(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    if (i + 4 <= length) b.writeUInt32LE(x, i);
    else for (let j = i; j < length; j++) b[j] = (x >>> ((j - i) * 8)) & 0xff;
  }
  return b;
}
