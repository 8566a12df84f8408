/**
 * Upload (restore): a local qcow2 chain (or raw image) → an imageio transfer URL (architecture §6,
 * ovirt-api.md 7.10, 8.2). qemu-nbd exposes the merged guest view read-only; its allocation
 * (BLOCK_STATUS base:allocation) decides what is sent: data ranges as parallel PUTs with
 * flush=n, zero ranges as PATCH zero (skipped when the target disk is new and known zero), one
 * flush at the end. The per-block sha256 digests are computed from the bytes sent.
 */
import { openImageio, withRetry, type ImageioClient } from "../adapters/imageio/mod.ts";
import type { ImageFormat } from "../adapters/qemu/mod.ts";
import { PermanentError } from "../contracts/errors.ts";
import { abortReason, linkedAbort } from "./abort.ts";
import { BLOCK_SIZE, DigestBuilder, checksumHex } from "./blkhash.ts";
import { DEFAULT_CONNECTIONS } from "./download.ts";
import { hasherFor, type BlockHasherPool } from "./hash-pool.ts";
import { hashItemBlocks, type Fetched } from "./item-hash.ts";
import { detectFormat, openLocalImage, readLocal, type LocalImage } from "./local-image.ts";
import { BlockAction, PIECE_SIZE, planTransfer, restrictSegments, uploadSegments } from "./plan.ts";
import { runPool, runStagedPool } from "./pool.ts";
import { throttledProgress, type ProgressCallback } from "./progress.ts";

export interface UploadParams {
  /** The top layer of a qcow2 chain (the backing chain is merged) or a raw image. */
  image: string;
  /** Default: read from the image header (fine for Ferry's own store). */
  format?: ImageFormat;
  transferUrl: string;
  caPem?: string;
  /** Parallel PUTs; capped by the server's max_writers. Default 4. */
  connections?: number;
  /** The target disk is new and reads as zeroes: zero ranges need not be sent. */
  diskIsZero?: boolean;
  /**
   * Write only these byte ranges (their data, or zeroes where the image reads as zero) and leave
   * the rest of the target as it is: refreshing a copy in place with what changed. No local
   * checksum is computed then (`checksum` is empty): verify the target with imageio's.
   */
  only?: readonly { offset: number; length: number }[];
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
  pieceSize?: number;
  /** Block-hashing threads (hash-pool.ts); 0 hashes on this thread. Default: 1 (2 with 4+ cores). */
  hashThreads?: number;
}

export interface UploadResult {
  /** Bytes of data sent with PUT. */
  bytes: number;
  /** Bytes zeroed with PATCH zero (0 when diskIsZero). */
  zeroBytes: number;
  seconds: number;
  virtualSize: number;
  blockSize: number;
  digests: Buffer;
  checksum: string;
  connections: number;
}

export class UploadError extends PermanentError {}

/**
 * Window buffers beyond one per connection. A buffer being filled from the local image is not
 * being sent, so without spares fewer than `connections` PUTs are in flight. Measured here (2 GiB
 * of data, 4 connections): two spares took the upload from 0.63-0.71 to 0.71-0.99 of the plain-PUT
 * ceiling. Memory: (connections + 2) × piece size, 24 MiB at the defaults (4 MiB pieces).
 */
export const UPLOAD_EXTRA_BUFFERS = 2;

export async function upload(p: UploadParams): Promise<UploadResult> {
  const started = performance.now();
  const { controller, dispose } = linkedAbort(p.signal);
  const signal = controller.signal;
  let firstError: unknown;
  const fail = (err: unknown) => {
    firstError ??= err;
    if (!signal.aborted) controller.abort(err);
  };
  let client: ImageioClient | undefined;
  let img: LocalImage | undefined;
  let hasher: BlockHasherPool | undefined;
  try {
    const format = p.format ?? (await detectFormat(p.image, signal));
    client = await openImageio(p.transferUrl, { caPem: p.caPem, maxConnections: p.connections ?? DEFAULT_CONNECTIONS, signal });
    const options = await client.options();
    const connections = client.writers;
    if (connections === 0) throw new UploadError("UPLOAD_TICKET_READ_ONLY", "the transfer does not allow writes");
    const io = client;
    img = await openLocalImage({ image: p.image, format, signal });
    if (options.features.includes("extents")) {
      const remote = await withRetry(() => io.extents("zero"), { signal });
      const remoteSize = remote.length ? remote.at(-1)!.start + remote.at(-1)!.length : 0;
      if (img.size > remoteSize) {
        throw new UploadError("UPLOAD_TARGET_TOO_SMALL", `the image is ${img.size} bytes, the target disk only ${remoteSize}`, {
          imageSize: img.size,
          targetSize: remoteSize,
        });
      }
    }
    const all = uploadSegments(await img.allocation(), { diskIsZero: !!p.diskIsZero && !p.only });
    const segments = p.only ? restrictSegments(all, p.only) : all;
    const plan = planTransfer(segments, { blockSize: BLOCK_SIZE, pieceSize: p.pieceSize ?? PIECE_SIZE, hash: !p.only });
    const digests = new DigestBuilder(img.size, BLOCK_SIZE);
    let hashBlocks = 0;
    plan.blocks.forEach((a, i) => {
      if (a === BlockAction.zero) digests.setZero(i);
      else hashBlocks++;
    });
    hasher = hasherFor(hashBlocks, BLOCK_SIZE, p.hashThreads);
    const pool = hasher;

    const local = img;
    // Without the zero feature the client PUTs zeroes itself (ovirt-api.md 7.10).
    await runPool(plan.zeroRuns, connections, (r) => withRetry(() => io.zero(r.offset, r.length), { signal }), signal, fail);
    const progress = throttledProgress(plan.copyBytes, p.onProgress);
    if (!firstError) {
      const pieceSize = p.pieceSize ?? PIECE_SIZE;
      await runStagedPool(
        plan.items,
        { workers: connections, buffers: connections + UPLOAD_EXTRA_BUFFERS, bufferSize: pieceSize },
        async (item, buffer) => {
          const fetched: Fetched[] = [];
          for (const f of item.fetches) {
            const target = buffer.subarray(f.offset - item.offset, f.offset - item.offset + f.length);
            fetched.push({ offset: f.offset, data: await readLocal(local.nbd, f.offset, target) });
          }
          return fetched;
        },
        async (item, buffer, fetched) => {
          const puts: Promise<void>[] = [];
          try {
            for (const f of fetched) {
              // The coalesced range is sent whole: its gaps are zeroes, so writing them is harmless.
              const put = withRetry(() => io.write(f.offset, f.data), { signal });
              put.catch(() => {});
              puts.push(put);
            }
            // Hash while the PUTs are on the wire; the buffer returns to the pool only after both.
            await hashItemBlocks(item, fetched, plan.blocks, digests, undefined, { pool, memory: buffer });
          } catch (err) {
            await Promise.allSettled(puts);
            throw err;
          }
          await Promise.all(puts);
          progress.add(item.copyBytes);
        },
        signal,
        fail,
      );
    }
    if (firstError) throw firstError;
    signal.throwIfAborted();
    await withRetry(() => io.flush(), { signal });
    progress.finish();
    const d = digests.finish();
    return {
      bytes: plan.copyBytes,
      zeroBytes: plan.zeroBytes,
      seconds: (performance.now() - started) / 1000,
      virtualSize: img.size,
      blockSize: BLOCK_SIZE,
      digests: d.digests,
      checksum: p.only ? "" : checksumHex(d),
      connections,
    };
  } catch (err) {
    fail(err);
    throw abortReason(firstError, p.signal);
  } finally {
    dispose();
    await hasher?.close();
    await img?.close().catch(() => {});
    await client?.close().catch(() => {});
  }
}
