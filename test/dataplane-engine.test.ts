/**
 * The data plane end to end through the lab ENGINE's REST API (no hand-made tickets): a full and
 * then an incremental backup of a lab VM disk (POST backups → ready → download transfer with the
 * backup id → dataplane download → finalize) give qcow2 layers that qemu-img compare finds
 * identical to the lab's point-in-time images, with the checksum imageio answers for the same
 * transfer; an upload of that chain into a new engine disk gives an identical disk.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openImageio, type Extent } from "../adapters/imageio/mod.ts";
import {
  createDisk,
  createEngineClient,
  finalizeTransfer,
  openTransfer,
  withBackup,
  type EngineClient,
  type ImageTransfer,
} from "../adapters/ovirt/mod.ts";
import { qemuImg } from "../adapters/qemu/mod.ts";
import { digestLocalImage, download, upload, type DownloadResult } from "../dataplane/mod.ts";
import { FAST_TIMINGS, startTestLab, type TestLab } from "../lab/test-support.ts";

const MiB = 1024 * 1024;
const KiB = 1024;
const SIZE = 96 * MiB;
const fast = { intervalMs: 50, timeoutMs: 30_000 } as const;

let t: TestLab;
let engine: EngineClient;
let work: string;
let vmId: string;
let diskId: string;
let full: { layer: string; checkpointId: string; result: DownloadResult } | undefined;
let incr: { layer: string; result: DownloadResult } | undefined;

/** What imageio says about the transfer, asked on the transfer's own URL while it is open. */
async function imageioView(transfer: ImageTransfer, context: "zero" | "dirty"): Promise<{ checksum: string; blockSize: number; extents: Extent[] }> {
  const io = await openImageio(transfer.transfer_url!, { caPem: t.prd.caPem, proxyUrl: transfer.proxy_url, maxConnections: 1 });
  try {
    const extents = await io.extents(context);
    const sum = await io.checksum({ algorithm: "sha256", blockSize: 4 * MiB });
    expect(sum.algorithm).toBe("sha256");
    return { checksum: sum.checksum, blockSize: sum.block_size, extents };
  } finally {
    await io.close();
  }
}

async function compare(a: { path: string; format: "qcow2" | "raw" }, b: { path: string; format: "qcow2" | "raw" }) {
  return qemuImg.compare(a.path, b.path, { formatA: a.format, formatB: b.format });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ferry-dataplane-engine-"));
  t = await startTestLab({ timings: FAST_TIMINGS });
  engine = createEngineClient({
    url: t.prd.url,
    user: t.prd.user,
    password: t.prd.password,
    caPem: t.prd.caPem,
    pollIntervalMs: 50,
    correlationId: "dataplane-engine-test",
  });
  const vm = await t.prd.control.createVm({
    name: "dp01",
    status: "up",
    disks: [{ alias: "dp01_os", size: SIZE, format: "cow", backup: "incremental" }],
  });
  vmId = vm.id;
  diskId = vm.disks[0]!.id;
  // ~4.5 MiB of guest data: a block start, a run across the 12 MiB block boundary, a pattern, the last MiB.
  await t.prd.control.writeGuestData(diskId, { offset: 0, length: MiB, seed: 11 });
  await t.prd.control.writeGuestData(diskId, { offset: 11 * MiB, length: 2 * MiB, seed: 12 });
  await t.prd.control.writeGuestData(diskId, { offset: 40 * MiB, length: 512 * KiB, pattern: 0x5a });
  await t.prd.control.writeGuestData(diskId, { offset: SIZE - MiB, length: MiB, seed: 13 });
});

afterAll(async () => {
  await engine?.close();
  await t?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("dataplane through the lab engine", () => {
  it("dataplane engine - full backup download: layer identical to the point-in-time image, checksum equals imageio's", async () => {
    const layer = join(work, "full.qcow2");
    const backupId = randomUUID();
    const { result, backup } = await withBackup(
      engine,
      vmId,
      { diskIds: [diskId], id: backupId, description: "dataplane engine test full" },
      async ({ backup, disks }) => {
        expect(backup.phase).toBe("ready");
        expect(disks.find((d) => d.id === diskId)?.backup_mode).toBe("full");
        const transfer = await openTransfer(engine, { direction: "download", diskId, backupId: backup.id }, fast);
        try {
          expect(transfer.phase).toBe("transferring");
          const res = await download({ transferUrl: transfer.transfer_url!, caPem: t.prd.caPem, output: layer, incremental: false, connections: 4 });
          const imageio = await imageioView(transfer, "zero");
          const pit = await t.prd.control.exportImage(diskId, join(work, "full-pit.raw"), { format: "raw", atBackup: backup.id });
          return { res, imageio, pit };
        } finally {
          await finalizeTransfer(engine, transfer, fast);
        }
      },
      fast,
    );
    expect(backup.phase).toBe("succeeded");
    expect(backup.to_checkpoint_id).toBeTruthy();
    const { res, imageio, pit } = result;

    expect(pit.source).toBe("backup");
    expect(pit.virtualSize).toBe(SIZE);
    expect(res.virtualSize).toBe(SIZE);
    const cmp = await compare({ path: layer, format: "qcow2" }, { path: pit.path, format: "raw" });
    expect(cmp, cmp.detail).toMatchObject({ identical: true });

    expect(imageio.blockSize).toBe(4 * MiB);
    expect(res.checksum).toBe(imageio.checksum);
    // The layer on disk, not just the bytes that went past: hash it again from the file.
    expect((await digestLocalImage({ image: layer, format: "qcow2" })).checksum).toBe(imageio.checksum);
    // A full download moves the data extents only (not the 96 MiB of zeroes).
    const data = imageio.extents.filter((e) => !e.zero).reduce((n, e) => n + e.length, 0);
    expect(res.bytes).toBeGreaterThanOrEqual(4.5 * MiB);
    expect(res.bytes).toBeLessThanOrEqual(data);
    expect(data).toBeLessThan(SIZE / 4);
    const info = await qemuImg.info(layer, { format: "qcow2" });
    expect(info.format).toBe("qcow2");
    expect(info.backingFilename).toBeUndefined();

    full = { layer, checkpointId: backup.to_checkpoint_id!, result: res };
  });

  it("dataplane engine - incremental backup from the checkpoint: layer on the full is identical, checksum equals imageio's", async () => {
    expect(full).toBeDefined();
    const f = full!;
    // Overwrite data with zeroes (part of a run, a whole pattern), add new data, overwrite a block start.
    await t.prd.control.writeGuestData(diskId, { offset: 11 * MiB + 512 * KiB, length: MiB, zero: true });
    await t.prd.control.writeGuestData(diskId, { offset: 40 * MiB, length: 512 * KiB, zero: true });
    await t.prd.control.writeGuestData(diskId, { offset: 60 * MiB + 64 * KiB, length: 300 * KiB, seed: 21 });
    await t.prd.control.writeGuestData(diskId, { offset: 0, length: 64 * KiB, pattern: 0xff });

    // The full layer no longer matches the disk: the comparison below can fail.
    const now = await t.prd.control.exportImage(diskId, join(work, "now.raw"), { format: "raw" });
    expect((await compare({ path: f.layer, format: "qcow2" }, { path: now.path, format: "raw" })).identical).toBe(false);

    const layer = join(work, "incr.qcow2");
    const { result, backup } = await withBackup(
      engine,
      vmId,
      { diskIds: [diskId], fromCheckpointId: f.checkpointId, description: "dataplane engine test incremental" },
      async ({ backup, disks }) => {
        expect(backup.from_checkpoint_id).toBe(f.checkpointId);
        const mode = disks.find((d) => d.id === diskId)?.backup_mode;
        expect(mode).toBe("incremental");
        const transfer = await openTransfer(engine, { direction: "download", diskId, backupId: backup.id }, fast);
        try {
          const res = await download({
            transferUrl: transfer.transfer_url!,
            caPem: t.prd.caPem,
            output: layer,
            backing: { path: f.layer },
            incremental: mode === "incremental",
            previousDigests: { blockSize: 4 * MiB, virtualSize: f.result.virtualSize, digests: f.result.digests },
          });
          const imageio = await imageioView(transfer, "dirty");
          const pit = await t.prd.control.exportImage(diskId, join(work, "incr-pit.raw"), { format: "raw", atBackup: backup.id });
          return { res, imageio, pit };
        } finally {
          await finalizeTransfer(engine, transfer, fast);
        }
      },
      fast,
    );
    expect(backup.phase).toBe("succeeded");
    const { res, imageio, pit } = result;

    const cmp = await compare({ path: layer, format: "qcow2" }, { path: pit.path, format: "raw" });
    expect(cmp, cmp.detail).toMatchObject({ identical: true });
    expect(res.checksum).toBe(imageio.checksum);
    expect(res.checksum).not.toBe(f.result.checksum);
    expect((await digestLocalImage({ image: layer, format: "qcow2" })).checksum).toBe(imageio.checksum);

    // Incremental: only dirty extents moved; the zeroed ones went as zeroes, not data.
    const dirty = imageio.extents.filter((e) => e.dirty);
    const dirtyBytes = dirty.reduce((n, e) => n + e.length, 0);
    expect(dirtyBytes).toBeGreaterThanOrEqual(MiB + 512 * KiB + 300 * KiB + 64 * KiB);
    expect(dirtyBytes).toBeLessThan(SIZE / 8);
    expect(res.bytes + res.zeroBytes).toBeLessThanOrEqual(dirtyBytes);
    expect(res.zeroBytes).toBeGreaterThanOrEqual(512 * KiB);
    expect(dirty.some((e) => e.zero && e.start <= 40 * MiB && 40 * MiB + 512 * KiB <= e.start + e.length)).toBe(true);

    const chain = await qemuImg.info(layer, { format: "qcow2", backingChain: true });
    expect(chain.map((i) => i.filename)).toEqual([layer, f.layer]);
    expect(chain[0]!.backingFormat).toBe("qcow2");
    expect((await stat(layer)).size).toBeLessThan((await stat(f.layer)).size);

    incr = { layer, result: res };
  });

  it("dataplane engine - upload of the chain into a new engine disk gives an identical disk", async () => {
    expect(full && incr).toBeTruthy();
    const top = incr!.layer;
    const source = await engine.disks.get(diskId);
    const sdId = source.storage_domains?.[0]?.id;
    expect(sdId).toBeTruthy();

    const disk = await createDisk(
      engine,
      { name: "dp01_restored", provisionedSize: SIZE, format: "cow", sparse: true, backup: "incremental", storageDomain: { id: sdId! } },
      fast,
    );
    expect(disk.status).toBe("ok");
    expect(disk.provisioned_size).toBe(SIZE);
    const transfer = await openTransfer(engine, { direction: "upload", diskId: disk.id }, fast);
    let sent;
    try {
      sent = await upload({ image: top, format: "qcow2", transferUrl: transfer.transfer_url!, caPem: t.prd.caPem, diskIsZero: true });
    } catch (err) {
      await engine.imageTransfers.cancel(transfer.id).catch(() => undefined);
      throw err;
    }
    const outcome = await finalizeTransfer(engine, transfer, fast);
    expect(outcome.phase).toBe("finished_success");
    expect((await engine.disks.get(disk.id)).status).toBe("ok");

    expect(sent.virtualSize).toBe(SIZE);
    expect(sent.checksum).toBe(incr!.result.checksum);
    const restored = await t.prd.control.exportImage(disk.id, join(work, "restored.raw"), { format: "raw" });
    expect(restored.virtualSize).toBe(SIZE);
    const cmp = await compare({ path: top, format: "qcow2" }, { path: restored.path, format: "raw" });
    expect(cmp, cmp.detail).toMatchObject({ identical: true });
    // The older point differs from the restored disk: the comparison can tell them apart.
    expect((await compare({ path: full!.layer, format: "qcow2" }, { path: restored.path, format: "raw" })).identical).toBe(false);
    expect((await digestLocalImage({ image: restored.path, format: "raw" })).checksum).toBe(incr!.result.checksum);
  });
});
