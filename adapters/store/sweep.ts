/**
 * Startup scan of the store: temp files left by a crash (`.tmp-<uuid>` from the store, the
 * dataplane's `.<name>.part-<hex>`, `<name>.tmp-<pid>-<t>` from blkhash) older than a threshold
 * are removed; layer files no manifest names (a backup that died between placing a layer and
 * recording its restore point) are reported, and removed only when asked.
 */
import { lstat, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { isSegment, MANIFEST_FILE, parseLayerPath, type ChainRecord } from "../../domain/chain/mod.ts";
import { isTempName, referencedFiles } from "./orphans.ts";
import type { StorePaths } from "./paths.ts";

export interface SweepOptions {
  /** Only files older than this are touched. Default 6 hours (a long download keeps its temp file fresh). */
  olderThanMs?: number;
  now?: Date;
  /** Also delete unreferenced layer files older than the threshold. Default false: report only. */
  removeOrphans?: boolean;
}

export interface SweepReport {
  /** Store-relative paths of removed temp files. */
  removedTemp: string[];
  /** Layer files no restore point (or pending retention) references. */
  orphans: string[];
  removedOrphans: string[];
}

export { isTempName };

export async function sweepStore(
  paths: StorePaths,
  readManifest: (vmName: string) => Promise<ChainRecord | undefined>,
  o: SweepOptions = {},
): Promise<SweepReport> {
  const report: SweepReport = { removedTemp: [], orphans: [], removedOrphans: [] };
  const cutoff = (o.now ?? new Date()).getTime() - (o.olderThanMs ?? 6 * 3_600_000);
  const old = async (abs: string) => (await lstat(abs)).mtimeMs < cutoff;
  for (const vm of await dirs(paths.root)) {
    if (!isSegment(vm)) continue;
    let record: ChainRecord | undefined;
    let manifestOk = true;
    try {
      record = await readManifest(vm);
    } catch {
      manifestOk = false; // a broken manifest: leave its layers alone, it needs a human
    }
    const known = referencedFiles(record);
    const vmAbs = join(paths.root, vm);
    for (const sub of ["", ...(await dirs(vmAbs))]) {
      const dirAbs = join(vmAbs, sub);
      for (const name of await files(dirAbs)) {
        const abs = join(dirAbs, name);
        const rel = sub ? `${vm}/${sub}/${name}` : `${vm}/${name}`;
        if (isTempName(name)) {
          if (await old(abs)) {
            await rm(abs, { force: true });
            report.removedTemp.push(rel);
          }
          continue;
        }
        if (!sub || name === MANIFEST_FILE || !manifestOk || !parseLayerPath(rel) || known.has(rel)) continue;
        report.orphans.push(rel);
        if (o.removeOrphans && (await old(abs))) {
          await rm(abs, { force: true });
          report.removedOrphans.push(rel);
        }
      }
    }
  }
  return report;
}

async function dirs(abs: string): Promise<string[]> {
  try {
    return (await readdir(abs, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

async function files(abs: string): Promise<string[]> {
  try {
    return (await readdir(abs, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}
