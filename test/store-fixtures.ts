/**
 * Test helper for the store and retention tests (not a test file): a simulated VM whose disks are
 * raw "guest" images changed by qemu-io writes, backed up nightly into real qcow2 layers through
 * the store's own write path (prepareLayer → qemu-img → placeLayer → digests, OVF →
 * recordRestorePoint). For every restore point a raw copy of the guest is kept, so a test can
 * `qemu-img compare` what the store holds with what the guest was.
 */
import { copyFile, mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { checksumHex, digestBuffer, encodeDigests } from "../dataplane/blkhash.ts";
import { layerFile, pointFileKey, tipLayer, type ChainRecord, type DiskLayer } from "../domain/chain/mod.ts";
import type { Store } from "../adapters/store/mod.ts";
import { expect } from "vitest";

export const BLOCK = 256 * 1024;

export interface SimDisk {
  id: string;
  size: number;
  guest: string;
}

export interface Write {
  offset: number;
  length: number;
  pattern: number;
}

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export async function qemuIo(format: "raw" | "qcow2", path: string, writes: Write[]): Promise<void> {
  if (!writes.length) return;
  const cmds = writes.flatMap((w) => ["-c", `write -P ${w.pattern} ${w.offset} ${w.length}`]);
  await execa("qemu-io", ["-f", format, ...cmds, path], { stdout: "ignore" });
}

export async function compareRaw(top: string, raw: string): Promise<{ identical: boolean; detail: string }> {
  const r = await execa("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", top, raw], { reject: false });
  return { identical: r.exitCode === 0, detail: `${r.stdout}${r.stderr}`.trim() };
}

export class SimVm {
  readonly disks = new Map<string, SimDisk>();
  /** point id → disk id → raw reference copy */
  readonly refs = new Map<string, Map<string, string>>();
  private readonly rand: () => number;

  readonly store: Store;
  readonly dir: string;
  readonly vm: { id: string; name: string };
  constructor(
    store: Store,
    dir: string,
    vm: { id: string; name: string },
    seed = 1,
  ) {
    this.store = store;
    this.dir = dir;
    this.vm = vm;
    this.rand = rng(seed);
  }

  async addDisk(id: string, size: number): Promise<void> {
    const guest = join(this.dir, `guest-${id}.raw`);
    await execa("qemu-img", ["create", "-q", "-f", "raw", guest, String(size)]);
    this.disks.set(id, { id, size, guest });
  }

  randomWrites(size: number, n = 3): Write[] {
    return Array.from({ length: n }, () => {
      const length = (1 + Math.floor(this.rand() * 32)) * 4096;
      const offset = Math.floor(this.rand() * ((size - length) / 4096)) * 4096;
      return { offset, length, pattern: 1 + Math.floor(this.rand() * 254) };
    });
  }

  /**
   * One nightly backup at `time`: every disk gets a few guest writes, then a full layer (when
   * `full`, or for a disk with no layer yet) or an incremental one holding exactly those writes.
   */
  async backup(time: Date, o: { full?: boolean; id?: string; checkpointId?: string; reason?: string } = {}): Promise<ChainRecord> {
    const record = await this.store.readManifest(this.vm.name);
    const id = o.id ?? `rp-${time.toISOString().replace(/[-:.]/g, "")}`;
    const checkpointId = o.checkpointId ?? `cp-${id.slice(3)}`;
    const key = pointFileKey({ id, checkpointId });
    const refs = new Map<string, string>();
    const layers: DiskLayer[] = [];
    await mkdir(join(this.dir, "refs"), { recursive: true });
    for (const d of this.disks.values()) {
      const writes = this.randomWrites(d.size);
      await qemuIo("raw", d.guest, writes);
      const parent = record ? tipLayer(record, d.id) : undefined;
      const kind = o.full || !parent ? "full" : "incremental";
      const prep = await this.store.prepareLayer({
        vmName: this.vm.name,
        diskId: d.id,
        time: time.toISOString(),
        key,
        kind,
        ...(kind === "incremental" ? { parentLayer: parent!.layer } : {}),
      });
      if (kind === "full") {
        await execa("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", d.guest, prep.tempPath]);
      } else {
        await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-b", prep.backing!.path, "-F", "qcow2", prep.tempPath]);
        await qemuIo("qcow2", prep.tempPath, writes);
      }
      const placed = await this.store.placeLayer({ tempPath: prep.tempPath, relPath: prep.relPath, ...(kind === "incremental" ? { parentLayer: parent!.layer } : {}) });
      const digests = digestBuffer(await readFile(d.guest), BLOCK);
      const digestsFile = await this.store.saveDigests(this.vm.name, key, d.id, encodeDigests(digests));
      const ref = join(this.dir, "refs", `${id}.${d.id}.raw`);
      await copyFile(d.guest, ref);
      refs.set(d.id, ref);
      layers.push({
        diskId: d.id,
        alias: `${this.vm.name}_${d.id}`,
        virtualSize: d.size,
        layer: prep.relPath,
        ...(kind === "incremental" ? { parentLayer: parent!.layer } : {}),
        kind,
        size: placed.size,
        checksum: { algorithm: "sha256", blockSize: BLOCK, value: checksumHex(digests) },
        digestsFile,
        ...(kind === "full" && parent ? { reason: o.reason ?? "full requested" } : {}),
      });
    }
    const ovfFile = await this.store.saveOvf(this.vm.name, key, `<ovf vm="${this.vm.name}" point="${id}"/>`);
    const prev = record?.restorePoints.at(-1);
    const incremental = layers.some((l) => l.kind === "incremental");
    this.refs.set(id, refs);
    return this.store.recordRestorePoint(this.vm, {
      id,
      time: time.toISOString(),
      checkpointId,
      ...(incremental && prev ? { parentId: prev.id } : {}),
      ...(!incremental ? { reason: o.reason ?? (prev ? "weekly full" : "first backup") } : {}),
      ovfFile,
      disks: layers,
    });
  }

  /** Every restore point of the record reads, through its chain with plain qemu-img, exactly as the guest was. */
  async mismatches(record: ChainRecord): Promise<string[]> {
    const bad: string[] = [];
    for (const p of record.restorePoints) {
      for (const d of p.disks) {
        const ref = this.refs.get(p.id)?.get(d.diskId);
        if (!ref) {
          bad.push(`${p.id}/${d.diskId}: no reference`);
          continue;
        }
        const r = await compareRaw(this.store.absolute(d.layer), ref);
        if (!r.identical) bad.push(`${p.id}/${d.diskId} (${layerFile(d.layer)}): ${r.detail}`);
      }
    }
    return bad;
  }
}

/**
 * Flip one byte of guest data that `top` reads from the layer `depth` levels down (1 = top
 * itself), as bit rot would; returns the guest offset hit.
 */
export async function rotVisibleByte(top: string, layerFile: string, depth: number): Promise<number> {
  const map = JSON.parse((await execa("qemu-img", ["map", "--output=json", "-f", "qcow2", top])).stdout) as { start: number; depth: number; data: boolean; offset?: number }[];
  const hit = map.find((e) => e.depth === depth - 1 && e.data && e.offset !== undefined);
  if (!hit) throw new Error(`no data of depth ${depth} visible through ${top}`);
  const { open } = await import("node:fs/promises");
  const fh = await open(layerFile, "r+");
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, hit.offset!);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, hit.offset!);
  } finally {
    await fh.close();
  }
  return hit.start;
}

// --- Shared by the nightly retention tests ---------------------------------------------------

/** The rule's definition, independently: newest point of each of the N most recent UTC days / Monday-weeks that have points. */
export function expectedDailyWeekly(points: { id: string; time: Date }[], keepDaily: number, keepWeekly: number): string[] {
  const newestFirst = [...points].sort((a, b) => b.time.getTime() - a.time.getTime());
  const keep = new Set<string>([newestFirst[0]!.id]);
  const dayOf = (t: Date) => t.toISOString().slice(0, 10);
  const mondayOf = (t: Date) => {
    const d = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()));
    d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
    return dayOf(d);
  };
  for (const [n, period] of [[keepDaily, dayOf], [keepWeekly, mondayOf]] as const) {
    const seen: string[] = [];
    for (const p of newestFirst) {
      const k = period(p.time);
      if (seen.includes(k)) continue;
      if (seen.length === n) break;
      seen.push(k);
      keep.add(p.id);
    }
  }
  return points.filter((p) => keep.has(p.id)).map((p) => p.id);
}

export async function filesIn(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name).slice(root.length + 1));
  }
  return out.sort();
}

export function referencedFiles(r: ChainRecord): string[] {
  return [
    `${r.vm.name}/restore-points.json`,
    ...r.restorePoints.flatMap((p) => [...p.disks.flatMap((d) => [d.layer, d.digestsFile]), ...(p.ovfFile ? [p.ovfFile] : [])]),
  ].sort();
}

/** Plain qemu-img reads every kept chain and finds it clean. */
export async function plainQemuReads(store: Store, r: ChainRecord): Promise<void> {
  for (const p of r.restorePoints) {
    for (const d of p.disks) {
      const top = store.absolute(d.layer);
      const info = JSON.parse((await execa("qemu-img", ["info", "--backing-chain", "--output=json", "-f", "qcow2", top])).stdout) as { "backing-filename"?: string }[];
      expect(info.length).toBeGreaterThanOrEqual(1);
      for (const layer of info) expect(layer["backing-filename"] ?? "").not.toMatch(/^\//);
      await execa("qemu-img", ["check", "-q", "-f", "qcow2", top]);
    }
  }
}

