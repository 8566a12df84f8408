/**
 * Download (backup): an imageio transfer URL → a new qcow2 layer, full or incremental on a
 * backing file (architecture §6, ovirt-api.md 7.10). Data ranges are fetched with parallel
 * ranged GETs and written into the new layer through qemu-nbd; dirty-and-zero ranges become
 * WRITE_ZEROES so they hide the backing data; clean ranges and the zeroes of a full backup are
 * skipped. The per-block sha256 digests of the guest image are computed on the way.
 */
import { scratchDir } from "./scratch.ts";
import { chmod, rm, statfs } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { RangeReaders, openImageio, withRetry, type ImageioClient } from "../adapters/imageio/mod.ts";
import { NbdClient, NbdError } from "../adapters/nbd/mod.ts";
import { QemuNbdStartError, qemuImg, startQemuNbd, type QemuNbdServer } from "../adapters/qemu/mod.ts";
import { PermanentError } from "../contracts/errors.ts";
import { BLOCK_SIZE, DigestBuilder, checksumHex, type BlockDigests } from "./blkhash.ts";
import { assertAbsent, placeNoClobber, tempPathFor } from "./layer-file.ts";
import { hashItemBlocks, type Fetched } from "./item-hash.ts";
import { hasherFor, type BlockHasherPool } from "./hash-pool.ts";
import { readLocal } from "./local-image.ts";
import { BlockAction, PIECE_SIZE, SegmentKind, downloadSegments, planTransfer, type WorkItem } from "./plan.ts";
import { runPool, runStagedPool } from "./pool.ts";
import { throttledProgress, type ProgressCallback } from "./progress.ts";
import { abortReason, linkedAbort } from "./abort.ts";

export const DEFAULT_CONNECTIONS = 4;
/**
 * Window buffers beyond one per connection. Each buffer passes from a GET to the local write and
 * hashing and back, so a connection whose buffer is being stored can start its next GET with a
 * buffer another connection has just released. Measured here (8 GiB disk, 2 GiB data, 4
 * connections): one extra buffer was a few percent faster but pushed the peak RSS past 256 MiB;
 * none keeps memory at connections × piece size (16 MiB at the defaults, 4 MiB pieces).
 */
export const DOWNLOAD_EXTRA_BUFFERS = 0;

export interface DownloadParams {
  transferUrl: string;
  caPem?: string;
  /** The final path of the new layer; it must not exist. Written under a temporary name first. */
  output: string;
  /** The previous layer (incremental): recorded as the backing file, relative to the output's directory. */
  backing?: { path: string };
  incremental: boolean;
  /** Parallel ranged GETs; capped by the server's max_readers. Default 4. */
  connections?: number;
  /** The previous restore point's block digests: clean blocks reuse them instead of being read back. */
  previousDigests?: BlockDigests;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
  /** Largest request (and unit of work); a multiple of 4 MiB. Default 8 MiB. */
  pieceSize?: number;
  /** Block-hashing threads (hash-pool.ts); 0 hashes on this thread. Default: 1 (2 with 4+ cores). */
  hashThreads?: number;
}

export interface DownloadResult {
  /** Bytes of guest data copied (the data moved). */
  bytes: number;
  /** Bytes written as zeroes (dirty-and-zero ranges). */
  zeroBytes: number;
  seconds: number;
  virtualSize: number;
  blockSize: number;
  /** n × 32 bytes: sha256 of each 4 MiB block of the guest image. */
  digests: Buffer;
  /** imageio's `checksum?algorithm=sha256` for the same image. */
  checksum: string;
  connections: number;
  path: string;
  /**
   * Seconds per phase, in order: `open` (OPTIONS), `extents`, `create` (qemu-img create), `nbd`
   * (qemu-nbd start and connect), `zeroes`, `data` (GETs, writes, hashing), `finish` (flush, stop,
   * qemu-img check, rename). What a small incremental's fixed cost is made of.
   */
  phases: Record<string, number>;
}

export class DownloadError extends PermanentError {}

/**
 * The file system under the backup store has no room: final (a retry would fill it again), one
 * code whether qemu-nbd (NBD ENOSPC) or a file write (ENOSPC) hit it, naming where and how much
 * is free, so the operator knows what to clean up.
 */
export class StoreFullError extends PermanentError {
  readonly path: string;
  readonly freeBytes: number | undefined;
  constructor(path: string, freeBytes: number | undefined, cause?: unknown) {
    super("STORE_FULL", `no space left in the backup store at ${path}${freeBytes === undefined ? "" : ` (${freeBytes} bytes free)`}; free space or grow the volume, then back up again`, { path, ...(freeBytes === undefined ? {} : { freeBytes }) }, { cause });
    this.path = path;
    this.freeBytes = freeBytes;
  }
}

/** Out of space, as typed by whoever hit it: an NBD ENOSPC reply, a file system ENOSPC, or StoreFullError. */
export function isNoSpace(err: unknown): boolean {
  if (err instanceof StoreFullError) return true;
  if (err instanceof NbdError) return err.errno === "ENOSPC";
  return !!err && typeof err === "object" && (err as { code?: unknown }).code === "ENOSPC";
}

/**
 * The file system under the backup store is read-only (remounted after I/O errors, a read-only
 * snapshot mounted by mistake): final, because nothing Ferry retries will make it writable.
 */
export class StoreReadOnlyError extends PermanentError {
  readonly path: string;
  constructor(path: string, cause?: unknown) {
    super("STORE_READ_ONLY", `the backup store at ${path} is on a read-only file system; make it writable (check the mount and the kernel log), then back up again`, { path }, { cause });
    this.path = path;
  }
}

/** A write refused because the file system is read-only, as typed by whoever hit it. */
export function isReadOnlyFs(err: unknown): boolean {
  if (err instanceof StoreReadOnlyError) return true;
  // NBD has no EROFS (a read-only file system under qemu-nbd answers EPERM/EIO): file writes only.
  return !!err && typeof err === "object" && (err as { code?: unknown }).code === "EROFS";
}

/** StoreFullError for `path`, with the free bytes there now. */
export async function storeFullError(path: string, cause?: unknown): Promise<StoreFullError> {
  const free = await statfs(path).then((f) => f.bavail * f.bsize, () => undefined);
  return new StoreFullError(path, free, cause);
}

export async function download(p: DownloadParams): Promise<DownloadResult> {
  try {
    return await downloadLayer(p);
  } catch (err) {
    // After the cleanup, so the free bytes named are what is really left.
    if (isNoSpace(err)) throw await storeFullError(dirname(resolve(p.output)), err);
    throw err;
  }
}

async function downloadLayer(p: DownloadParams): Promise<DownloadResult> {
  const started = performance.now();
  const phases: Record<string, number> = {};
  let phaseStart = started;
  const phase = (name: string) => {
    const now = performance.now();
    phases[name] = Math.round(now - phaseStart) / 1000;
    phaseStart = now;
  };
  const output = resolve(p.output);
  if (p.incremental && !p.backing) {
    throw new DownloadError("DOWNLOAD_NEEDS_BACKING", "an incremental download needs the previous layer as backing");
  }
  await assertAbsent(output);
  const backingPath = p.backing ? resolve(p.backing.path) : undefined;
  const { controller, dispose } = linkedAbort(p.signal);
  const signal = controller.signal;

  let client: ImageioClient | undefined;
  let server: QemuNbdServer | undefined;
  let nbd: NbdClient | undefined;
  let sockDir: string | undefined;
  let hasher: BlockHasherPool | undefined;
  let readers: RangeReaders | undefined;
  const tmp = tempPathFor(output);
  let created = false;
  let firstError: unknown;
  const fail = (err: unknown) => {
    firstError ??= err;
    if (!signal.aborted) controller.abort(err);
  };

  try {
    client = await openImageio(p.transferUrl, { caPem: p.caPem, maxConnections: p.connections ?? DEFAULT_CONNECTIONS, signal });
    const options = await client.options();
    if (!options.features.includes("extents")) {
      throw new DownloadError("IMAGEIO_NO_EXTENTS", "the imageio server does not support extents (imageio < 2.0)");
    }
    phase("open");
    const connections = client.readers;
    const io0 = client;
    const extents = await withRetry(() => io0.extents(p.incremental ? "dirty" : "zero"), { signal });
    phase("extents");
    const segments = downloadSegments(extents, { incremental: p.incremental, hasBacking: !!backingPath });

    const virtualSize = extents.length ? extents.at(-1)!.start + extents.at(-1)!.length : 0;
    const pieceSize = p.pieceSize ?? PIECE_SIZE;
    const digests = new DigestBuilder(virtualSize, BLOCK_SIZE, p.incremental ? p.previousDigests : undefined);
    const plan = planTransfer(segments, {
      blockSize: BLOCK_SIZE,
      pieceSize,
      canReuse: (i) => digests.canReuse(i),
    });
    let hashBlocks = 0;
    plan.blocks.forEach((action, i) => {
      if (action === BlockAction.zero) digests.setZero(i);
      else if (action === BlockAction.reuse) digests.reuse(i);
      else hashBlocks++;
    });
    // Started before qemu-img and qemu-nbd, so the threads load while those start.
    hasher = hasherFor(hashBlocks, BLOCK_SIZE, p.hashThreads);

    // Set first: a cancel can kill qemu-img after it made the file (the name is ours alone).
    created = true;
    await qemuImg.create({
      path: tmp,
      format: "qcow2",
      size: virtualSize,
      // Relative to the layer's directory, so a store can be moved or mounted elsewhere.
      backing: backingPath ? { path: relativeBacking(output, backingPath), format: "qcow2" } : undefined,
      signal,
    });
    await chmod(tmp, 0o600);
    phase("create");

    sockDir = await scratchDir("dl");
    server = await startTarget(tmp, join(sockDir, "nbd.sock"), signal);
    nbd = await NbdClient.connect({ socket: server.socket, exportName: server.exportName, signal });
    phase("nbd");

    const progress = throttledProgress(plan.copyBytes, p.onProgress);
    const conn = nbd;
    await runPool(plan.zeroRuns, connections, (r) => conn.writeZeroes(r.offset, r.length), signal, fail);
    phase("zeroes");
    if (!firstError) {
      // The data GETs read straight into the window buffers (adapters/imageio/range-reader.ts), one connection per lane.
      readers = new RangeReaders({ transferUrl: p.transferUrl, caPem: p.caPem });
      const c: CopyContext = { readers, nbd: conn, digests, blocks: plan.blocks, hasher, signal };
      await runStagedPool(
        plan.items,
        { workers: connections, buffers: connections + DOWNLOAD_EXTRA_BUFFERS, bufferSize: pieceSize },
        (item, buffer) => fetchItem(item, buffer, c),
        async (item, buffer, fetched) => {
          await storeItem(item, buffer, fetched, c);
          progress.add(item.copyBytes);
        },
        signal,
        fail,
      );
    }
    if (firstError) throw firstError;
    signal.throwIfAborted();
    phase("data");
    await nbd.flush();
    progress.finish();
    await nbd.close();
    nbd = undefined;
    await server.stop();
    server = undefined;
    await qemuImg.check(tmp, { format: "qcow2", signal });
    await placeNoClobber(tmp, output);
    created = false;
    phase("finish");

    const result = digests.finish();
    return {
      bytes: plan.copyBytes,
      zeroBytes: plan.zeroBytes,
      seconds: (performance.now() - started) / 1000,
      virtualSize,
      blockSize: BLOCK_SIZE,
      digests: result.digests,
      checksum: checksumHex(result),
      connections,
      path: output,
      phases,
    };
  } catch (err) {
    fail(err);
    throw abortReason(firstError, p.signal);
  } finally {
    dispose();
    readers?.close();
    await hasher?.close();
    await nbd?.close().catch(() => {});
    await server?.stop().catch(() => {});
    await client?.close().catch(() => {});
    if (sockDir) await rm(sockDir, { recursive: true, force: true });
    if (created) await rm(tmp, { force: true });
  }
}

function relativeBacking(output: string, backing: string): string {
  const rel = relative(dirname(output), backing);
  return isAbsolute(rel) ? backing : rel;
}

/**
 * The new layer's qemu-nbd. O_DIRECT (cache=none, aio=native) writes about twice as fast here
 * and keeps gigabytes of backup data out of the page cache; where qemu-nbd cannot open the file
 * that way (no O_DIRECT: older tmpfs, some FUSE file systems) it gets the default cache.
 */
async function startTarget(image: string, socket: string, signal: AbortSignal): Promise<QemuNbdServer> {
  try {
    return await startQemuNbd({ image, format: "qcow2", socket, cache: "none", aio: "native", signal });
  } catch (err) {
    if (!(err instanceof QemuNbdStartError)) throw err;
    return startQemuNbd({ image, format: "qcow2", socket, signal });
  }
}

interface CopyContext {
  readers: RangeReaders;
  nbd: NbdClient;
  digests: DigestBuilder;
  blocks: Uint8Array;
  hasher: BlockHasherPool;
  signal: AbortSignal;
}

interface FetchedItem {
  fetched: Fetched[];
  /** Kept (clean) ranges of blocks to hash, read back from the new layer, by offset. */
  kept: Map<number, Buffer>;
}

/**
 * Stage one: the window's data ranges, fetched into the worker's buffer; meanwhile (an
 * incremental) the kept ranges of partially dirty blocks are read back from the local chain into
 * their own places in the same buffer, so the NBD reads overlap the GETs instead of following them.
 */
async function fetchItem(item: WorkItem, buffer: Buffer, c: CopyContext): Promise<FetchedItem> {
  const kept = new Map<number, Buffer>();
  const reads = keptRanges(item, c.blocks, c.digests.blockSize).map(async (s) => {
    kept.set(s.offset, await readLocal(c.nbd, s.offset, buffer.subarray(s.offset - item.offset, s.offset - item.offset + s.length)));
  });
  const local = Promise.all(reads);
  local.catch(() => {});
  const fetched: Fetched[] = [];
  try {
    for (const f of item.fetches) {
      // A dropped connection or a 5xx retries this range; a 403 or a cancel does not.
      const into = buffer.subarray(f.offset - item.offset);
      const data = await withRetry(() => c.readers.read(f.offset, f.length, into, c.signal), { signal: c.signal });
      fetched.push({ offset: f.offset, data });
    }
  } finally {
    // Never hand the buffer back with a local read still landing in it.
    await Promise.allSettled(reads);
  }
  await local;
  return { fetched, kept };
}

/** The kept segments of the item that lie in blocks to hash (their bytes come from the local chain). */
function keptRanges(item: WorkItem, blocks: Uint8Array, blockSize: number): { offset: number; length: number }[] {
  const out: { offset: number; length: number }[] = [];
  for (const s of item.segments) {
    if (s.kind !== SegmentKind.keep) continue;
    // Cut at block edges: a kept run can span a reused block and a block to hash.
    for (let o = s.offset; o < s.offset + s.length; ) {
      const end = Math.min(s.offset + s.length, (Math.floor(o / blockSize) + 1) * blockSize);
      if (blocks[Math.floor(o / blockSize)] === BlockAction.hash) out.push({ offset: o, length: end - o });
      o = end;
    }
  }
  return out;
}

/**
 * Stage two: write the data segments into the new layer, and hash every block that needs it
 * from its parts in order (fetched bytes, zeroes, and kept ranges read back from the new layer,
 * where qemu merges the backing chain; kept ranges are never written, so the read does not race
 * the writes). Meanwhile the connection that fetched this window is already fetching another.
 */
async function storeItem(item: WorkItem, buffer: Buffer, { fetched, kept }: FetchedItem, c: CopyContext): Promise<void> {
  const writes: Promise<void>[] = [];
  try {
    for (const f of fetched) {
      for (const s of item.segments) {
        if (s.kind !== SegmentKind.copy || s.offset < f.offset || s.offset >= f.offset + f.data.length) continue;
        const w = c.nbd.write(s.offset, f.data.subarray(s.offset - f.offset, s.offset - f.offset + s.length));
        w.catch(() => {});
        writes.push(w);
      }
    }
    // Kept ranges were read in stage one (blockSegments cuts them at the same block edges).
    const readKept = async (o: number, l: number) => {
      const data = kept.get(o);
      if (!data || data.length !== l) throw new DownloadError("DOWNLOAD_KEPT_MISSING", `kept range ${o}+${l} was not read back`);
      return data;
    };
    await hashItemBlocks(item, fetched, c.blocks, c.digests, readKept, { pool: c.hasher, memory: buffer });
  } catch (err) {
    // Never leave a write in flight behind a failure: the caller closes the connection next.
    await Promise.allSettled(writes);
    throw err;
  }
  await Promise.all(writes);
}

