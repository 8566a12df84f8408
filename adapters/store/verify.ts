/**
 * `ferry verify`: re-read a stored restore point through its qcow2 chain and compare it with the
 * block digests recorded when it was taken (bit rot, a truncated layer, a broken merge).
 *
 * The guest view is streamed by `nbdcopy -- [ qemu-nbd -r <top, qcow2, force-share> ] -`: qemu-nbd merges the
 * backing chain, nbdcopy writes every byte (zeros included) in order to a pipe, and each block of
 * `blockSize` bytes is hashed as it passes, so nothing the size of the disk is held or written.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { execa } from "execa";
import type { DiskLayer } from "../../domain/chain/mod.ts";
import { redactText } from "../secrets.ts";
import type { QemuImg } from "../qemu/mod.ts";
import { decodeDigests, DIGEST_SIZE as DIGEST, isDigestsFile } from "./digests-file.ts";
import { StoreError } from "./errors.ts";
import type { StorePaths } from "./paths.ts";

export interface VerifyTools {
  nbdcopy?: string;
  qemuNbd?: string;
}

export interface BadBlock {
  index: number;
  offset: number;
  length: number;
}

export interface DiskVerification {
  diskId: string;
  alias: string;
  ok: boolean;
  /** Layers read (the chain length). */
  layers: number;
  checksum: { expected: string; actual?: string };
  blocks: number;
  /** Blocks whose digest differs from the recorded one (at most 100 listed). */
  badBlocks: BadBlock[];
  badBlockCount: number;
  /** What went wrong besides differing blocks (missing digests file, qemu-img check failure...). */
  problems: string[];
}

const MAX_LISTED = 100;

/** The recorded digests: Ferry's FERRYBH1 file, or a bare n × 32-byte list. */
export function parseStoredDigests(buf: Buffer, virtualSize: number, blockSize: number, what: string): Buffer {
  const count = Math.ceil(virtualSize / blockSize);
  if (isDigestsFile(buf)) {
    const d = decodeDigests(buf, what);
    if (d.blockSize !== blockSize || d.virtualSize !== virtualSize) {
      throw new StoreError("STORE_DIGESTS_MISMATCH", `${what} is for ${d.virtualSize} bytes in ${d.blockSize}-byte blocks, the restore point for ${virtualSize} in ${blockSize}`);
    }
    return d.digests;
  }
  if (buf.length !== count * DIGEST) {
    throw new StoreError("STORE_DIGESTS_MISMATCH", `${what} holds ${buf.length} bytes, expected ${count} digests of ${DIGEST} bytes`);
  }
  return buf;
}

/** sha256 of every block of the guest view of `top` (its whole chain). */
export async function digestChain(absTop: string, virtualSize: number, blockSize: number, tools: VerifyTools = {}, signal?: AbortSignal): Promise<Buffer> {
  const count = Math.ceil(virtualSize / blockSize);
  const out = Buffer.alloc(count * DIGEST);
  // force-share: no image locks, so a retention merge may run meanwhile. That is safe for what is
  // verified: merges only write clusters a kept point's chain shadows (domain/retention README).
  const opts = `driver=qcow2,file.driver=file,file.filename=${absTop.replaceAll(",", ",,")},force-share=on`;
  const child = execa(tools.nbdcopy ?? "nbdcopy", ["--", "[", tools.qemuNbd ?? "qemu-nbd", "-r", "--image-opts", opts, "]", "-"], {
    buffer: { stdout: false, stderr: true },
    stdin: "ignore",
    reject: false,
    ...(signal ? { cancelSignal: signal } : {}),
    forceKillAfterDelay: 2000,
    env: { LC_ALL: "C" },
  });
  let index = 0;
  let filled = 0;
  let hash = createHash("sha256");
  const blockLen = (i: number) => Math.min(blockSize, virtualSize - i * blockSize);
  let total = 0;
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    total += chunk.length;
    let pos = 0;
    while (pos < chunk.length && index < count) {
      const take = Math.min(chunk.length - pos, blockLen(index) - filled);
      hash.update(chunk.subarray(pos, pos + take));
      pos += take;
      filled += take;
      if (filled === blockLen(index)) {
        hash.digest().copy(out, index * DIGEST);
        hash = createHash("sha256");
        index++;
        filled = 0;
      }
    }
  }
  const result = await child;
  if (result.isCanceled) throw signal?.reason instanceof Error ? signal.reason : new DOMException("aborted", "AbortError");
  if (result.exitCode !== 0 || total !== virtualSize || index !== count) {
    const why = redactText(String(result.stderr ?? "").trim()).slice(0, 500);
    throw new StoreError("STORE_READ_FAILED", `reading ${absTop} through qemu-nbd gave ${total} of ${virtualSize} bytes (exit ${result.exitCode ?? "?"})${why ? `: ${why}` : ""}`);
  }
  return out;
}

/** `qemu-img check` of every layer of a chain (base first); the problems found, as text. */
export async function checkLayers(paths: StorePaths, qemu: QemuImg, chain: readonly string[], signal?: AbortSignal): Promise<string[]> {
  const problems: string[] = [];
  for (const rel of [...chain].reverse()) {
    try {
      await qemu.check(paths.abs(rel), { format: "qcow2", untrusted: true, ...(signal ? { signal } : {}) });
    } catch (err) {
      if (signal?.aborted) throw err;
      problems.push(`qemu-img check ${rel}: ${(err as Error).message}`);
    }
  }
  return problems;
}

/**
 * Verify one disk of a restore point whose chain (top first) was already inspected, and whose
 * layers were checked (`checkProblems`, from checkLayers). A chain that cannot be read at all is
 * reported in `problems` with `readFailed`.
 */
export async function verifyDisk(
  paths: StorePaths,
  disk: DiskLayer,
  chain: readonly string[],
  checkProblems: readonly string[],
  tools: VerifyTools = {},
  signal?: AbortSignal,
): Promise<DiskVerification & { readFailed?: boolean }> {
  const r: DiskVerification & { readFailed?: boolean } = {
    diskId: disk.diskId,
    alias: disk.alias,
    ok: false,
    layers: chain.length,
    checksum: { expected: disk.checksum.value },
    blocks: Math.ceil(disk.virtualSize / disk.checksum.blockSize),
    badBlocks: [],
    badBlockCount: 0,
    problems: [...checkProblems],
  };
  let recorded: Buffer | undefined;
  try {
    const buf = await readFile(await paths.assertReal(disk.digestsFile, "file"));
    recorded = parseStoredDigests(buf, disk.virtualSize, disk.checksum.blockSize, disk.digestsFile);
  } catch (err) {
    r.problems.push(`block digests: ${(err as Error).message}`);
  }
  let actual: Buffer;
  try {
    actual = await digestChain(paths.abs(chain[0]!), disk.virtualSize, disk.checksum.blockSize, tools, signal);
  } catch (err) {
    if (signal?.aborted) throw err;
    r.problems.push((err as Error).message);
    r.readFailed = true;
    return r;
  }
  r.checksum.actual = createHash("sha256").update(actual).digest("hex");
  if (r.checksum.actual !== r.checksum.expected) r.problems.push("the checksum of the chain differs from the one recorded at backup time");
  if (recorded) {
    for (let i = 0; i < r.blocks; i++) {
      if (!actual.subarray(i * DIGEST, (i + 1) * DIGEST).equals(recorded.subarray(i * DIGEST, (i + 1) * DIGEST))) {
        r.badBlockCount++;
        if (r.badBlocks.length < MAX_LISTED) {
          const offset = i * disk.checksum.blockSize;
          r.badBlocks.push({ index: i, offset, length: Math.min(disk.checksum.blockSize, disk.virtualSize - offset) });
        }
      }
    }
    if (r.badBlockCount) r.problems.push(`${r.badBlockCount} of ${r.blocks} blocks differ from the recorded digests`);
  }
  r.ok = r.problems.length === 0;
  return r;
}
