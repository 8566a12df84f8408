/**
 * A small imageio setup for the benchmarks and the dataplane tests: a TLS certificate, guest
 * data written into qcow2 images with qemu-io (persistent bitmaps record the writes), qemu-nbd
 * exports, and tickets on the lab imageio server. Not shipped code: bench/ and test/ use it.
 */
import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { startQemuNbd, type QemuNbdServer } from "../adapters/qemu/mod.ts";

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export interface TlsFiles {
  cert: string;
  key: string;
  /** The self-signed certificate is its own CA. */
  caPem: string;
  caFile: string;
}

/** A self-signed P-256 certificate for 127.0.0.1, valid for a day. */
export async function makeTls(dir: string): Promise<TlsFiles> {
  const keyFile = join(dir, "server.key");
  const certFile = join(dir, "server.crt");
  await execa("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ]);
  const cert = await readFile(certFile, "utf8");
  return { cert, key: await readFile(keyFile, "utf8"), caPem: cert, caFile: certFile };
}

export type GuestOp =
  | { op: "write"; offset: number; length: number }
  | { op: "zero"; offset: number; length: number };

/** Random bytes qemu-io copies into every write (`write -s`): runs differ by offset, not content. */
export async function makeSource(dir: string, size = 16 * MiB): Promise<string> {
  const file = join(dir, `source-${size}.bin`);
  await writeFile(file, randomBytes(size));
  return file;
}

/**
 * Apply guest writes to a qcow2 image with qemu-io (one process for the whole batch). Writes
 * take their bytes from `source` (each ≤ its size); zeroes are written with `write -z -u`.
 */
export async function guestWrite(image: string, ops: readonly GuestOp[], source: string, signal?: AbortSignal): Promise<void> {
  const batch = 400;
  for (let i = 0; i < ops.length; i += batch) {
    const args = ["-f", "qcow2"];
    for (const o of ops.slice(i, i + batch)) {
      args.push("-c", o.op === "write" ? `write -q -s ${source} ${o.offset} ${o.length}` : `write -q -z -u ${o.offset} ${o.length}`);
    }
    args.push(image);
    await execa("qemu-io", args, { cancelSignal: signal });
  }
}

/** Deterministic PRNG (mulberry32) so a layout is the same on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Non-overlapping write runs totalling `dataBytes` spread over `virtualSize`: sizes from 64 KiB
 * to `maxRun`, 64 KiB aligned, placed in order with random gaps, like a used filesystem.
 */
export function layoutRuns(virtualSize: number, dataBytes: number, seed: number, maxRun = 16 * MiB): GuestOp[] {
  const rnd = prng(seed);
  const unit = 64 * 1024;
  const sizes: number[] = [];
  for (let left = dataBytes; left > 0; ) {
    const pick = [unit, 4 * unit, MiB, 4 * MiB, maxRun][Math.floor(rnd() * 5)]!;
    const n = Math.min(left, Math.min(pick, maxRun));
    sizes.push(n);
    left -= n;
  }
  const free = virtualSize - dataBytes;
  if (free < 0) throw new Error("more data than disk");
  const meanGap = Math.floor(free / (sizes.length + 1) / unit);
  const ops: GuestOp[] = [];
  let pos = 0;
  let budget = free;
  for (const n of sizes) {
    const gap = Math.min(budget, Math.floor(rnd() * 2 * meanGap) * unit);
    pos += gap;
    budget -= gap;
    ops.push({ op: "write", offset: pos, length: n });
    pos += n;
  }
  return ops;
}

/** `nbd:unix:<socket>:exportname=<name>`, the ticket URL form imageio uses for an NBD backend. */
export function nbdUrl(server: QemuNbdServer): string {
  return `nbd:unix:${server.socket}:exportname=${server.exportName}`;
}

/** A qemu-nbd export for a ticket: read-only with a bitmap for backups, writable for uploads. */
export function exportImage(
  image: string,
  socketDir: string,
  o: { name: string; bitmap?: string; readOnly: boolean },
): Promise<QemuNbdServer> {
  return startQemuNbd({
    image,
    format: "qcow2",
    socket: join(socketDir, `${o.name}.sock`),
    readOnly: o.readOnly,
    bitmap: o.bitmap,
    exportName: o.name,
  });
}

/** pids of running qemu-nbd processes whose command line mentions `needle`. */
export async function qemuNbdPidsMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = (await readFile(`/proc/${entry}/cmdline`, "utf8")).split("\0");
      if (cmd[0]?.endsWith("qemu-nbd") && cmd.some((a) => a.includes(needle))) pids.push(Number(entry));
    } catch {
      // The process exited while we looked.
    }
  }
  return pids;
}
