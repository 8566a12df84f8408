/**
 * A local image (a qcow2 chain or a raw file) exposed read-only through qemu-nbd, which merges
 * the backing chain into the guest view, with its allocation map from NBD BLOCK_STATUS
 * base:allocation. Upload reads from it; `ferry transfer checksum` hashes it.
 */
import { scratchDir } from "./scratch.ts";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { NbdClient, type BlockExtent } from "../adapters/nbd/mod.ts";
import { QemuNbdStartError, qemuImg, startQemuNbd, type ImageFormat, type QemuNbdServer } from "../adapters/qemu/mod.ts";
import { PermanentError } from "../contracts/errors.ts";
import { BLOCK_SIZE, DigestBuilder, checksumHex, type BlockDigests } from "./blkhash.ts";
import { hashItemBlocks } from "./item-hash.ts";
import { hasherFor, type BlockHasherPool } from "./hash-pool.ts";
import { BlockAction, PIECE_SIZE, planTransfer, uploadSegments } from "./plan.ts";
import { runPool, sharedBuffer } from "./pool.ts";
import { linkedAbort, abortReason } from "./abort.ts";

export const BASE_ALLOCATION = "base:allocation";

export class LocalImageError extends PermanentError {}

export interface LocalImage {
  readonly nbd: NbdClient;
  readonly size: number;
  readonly format: ImageFormat;
  /** base:allocation extents tiling [0, size). */
  allocation(): Promise<BlockExtent[]>;
  close(): Promise<void>;
}

/** The image's own format, from its header (only for images the caller trusts, such as Ferry's store). */
export async function detectFormat(image: string, signal?: AbortSignal): Promise<ImageFormat> {
  const info = await qemuImg.info(image, { signal });
  if (info.format !== "qcow2" && info.format !== "raw") {
    throw new LocalImageError("IMAGE_FORMAT_UNSUPPORTED", `${image} is ${info.format}; only qcow2 and raw are supported`);
  }
  return info.format;
}

export async function openLocalImage(o: { image: string; format: ImageFormat; signal?: AbortSignal }): Promise<LocalImage> {
  const sockDir = await scratchDir("src");
  let server: QemuNbdServer | undefined;
  try {
    const base = { image: o.image, format: o.format, socket: join(sockDir, "nbd.sock"), readOnly: true, signal: o.signal };
    try {
      // O_DIRECT: layers written with O_DIRECT are not in the page cache anyway, and reading a
      // whole chain through the cache would only evict what the host needs.
      server = await startQemuNbd({ ...base, cache: "none", aio: "native" });
    } catch (err) {
      if (!(err instanceof QemuNbdStartError)) throw err;
      server = await startQemuNbd(base); // no O_DIRECT here (older tmpfs, some FUSE file systems)
    }
    const nbd = await NbdClient.connect({
      socket: server.socket,
      exportName: server.exportName,
      metaContexts: [BASE_ALLOCATION],
      signal: o.signal,
    });
    const srv = server;
    let closed: Promise<void> | undefined;
    return {
      nbd,
      size: nbd.size,
      format: o.format,
      allocation: () => readAllocation(nbd),
      close: () =>
        (closed ??= (async () => {
          await nbd.close().catch(() => {});
          await srv.stop();
          await rm(sockDir, { recursive: true, force: true });
        })()),
    };
  } catch (err) {
    await server?.stop().catch(() => {});
    await rm(sockDir, { recursive: true, force: true });
    throw err;
  }
}

async function readAllocation(nbd: NbdClient): Promise<BlockExtent[]> {
  if (!nbd.contexts.has(BASE_ALLOCATION)) {
    throw new LocalImageError("NBD_NO_ALLOCATION", "the NBD server did not agree to base:allocation");
  }
  if (nbd.size === 0) return [];
  // The client repeats BLOCK_STATUS until the whole range is covered.
  return (await nbd.blockStatus(0, nbd.size)).get(BASE_ALLOCATION) ?? [];
}

/** Read a local range into `target` (reused memory when the range is aligned for the server). */
export async function readLocal(nbd: NbdClient, offset: number, target: Buffer): Promise<Buffer> {
  const min = nbd.minBlockSize;
  if (offset % min === 0 && target.length % min === 0) {
    await nbd.readInto(offset, target);
    return target;
  }
  return nbd.read(offset, target.length);
}

/**
 * The block digests of a local image's guest view: imageio's `checksum?algorithm=sha256` for
 * the same content. Zero ranges are not read.
 */
export async function digestLocalImage(o: {
  image: string;
  format?: ImageFormat;
  readers?: number;
  signal?: AbortSignal;
}): Promise<BlockDigests & { checksum: string; dataBytes: number }> {
  const { controller, dispose } = linkedAbort(o.signal);
  const signal = controller.signal;
  let firstError: unknown;
  const format = o.format ?? (await detectFormat(o.image, signal));
  const img = await openLocalImage({ image: o.image, format, signal });
  let hasher: BlockHasherPool | undefined;
  try {
    const segments = uploadSegments(await img.allocation(), { diskIsZero: true });
    const plan = planTransfer(segments, { blockSize: BLOCK_SIZE, pieceSize: PIECE_SIZE });
    const digests = new DigestBuilder(img.size, BLOCK_SIZE);
    let hashBlocks = 0;
    plan.blocks.forEach((a, i) => {
      if (a === BlockAction.zero) digests.setZero(i);
      else hashBlocks++;
    });
    hasher = hasherFor(hashBlocks, BLOCK_SIZE);
    const pool = hasher;
    const buffers: Buffer[] = [];
    await runPool(
      plan.items,
      o.readers ?? 4,
      async (item, _s, worker) => {
        const buffer = (buffers[worker] ??= sharedBuffer(PIECE_SIZE));
        const fetched = [];
        for (const f of item.fetches) {
          const target = buffer.subarray(f.offset - item.offset, f.offset - item.offset + f.length);
          fetched.push({ offset: f.offset, data: await readLocal(img.nbd, f.offset, target) });
        }
        await hashItemBlocks(item, fetched, plan.blocks, digests, undefined, { pool, memory: buffer });
      },
      signal,
      (err) => {
        firstError ??= err;
        controller.abort(err);
      },
    );
    if (firstError) throw firstError;
    signal.throwIfAborted();
    const d = digests.finish();
    return { ...d, checksum: checksumHex(d), dataBytes: plan.copyBytes };
  } catch (err) {
    firstError ??= err;
    throw abortReason(firstError, o.signal);
  } finally {
    dispose();
    await hasher?.close();
    await img.close();
  }
}
