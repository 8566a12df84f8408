/**
 * Orphan store files (issue 8 item 8): layers, block digests, OVFs and temp files in a VM folder
 * that no restore point references — what a run that failed for good (or a crash) left behind.
 * This module only finds them; the Store removes them under the VM folder lock, and the
 * reconciler (pipeline/reconcile.ts) decides when, under the VM lease, after a grace period, and
 * never for a VM with a live run. Unknown files (not of Ferry's layout) are never touched.
 */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { DIGESTS_DIR, isSegment, MANIFEST_FILE, OVF_DIR, parseLayerPath, RESTORE_LOGS_DIR, type ChainRecord } from "../../domain/chain/mod.ts";
import { TEMP_PREFIX } from "./fs-atomic.ts";
import type { StorePaths } from "./paths.ts";

const TEMP_PATTERNS = [/^\.tmp-/, /^\..+\.part-[0-9a-f]+$/, /\.tmp-\d+-[0-9a-z]+$/];

/** Temp names: the store's `.tmp-<uuid>`, the dataplane's `.<name>.part-<hex>`, blkhash's `<name>.tmp-<pid>-<t>`. */
export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX) || TEMP_PATTERNS.some((re) => re.test(name));
}

export type OrphanKind = "layer" | "digests" | "ovf" | "temp";

export interface OrphanFile {
  /** Store-relative path. */
  readonly path: string;
  readonly bytes: number;
  readonly kind: OrphanKind;
}

export interface OrphanOptions {
  /** Only files not modified for this long are orphans (a live download keeps its files fresh). */
  readonly olderThanMs: number;
  readonly now?: Date | undefined;
  /** Store-relative files a live run still needs (its incoming point): never orphans. */
  readonly keep?: ReadonlySet<string> | undefined;
}

/** Every store file a record needs: its points, a pending retention run's target, steps and cleanup, incoming points. */
export function referencedFiles(record: ChainRecord | undefined): Set<string> {
  const out = new Set<string>();
  if (!record) return out;
  const points = [...record.restorePoints, ...(record.pending?.target.restorePoints ?? []), ...(record.incoming ?? [])];
  for (const p of points) {
    if (p.ovfFile) out.add(p.ovfFile);
    for (const d of p.disks) {
      out.add(d.layer);
      out.add(d.digestsFile);
      if (d.parentLayer) out.add(d.parentLayer);
    }
  }
  // A retention run in flight owns what its steps name and what it will delete itself.
  for (const step of record.pending?.steps ?? []) for (const v of Object.values(step)) if (typeof v === "string" && v.includes("/")) out.add(v);
  for (const f of record.pending?.cleanup ?? []) out.add(f);
  return out;
}

/** VM folders of the store, with or without a manifest (a VM whose first backup failed has none). */
export async function vmFolders(paths: StorePaths): Promise<string[]> {
  const entries = await readdir(paths.root, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [];
    throw err;
  });
  return entries.filter((e) => e.isDirectory() && isSegment(e.name) && !e.name.startsWith(".") && e.name !== RESTORE_LOGS_DIR).map((e) => e.name).sort();
}

function kindOf(sub: string, name: string, rel: string): OrphanKind | undefined {
  if (isTempName(name)) return "temp";
  if (sub === OVF_DIR) return name.endsWith(".ovf") ? "ovf" : undefined;
  if (sub === DIGESTS_DIR) return "digests";
  return parseLayerPath(rel) ? "layer" : undefined;
}

/** The orphans of one VM folder, given its manifest as read under the folder lock. */
export async function findOrphans(paths: StorePaths, vmName: string, record: ChainRecord | undefined, o: OrphanOptions): Promise<OrphanFile[]> {
  const known = referencedFiles(record);
  for (const k of o.keep ?? []) known.add(k);
  const cutoff = (o.now ?? new Date()).getTime() - o.olderThanMs;
  const vmAbs = paths.vmDir(vmName);
  const out: OrphanFile[] = [];
  const subs = (await readdir(vmAbs, { withFileTypes: true })).filter((e) => e.isDirectory() && isSegment(e.name)).map((e) => e.name);
  for (const sub of ["", ...subs.sort()]) {
    const dirAbs = join(vmAbs, sub);
    for (const e of await readdir(dirAbs, { withFileTypes: true })) {
      if (!e.isFile()) continue; // symlinks and folders are never Ferry's files to remove
      const rel = sub ? `${vmName}/${sub}/${e.name}` : `${vmName}/${e.name}`;
      if (!sub && e.name === MANIFEST_FILE) continue;
      const kind = kindOf(sub, e.name, rel);
      // At the folder's top only temp files (a manifest write's) are Ferry's.
      if (!kind || (!sub && kind !== "temp") || known.has(rel)) continue;
      const st = await lstat(join(dirAbs, e.name)).catch(() => undefined);
      if (!st?.isFile() || st.mtimeMs >= cutoff) continue;
      out.push({ path: rel, bytes: st.size, kind });
    }
  }
  return out;
}
