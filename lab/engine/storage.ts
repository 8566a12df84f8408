import { randomUUID } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { qemuImg, startQemuNbd, type ImageFormat, type QemuNbdServer } from "../../adapters/qemu/mod.ts";
import type { LabDisk, Volume } from "./model.ts";

const run = promisify(execFile);

/**
 * The files behind the lab's disks. A disk is a chain of volumes (base first, active last), like
 * a vdsm image on a file domain. Checkpoints are persistent qcow2 bitmaps named by checkpoint id.
 *
 * Bitmap rule (what vdsm does for snapshots): when a new volume is put on top, it gets an empty
 * copy of every bitmap of the volume below, so a checkpoint's full history is the union of that
 * bitmap over the chain. Merging a volume down merges each of its bitmaps into the lower volume
 * before `qemu-img commit`. Exports with a bitmap build that union in a throw-away overlay
 * (`qemu-img bitmap --merge` from every volume), as vdsm's NBD server does for a chain.
 */
export class DiskStorage {
  private readonly locks = new Map<string, Promise<unknown>>();
  private sockDir: string | undefined;

  private readonly root: string;
  constructor(root: string) {
    this.root = root;
  }

  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    // Unix socket paths are limited to ~107 bytes, so sockets live in a short temp dir.
    this.sockDir = await mkdtemp(join(tmpdir(), "flab-"));
  }

  async close(): Promise<void> {
    if (this.sockDir) await rm(this.sockDir, { recursive: true, force: true });
  }

  socketPath(name: string): string {
    if (!this.sockDir) throw new Error("storage not initialised");
    return join(this.sockDir, `${name.slice(0, 36)}.sock`);
  }

  /** Run `fn` with the disk's files to itself (guest writes, freezes, merges do not interleave). */
  withDisk<T>(diskId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(diskId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(diskId, settled);
    void settled.then(() => {
      if (this.locks.get(diskId) === settled) this.locks.delete(diskId);
    });
    return next;
  }

  diskDir(disk: Pick<LabDisk, "id" | "storageDomainId">): string {
    return join(this.root, "images", disk.storageDomainId, disk.id);
  }

  pitPath(backupId: string, diskId: string): string {
    return join(this.root, "point-in-time", backupId, `${diskId}.qcow2`);
  }

  private qcowOptions(disk: LabDisk): Record<string, string> {
    return { compat: disk.qcowVersion === "qcow2_v2" ? "0.10" : "1.1" };
  }

  /** Bitmaps can live only in qcow2 v3 volumes of cow disks. */
  canHoldBitmaps(disk: LabDisk): boolean {
    return disk.format === "cow" && disk.qcowVersion === "qcow2_v3";
  }

  /** Create the base volume of a new disk. */
  async createBase(disk: LabDisk, volumeId: string = randomUUID()): Promise<Volume> {
    const dir = this.diskDir(disk);
    await mkdir(dir, { recursive: true });
    const vol: Volume = { id: volumeId, path: join(dir, volumeId), format: disk.format === "cow" ? "qcow2" : "raw" };
    if (vol.format === "qcow2") {
      await qemuImg.create({ path: vol.path, format: "qcow2", size: disk.provisionedSize, options: this.qcowOptions(disk) });
    } else {
      await qemuImg.create({
        path: vol.path,
        format: "raw",
        size: disk.provisionedSize,
        ...(disk.sparse ? {} : { options: { preallocation: "falloc" } }),
      });
    }
    return vol;
  }

  async bitmapNames(vol: Volume): Promise<string[]> {
    if (vol.format !== "qcow2") return [];
    const info = await qemuImg.info(vol.path, { format: "qcow2", forceShare: true });
    return info.bitmaps.map((b) => b.name);
  }

  /** Put a new empty volume on top of the disk (a snapshot), carrying bitmaps forward. Caller holds the disk lock. */
  async addTopVolume(disk: LabDisk, extraBitmaps: string[] = []): Promise<Volume> {
    const below = disk.volumes[disk.volumes.length - 1]!;
    const vol: Volume = { id: randomUUID(), path: join(this.diskDir(disk), ""), format: "qcow2" };
    vol.path = join(this.diskDir(disk), vol.id);
    await qemuImg.create({
      path: vol.path,
      format: "qcow2",
      backing: { path: below.path, format: below.format },
      options: this.qcowOptions(disk),
    });
    if (this.canHoldBitmaps(disk)) {
      const names = [...new Set([...(await this.bitmapNames(below)), ...extraBitmaps])];
      for (const name of names) await qemuImg.bitmap(vol.path, { op: "add", name });
    }
    disk.volumes.push(vol);
    return vol;
  }

  /**
   * Merge the volume just above `lowerId` into it (snapshot removal / hybrid backup finalize).
   * The merged volume takes the upper one's place in the chain. Caller holds the disk lock.
   * Returns the id of the removed upper volume.
   */
  async mergeIntoLower(disk: LabDisk, lowerId: string): Promise<string | undefined> {
    const i = disk.volumes.findIndex((v) => v.id === lowerId);
    const lower = disk.volumes[i];
    const upper = disk.volumes[i + 1];
    if (!lower || !upper) return undefined;
    if (lower.format === "qcow2" && upper.format === "qcow2" && this.canHoldBitmaps(disk)) {
      const lowerNames = new Set(await this.bitmapNames(lower));
      for (const name of await this.bitmapNames(upper)) {
        if (!lowerNames.has(name)) await qemuImg.bitmap(lower.path, { op: "add", name });
        await qemuImg.bitmap(lower.path, { op: "merge", name, source: name, sourceImage: { path: upper.path, format: "qcow2" } });
      }
    }
    await qemuImg.commit(upper.path, { format: "qcow2" });
    const above = disk.volumes[i + 2];
    if (above) {
      // The volume above now backs onto the merged one (same data, so an unsafe rebase is exact).
      await qemuImg.rebase(above.path, { format: "qcow2", backing: { path: lower.path, format: lower.format }, unsafe: true });
    }
    await rm(upper.path, { force: true });
    disk.volumes.splice(i + 1, 1);
    return upper.id;
  }

  /** Drop every volume above `volumeId` and put a fresh empty active volume on it (snapshot restore). */
  async revertTo(disk: LabDisk, volumeId: string): Promise<void> {
    const i = disk.volumes.findIndex((v) => v.id === volumeId);
    if (i < 0) throw new Error(`volume ${volumeId} not in disk ${disk.id}`);
    for (const v of disk.volumes.splice(i + 1)) await rm(v.path, { force: true });
    await this.addTopVolume(disk);
  }

  async addBitmap(vol: Volume, name: string): Promise<void> {
    await qemuImg.bitmap(vol.path, { op: "add", name });
  }

  /** Remove a checkpoint's bitmap from every volume that has it. */
  async removeBitmap(disk: LabDisk, name: string): Promise<number> {
    let removed = 0;
    for (const v of disk.volumes) {
      if ((await this.bitmapNames(v)).includes(name)) {
        await qemuImg.bitmap(v.path, { op: "remove", name });
        removed++;
      }
    }
    return removed;
  }

  /** Chain from the base up to and including `volumeId`. */
  chainTo(disk: LabDisk, volumeId: string): Volume[] {
    const i = disk.volumes.findIndex((v) => v.id === volumeId);
    if (i < 0) throw new Error(`volume ${volumeId} not in disk ${disk.id}`);
    return disk.volumes.slice(0, i + 1);
  }

  /**
   * Serve the disk as of `volumeId` over NBD. With `bitmap`, build a throw-away overlay holding the
   * union of that bitmap over the chain (fails like vdsm's "Bitmap does not exist" when no volume
   * has it). `raw: true` serves the volume file's bytes (the FILE backend).
   */
  async serve(
    disk: LabDisk,
    volumeId: string,
    o: { name: string; readOnly: boolean; bitmap?: string; shallow?: boolean; fileBytes?: boolean },
  ): Promise<{ server: QemuNbdServer; temp: string[] }> {
    const chain = this.chainTo(disk, volumeId);
    const top = chain[chain.length - 1]!;
    const socket = this.socketPath(o.name);
    const temp: string[] = [];
    let image = top.path;
    let format: ImageFormat = top.format;
    if (o.fileBytes) {
      format = "raw";
    } else if (o.bitmap) {
      const holders: Volume[] = [];
      for (const v of chain) if ((await this.bitmapNames(v)).includes(o.bitmap)) holders.push(v);
      if (!holders.length) throw new BitmapMissingError(o.bitmap, top.path);
      const overlay = join(this.diskDir(disk), `export-${o.name}.qcow2`);
      await qemuImg.create({ path: overlay, format: "qcow2", backing: { path: top.path, format: top.format } });
      temp.push(overlay);
      await qemuImg.bitmap(overlay, { op: "add", name: o.bitmap });
      for (const v of holders) {
        await qemuImg.bitmap(overlay, { op: "merge", name: o.bitmap, source: o.bitmap, sourceImage: { path: v.path, format: "qcow2" } });
      }
      image = overlay;
      format = "qcow2";
    }
    try {
      const server = await startQemuNbd({
        image,
        format,
        socket,
        readOnly: o.readOnly,
        exportName: o.name,
        ...(o.bitmap && !o.fileBytes ? { bitmap: o.bitmap } : {}),
        // A shallow export reports unallocated areas as holes (vdsm exports one volume so).
        ...(o.shallow && format === "qcow2" ? { backingChain: false, allocationDepth: true } : {}),
        ...(o.readOnly ? {} : { discard: true, detectZeroes: "unmap" as const }),
        cache: "writeback",
      });
      return { server, temp };
    } catch (err) {
      await Promise.all(temp.map((p) => rm(p, { force: true })));
      throw err;
    }
  }

  /**
   * Guest writes into the active volume: a byte pattern, seeded pseudo-random data, or zeroes.
   * Done with qemu-io (it keeps persistent bitmaps dirty like a guest would), in 64 MiB pieces so
   * a multi-GiB write needs no multi-GiB buffer. `onData` sees every byte written, in order.
   */
  async write(
    disk: LabDisk,
    o: { offset: number; length: number; pattern?: number; seed?: number; zero?: boolean },
    onData?: (chunk: Buffer) => void,
  ): Promise<void> {
    const active = disk.volumes[disk.volumes.length - 1]!;
    const base = ["-t", "writeback", "-f", active.format];
    const piece = 64 * 1024 * 1024;
    const stream = o.seed !== undefined ? new SeededStream(o.seed) : undefined;
    const file = join(this.diskDir(disk), `write-${randomUUID()}.bin`);
    try {
      for (let done = 0; done < o.length; done += piece) {
        const n = Math.min(piece, o.length - done);
        const at = o.offset + done;
        let cmd: string;
        if (o.zero) {
          cmd = `write -q -z ${at} ${n}`;
          onData?.(Buffer.alloc(n));
        } else if (stream) {
          const data = stream.next(n);
          await writeFile(file, data);
          onData?.(data);
          cmd = `write -q -s ${file} ${at} ${n}`;
        } else {
          const pattern = o.pattern ?? 0xab;
          onData?.(Buffer.alloc(n, pattern));
          cmd = `write -q -P ${pattern} ${at} ${n}`;
        }
        await run("qemu-io", [...base, "-c", cmd, active.path], { maxBuffer: 1024 * 1024 });
      }
    } finally {
      await rm(file, { force: true });
    }
  }

  /** Write the disk as of `volumeId` (or an existing point-in-time copy) to `out` as raw or qcow2. */
  async exportTo(src: { path: string; format: ImageFormat }, out: string, format: ImageFormat): Promise<void> {
    await rm(out, { force: true });
    await qemuImg.convert(src, { path: out, format }, { forceShare: true });
  }

  async removeDiskFiles(disk: LabDisk): Promise<void> {
    await rm(this.diskDir(disk), { recursive: true, force: true });
  }
}

export class BitmapMissingError extends Error {
  readonly code = "BITMAP_DOES_NOT_EXIST";
  constructor(bitmap: string, path: string) {
    // vdsm's BitmapDoesNotExist (code 947).
    super(`Bitmap does not exist in ${path}: ${bitmap}`);
  }
}

/**
 * Deterministic bytes from a seed (xorshift128): tests regenerate what was written with
 * `seededBytes(seed, length)`. Not cryptographic; fast enough for GiBs. A stream produces the
 * same bytes in pieces.
 */
export class SeededStream {
  private x: number;
  private y = 362436069;
  private z = 521288629;
  private w = 88675123;
  private spare: Buffer = Buffer.alloc(0);

  constructor(seed: number) {
    this.x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  }

  next(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    let off = 0;
    if (this.spare.length) {
      off = Math.min(this.spare.length, length);
      this.spare.copy(out, 0, 0, off);
      this.spare = this.spare.subarray(off);
    }
    const need = length - off;
    if (need > 0) {
      const words = new Uint32Array(Math.ceil(need / 4));
      let { x, y, z, w } = this;
      for (let i = 0; i < words.length; i++) {
        const t = x ^ (x << 11);
        x = y;
        y = z;
        z = w;
        w = (w ^ (w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
        words[i] = w;
      }
      this.x = x;
      this.y = y;
      this.z = z;
      this.w = w;
      const bytes = Buffer.from(words.buffer);
      bytes.copy(out, off, 0, need);
      this.spare = bytes.subarray(need);
    }
    return out;
  }
}

export function seededBytes(seed: number, length: number): Buffer {
  return new SeededStream(seed).next(length);
}
