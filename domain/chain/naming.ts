/**
 * File names of the store layout (architecture.md §5), shared by the writer (backup), the
 * retention planner and the reader. All paths here are store-relative and use '/'.
 *
 *   <vm-name>/<disk-id>/<time>.<checkpoint>.full.qcow2
 *   <vm-name>/<disk-id>/<time>.<checkpoint>.incremental.qcow2
 *   <vm-name>/ovf/<checkpoint>.ovf
 *   <vm-name>/blockhashes/<checkpoint>.<disk-id>
 *
 * `<checkpoint>` is the engine checkpoint id, or the restore point id when the backup has no
 * checkpoint (raw disks only, snapshot-based fallback). `<time>` is compact UTC
 * (20250131T020000Z): a ':' in a backing file name would make qemu parse it as a protocol.
 */
import type { LayerKind } from "./schema.ts";
import { ChainError } from "./errors.ts";

export const MANIFEST_FILE = "restore-points.json";
export const OVF_DIR = "ovf";
export const DIGESTS_DIR = "blockhashes";
export const RESTORE_LOGS_DIR = "restore-logs";

/** One path segment: what contracts/fields.ts `vmRef` allows. */
const SEGMENT = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,255}$/;
const LAYER_FILE = /^(\d{8}T\d{6}Z)\.([A-Za-z0-9._-]+)\.(full|incremental)\.qcow2$/;

export function isSegment(value: string): boolean {
  return SEGMENT.test(value);
}

/** Throws a ChainError naming `what` unless `value` is a safe single path segment. */
export function assertSegment(what: string, value: string): string {
  if (typeof value !== "string" || !SEGMENT.test(value)) {
    const shown = JSON.stringify(String(value).slice(0, 80));
    throw new ChainError(
      "STORE_BAD_NAME",
      `${what} ${shown} is not allowed: use 1-255 characters of A-Z a-z 0-9 . _ - (no '/', not '.' or '..')`,
      { what },
    );
  }
  return value;
}

/** 2025-01-31T02:00:00.123Z → 20250131T020000Z (UTC, seconds). */
export function compactTime(time: string | Date): string {
  const d = typeof time === "string" ? new Date(time) : time;
  if (Number.isNaN(d.getTime())) throw new ChainError("CHAIN_BAD_TIME", `not a time: ${String(time).slice(0, 40)}`);
  return d.toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
}

/** The key that names a restore point's files: its checkpoint id, else its own id. */
export function pointFileKey(point: { id: string; checkpointId?: string | undefined }): string {
  return point.checkpointId ?? point.id;
}

export function layerFileName(time: string | Date, key: string, kind: LayerKind): string {
  assertSegment("checkpoint", key);
  return `${compactTime(time)}.${key}.${kind}.qcow2`;
}

export function layerPath(vmName: string, diskId: string, time: string | Date, key: string, kind: LayerKind): string {
  return `${assertSegment("VM name", vmName)}/${assertSegment("disk id", diskId)}/${layerFileName(time, key, kind)}`;
}

export function digestsPath(vmName: string, key: string, diskId: string): string {
  assertSegment("VM name", vmName);
  assertSegment("disk id", diskId);
  return `${vmName}/${DIGESTS_DIR}/${assertSegment("checkpoint", key)}.${diskId}`;
}

export function ovfPath(vmName: string, key: string): string {
  return `${assertSegment("VM name", vmName)}/${OVF_DIR}/${assertSegment("checkpoint", key)}.ovf`;
}

export interface ParsedLayerPath {
  vmName: string;
  diskId: string;
  file: string;
  time: string;
  key: string;
  kind: LayerKind;
}

/** Parse `<vm>/<disk>/<time>.<key>.<kind>.qcow2`; undefined when it does not follow the layout. */
export function parseLayerPath(path: string): ParsedLayerPath | undefined {
  const parts = path.split("/");
  if (parts.length !== 3) return undefined;
  const [vmName, diskId, file] = parts as [string, string, string];
  if (!isSegment(vmName) || !isSegment(diskId) || !isSegment(file)) return undefined;
  const m = LAYER_FILE.exec(file);
  if (!m) return undefined;
  return { vmName, diskId, file, time: m[1]!, key: m[2]!, kind: m[3] as LayerKind };
}

/** The last segment of a store-relative path. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
