/**
 * Restore without an engine: write one restore point's disks, flattened, plus its OVF into a
 * local directory (`ferry restore <vm> --to-dir DIR`).
 *
 *   qcow2 / raw   one standalone image per disk (`qemu-img convert` of the point's top layer,
 *                 which reads through the backing chain; sparse, not compressed) + `<vm>.ovf`
 *   ova           one tar `<vm>.ova` laid out as oVirt's own OVA export (see "OVA layout" below)
 *
 * Every file is written under a hidden temporary name in DIR (`.<name>.part-<hex>`, which the
 * store sweep also recognises) and given its name only when every output is written and checked,
 * so an interrupted or failed export leaves nothing behind. Each exported disk is then read back
 * through qemu-nbd and its block checksum (imageio's, dataplane/blkhash.ts, in the block size the
 * restore point recorded) compared with the one recorded at backup time.
 *
 * The store is only read (no lock file is written, so a read-only backup volume works): the chain
 * is resolved and inspected as untrusted input by the store (`resolvePoint`) and read with
 * force-share, as `ferry verify` does; a retention run that changes the point meanwhile shows up
 * as a checksum mismatch, reported as such.
 *
 * OVA layout, as oVirt writes and reads it (oVirt/ovirt-engine, read for this file):
 *   - packaging/ansible-runner-service-project/project/roles/ovirt-ova-pack/files/pack_ova.py:
 *     the OVF is the first member, named `vm.ovf` (`<entity type>.ovf`); then each disk as a
 *     qcow2 image (`qemu-img convert -O qcow2` into the tar) named by its image (volume) id, no
 *     extension; members are padded to 512-byte blocks; since cluster level 4.7 a member named
 *     `pad` before each disk puts the disk's data on a 4 KiB boundary; the tar ends with two
 *     zero blocks.
 *   - .../ovirt-ova-extract/files/extract_ova.py: reads headers in sequence (name = bytes
 *     0-100, size = octal or GNU base-256 with a 0x80 first byte), skips names ending in `ovf`
 *     or `dat` (rounded to 512) and `pad`, and treats anything else as a disk whose name is an
 *     image id. It seeks exactly `size` after a disk, so a disk's size must be a multiple of 512,
 *     and it knows no PAX or GNU long-name members.
 *   - .../ovirt-ova-query/files/query_ova.py: the OVF is the first `*.ovf` member.
 *   - backend/.../utils/ovf/OvfOvaWriter.java `writeFile`: `<File ovf:href="<image id>"
 *     ovf:id="<image id>" ovf:size="<bytes>">`; OvfOvaReader.java `readDisk`: a disk's
 *     `ovf:fileRef` names a File by `ovf:id`, and the File's `ovf:href` is the disk's remote path.
 * So here: `vm.ovf` first, each disk a qcow2 member named by its image id (from the OVF's
 * References; the disk id when the OVF does not list it), `pad` members for 4 KiB alignment,
 * ustar headers (tar-stream; sizes of 8 GiB and more in GNU base-256, which extract_ova reads),
 * names < 100 bytes so no PAX header is ever written, two zero blocks at the end. The OVF's
 * References are rewritten: each exported disk's File gets `ovf:href` = its member name and
 * `ovf:size` = the member's size; disks not exported (`--disk`) lose their File, Disk and
 * hardware Item, so every href names a member.
 * Note: the OVF Ferry keeps is the engine's own dialect (`all_content=true`); oVirt's "Import VM
 * from OVA" parses the OVA dialect (`ovf_as_ova=true`, OvfOvaReader: VirtualSystem/DiskSection).
 * The OVA is a faithful container for plain tools and for ImportVmFromConfiguration; an engine
 * OVA import needs the OVA-dialect OVF saved at backup time.
 */
import { randomBytes } from "node:crypto";
import { createReadStream, rmSync } from "node:fs";
import { lstat, mkdir, open, readFile, rename, rm, stat, truncate } from "node:fs/promises";
import { basename, join } from "node:path";
import tar, { type Pack } from "tar-stream";

type Sink = ReturnType<Pack["entry"]>;
import { qemuImg as defaultQemuImg, type ImageFormat, type QemuImg } from "../adapters/qemu/mod.ts";
import { parseStoredDigests, type ResolvedDisk, type ResolvedPoint, type Store } from "../adapters/store/mod.ts";
import { PermanentError } from "../contracts/errors.ts";
import { assertSegment, isSegment, type LayerKind } from "../domain/chain/mod.ts";
import { abortReason, linkedAbort } from "./abort.ts";
import { BlockAction, PIECE_SIZE, planTransfer, uploadSegments } from "./plan.ts";
import { DigestBuilder, checksumHex, DIGEST_SIZE } from "./blkhash.ts";
import { hashItemBlocks } from "./item-hash.ts";
import { OutputExistsError, placeNoClobber, tempPathFor } from "./layer-file.ts";
import { openLocalImage, readLocal } from "./local-image.ts";
import { runPool } from "./pool.ts";

export type ExportFormat = "qcow2" | "raw" | "ova";
export const EXPORT_FORMATS: readonly ExportFormat[] = ["qcow2", "raw", "ova"];

/** Bad export input (unknown disk, a point without OVF for an OVA); nothing was written. */
export class ExportError extends PermanentError {}

export interface ExportProgress {
  phase: "convert" | "pack" | "verify";
  diskId: string;
  alias: string;
  bytes: number;
  total: number;
}

export interface ExportParams {
  store: Store;
  vm: string;
  /** Friendly number, 'latest' or a restore point / checkpoint id (default 'latest'). */
  ref?: number | string;
  /** Absolute output directory; created (0700) when missing. */
  dir: string;
  format?: ExportFormat;
  /** Only these disks, by alias (or disk id). Default: every disk of the point. */
  disks?: readonly string[];
  /** Replace existing output files. */
  force?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: ExportProgress) => void;
  qemuImg?: QemuImg;
  /** Parallel NBD readers for the checksum pass (default 4). */
  readers?: number;
}

export interface ExportedDisk {
  diskId: string;
  alias: string;
  /** The file written (qcow2/raw) or the OVA holding the disk. */
  path: string;
  /** For an OVA: the member's name inside the tar. */
  member?: string;
  /** Size of the file (or tar member) in bytes. */
  bytes: number;
  virtualSize: number;
  checksum: { algorithm: "sha256"; blockSize: number; expected: string; actual?: string };
  ok: boolean;
  /** Blocks that differ from the recorded digests (when the digest file could be read). */
  badBlocks?: number;
  problem?: string;
}

export interface ExportResult {
  vm: { id: string; name: string };
  point: { number: number; id: string; time: string; kind: LayerKind };
  format: ExportFormat;
  dir: string;
  /** The OVF written beside the disks (qcow2/raw), when the point has one. */
  ovf?: string;
  files: ExportedDisk[];
  ova?: { path: string; bytes: number; members: { name: string; offset: number; bytes: number }[] };
  ok: boolean;
  warnings: string[];
}

const TAR_BLOCK = 512;
const FS_BLOCK = 4096;
const OVA_OVF_MEMBER = "vm.ovf";
/** ustar names are at most 100 bytes; longer ones would need a PAX or GNU long-name member. */
const MAX_MEMBER_NAME = 99;

// ---------------------------------------------------------------------------------------------
// Names

/** A file name from a disk alias: [A-Za-z0-9._-] only, no leading dot, at most 200 characters. */
export function sanitizeName(alias: string): string {
  const s = alias
    .normalize("NFKD")
    .replace(/\p{M}+/gu, "")
    .replace(/[^A-Za-z0-9._-]+/g, "_")
    .replace(/^[._]+/, "")
    .replace(/_+$/, "")
    .slice(0, 200);
  return s && isSegment(s) ? s : "";
}

/** The disks to export: all, or those named by alias (or disk id). Unknown names → ExportError listing the disks. */
export function selectDisks(resolved: ResolvedPoint, wanted: readonly string[] | undefined): ResolvedDisk[] {
  if (!wanted?.length) return resolved.disks;
  const unknown = wanted.filter((w) => !resolved.disks.some((d) => d.disk.alias === w || d.disk.diskId === w));
  if (unknown.length) {
    const list = resolved.disks.map((d) => `${d.disk.alias || "(no alias)"} (${d.disk.diskId})`).join(", ");
    throw new ExportError(
      "EXPORT_UNKNOWN_DISK",
      `restore point #${resolved.number} of VM ${resolved.vm.name} has no disk ${unknown.map((u) => `'${u.slice(0, 80)}'`).join(", ")}; its disks: ${list}`,
      { unknown },
    );
  }
  return resolved.disks.filter((d) => wanted.includes(d.disk.alias) || wanted.includes(d.disk.diskId));
}

/** Output file names for the directory formats: `<alias>.<ext>` sanitized, made unique with the disk id. */
export function diskFileNames(disks: readonly ResolvedDisk[], ext: string): string[] {
  const base = disks.map((d) => sanitizeName(d.disk.alias) || d.disk.diskId);
  return base.map((b, i) => {
    const clash = base.some((o, j) => j !== i && o === b);
    return `${clash && b !== disks[i]!.disk.diskId ? `${b}-${disks[i]!.disk.diskId}` : b}.${ext}`;
  });
}

// ---------------------------------------------------------------------------------------------
// OVF (pure): find each disk's File, rewrite References for the OVA

interface Element {
  start: number;
  end: number;
  /** The start tag, `<File ...>` or `<File .../>`. */
  tag: string;
  text: string;
  attrs: Map<string, string>;
}

const unescapeXml = (s: string) =>
  s.replace(/&(#x[0-9a-fA-F]+|#\d+|lt|gt|amp|quot|apos);/g, (_m, e: string) => {
    if (e[0] === "#") return String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    return ({ lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" } as Record<string, string>)[e]!;
  });
const escapeXml = (s: string) => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");

/** Elements `<name ...>...</name>` or `<name .../>` (no nesting of the same name), start tags read quote-aware. */
function elements(xml: string, name: string): Element[] {
  const out: Element[] = [];
  const open = new RegExp(`<${name}(?=[\\s/>])((?:[^>"']|"[^"]*"|'[^']*')*?)(/?)>`, "g");
  for (let m = open.exec(xml); m; m = open.exec(xml)) {
    const start = m.index;
    let end = open.lastIndex;
    if (!m[2]) {
      const close = xml.indexOf(`</${name}>`, end);
      if (close < 0) continue;
      end = close + name.length + 3;
      open.lastIndex = end;
    }
    const attrs = new Map<string, string>();
    for (const a of m[1]!.matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) attrs.set(a[1]!, unescapeXml(a[2] ?? a[3] ?? ""));
    out.push({ start, end, tag: m[0], text: xml.slice(start, end), attrs });
  }
  return out;
}

function innerText(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m ? unescapeXml(m[1]!).trim() : undefined;
}

/** Set (or add) attributes on an element's start tag. */
function withAttrs(el: Element, set: Record<string, string>): string {
  let tag = el.tag;
  for (const [k, v] of Object.entries(set)) {
    const re = new RegExp(`(\\s${k.replace(/[.]/g, "\\.")}\\s*=\\s*)(?:"[^"]*"|'[^']*')`);
    if (re.test(tag)) tag = tag.replace(re, (_m, p: string) => `${p}"${escapeXml(v)}"`);
    else tag = tag.replace(/\s*(\/?)>$/, (_m, slash: string) => ` ${k}="${escapeXml(v)}"${slash}>`);
  }
  return tag + el.text.slice(el.tag.length);
}

export interface OvfFileRef {
  /** The File element's ovf:id (the image id), else the part of its href after the last '/'. */
  imageId: string;
  href: string;
}

/**
 * The References/File of disk `diskId`: in the engine's own dialect the File's href is
 * `<disk id>/<image id>`; in the OVA dialect a Disk with `ovf:diskId=<disk id>` names the File
 * by `ovf:fileRef` = its `ovf:id`.
 */
export function findDiskFile(ovf: string, diskId: string): OvfFileRef | undefined {
  const f = fileElementOf(elements(ovf, "File"), elements(ovf, "Disk"), diskId);
  if (!f) return undefined;
  const href = f.attrs.get("ovf:href") ?? "";
  return { href, imageId: f.attrs.get("ovf:id") || href.split("/").pop() || "" };
}

function fileElementOf(files: readonly Element[], diskEls: readonly Element[], diskId: string): Element | undefined {
  const native = files.find((f) => (f.attrs.get("ovf:href") ?? "").startsWith(`${diskId}/`));
  if (native) return native;
  const fileRef = diskEls.find((d) => d.attrs.get("ovf:diskId") === diskId)?.attrs.get("ovf:fileRef");
  return fileRef ? files.find((x) => x.attrs.get("ovf:id") === fileRef || x.attrs.get("ovf:href") === fileRef) : undefined;
}

/** A member name extract_ova.py treats as a disk: short, one segment, not `pad`, not ending in `ovf`/`dat`. */
function usableMemberName(name: string | undefined): name is string {
  if (!name || name.length > MAX_MEMBER_NAME || !isSegment(name)) return false;
  const lower = name.toLowerCase();
  return lower !== "pad" && !lower.endsWith("ovf") && !lower.endsWith("dat");
}

/** Member names for the OVA's disks: the image id from the OVF (as oVirt names them), else the disk id, else `disk<n>`. */
export function ovaMemberNames(ovf: string, diskIds: readonly string[]): string[] {
  const taken = new Set<string>([OVA_OVF_MEMBER, "pad"]);
  return diskIds.map((diskId, i) => {
    const candidates = [findDiskFile(ovf, diskId)?.imageId, diskId, `disk${i + 1}`, `disk${i + 1}-${randomBytes(4).toString("hex")}`];
    const name = candidates.find((c) => usableMemberName(c) && !taken.has(c))!;
    taken.add(name);
    return name;
  });
}

export interface OvaDiskEntry {
  diskId: string;
  member: string;
  bytes: number;
}

/**
 * The OVF as it goes into the OVA: each exported disk's File gets href = its member name and
 * size = the member's bytes (a File is added to References for a disk the OVF does not list);
 * every other File is removed together with its Disk element and its hardware Item.
 */
export function rewriteOvfForOva(ovf: string, disks: readonly OvaDiskEntry[]): { ovf: string; warnings: string[] } {
  const warnings: string[] = [];
  const files = elements(ovf, "File");
  const disksEls = elements(ovf, "Disk");
  const keep = new Map<Element, OvaDiskEntry>();
  const missing: OvaDiskEntry[] = [];
  for (const d of disks) {
    const el = fileElementOf(files, disksEls, d.diskId);
    if (el && !keep.has(el)) keep.set(el, d);
    else missing.push(d);
  }
  const removed = files.filter((f) => !keep.has(f));
  // Tokens naming a removed disk: its href, image id, and the ids its Disk elements carry.
  const tokens = new Set<string>();
  const dropDisks = new Set<Element>();
  for (const f of removed) {
    const href = f.attrs.get("ovf:href") ?? "";
    const id = f.attrs.get("ovf:id") ?? "";
    for (const t of [href, id]) if (t) tokens.add(t);
    for (const d of disksEls) {
      const fileRef = d.attrs.get("ovf:fileRef") ?? "";
      if ((fileRef && (fileRef === href || fileRef === id)) || (id && d.attrs.get("ovf:diskId") === id)) {
        dropDisks.add(d);
        const did = d.attrs.get("ovf:diskId");
        if (did) tokens.add(did);
      }
    }
  }
  const names = (t: string | undefined) => !!t && (tokens.has(t) || [...tokens].some((k) => t.endsWith(`/${k}`)));
  const dropItems = elements(ovf, "Item").filter((it) => {
    const type = innerText(it.text, "rasd:ResourceType");
    if (type !== undefined && type !== "17") return false;
    return names(innerText(it.text, "rasd:HostResource")) || (type === "17" && names(innerText(it.text, "rasd:InstanceId")));
  });

  const edits: { start: number; end: number; text: string }[] = [];
  for (const [el, d] of keep) edits.push({ start: el.start, end: el.end, text: withAttrs(el, { "ovf:href": d.member, "ovf:size": String(d.bytes) }) });
  for (const el of [...removed, ...dropDisks, ...dropItems]) edits.push({ start: el.start, end: el.end, text: "" });
  if (missing.length) {
    const added = missing.map((d) => `<File ovf:href="${escapeXml(d.member)}" ovf:id="${escapeXml(d.member)}" ovf:size="${d.bytes}"></File>`).join("");
    const close = ovf.indexOf("</References>");
    const empty = /<References\s*\/>/.exec(ovf);
    if (close >= 0) edits.push({ start: close, end: close, text: added });
    else if (empty) edits.push({ start: empty.index, end: empty.index + empty[0].length, text: `<References>${added}</References>` });
    for (const d of missing) {
      warnings.push(
        close >= 0 || empty
          ? `the OVF does not list disk ${d.diskId}; a File for member ${d.member} was added to its References`
          : `the OVF has no References; disk ${d.diskId} is in the OVA as ${d.member} but the OVF does not name it`,
      );
    }
  }
  if (removed.length) {
    warnings.push(`${removed.length} disk file${removed.length === 1 ? "" : "s"} not in this export removed from the OVF (with their Disk and device entries)`);
  }
  // Apply from the end so earlier offsets stay valid; nested removals (a File inside a removed range) are skipped.
  edits.sort((a, b) => b.start - a.start || b.end - a.end);
  let out = ovf;
  let floor = Number.POSITIVE_INFINITY;
  for (const e of edits) {
    if (e.end > floor) continue;
    out = out.slice(0, e.start) + e.text + out.slice(e.end);
    floor = e.start;
  }
  return { ovf: out, warnings };
}

/** Bytes an OVA member takes: one header block and its data rounded up to 512. */
export function tarEntrySize(bytes: number): number {
  return TAR_BLOCK + Math.ceil(bytes / TAR_BLOCK) * TAR_BLOCK;
}

/** Size of the `pad` member (data bytes) that puts the next member's data on a 4 KiB boundary, or undefined for none. */
export function padBefore(offset: number): number | undefined {
  const remainder = (offset + TAR_BLOCK) % FS_BLOCK;
  return remainder ? FS_BLOCK - remainder - TAR_BLOCK : undefined;
}

// ---------------------------------------------------------------------------------------------
// Checksum of an exported image (imageio's block checksum in the point's block size)

/** Block digests of a local image's guest view (qcow2, raw, or a qcow2 inside a tar via a json: spec). Zero ranges are not read. */
export async function digestImage(o: {
  image: string;
  format: ImageFormat;
  blockSize: number;
  readers?: number;
  signal?: AbortSignal;
  onBytes?: (done: number, total: number) => void;
}): Promise<{ virtualSize: number; digests: Buffer; checksum: string }> {
  const { controller, dispose } = linkedAbort(o.signal);
  const signal = controller.signal;
  let firstError: unknown;
  const img = await openLocalImage({ image: o.image, format: o.format, signal });
  try {
    const segments = uploadSegments(await img.allocation(), { diskIsZero: true });
    const pieceSize = Math.max(o.blockSize, Math.floor(PIECE_SIZE / o.blockSize) * o.blockSize);
    const plan = planTransfer(segments, { blockSize: o.blockSize, pieceSize });
    const digests = new DigestBuilder(img.size, o.blockSize);
    plan.blocks.forEach((a, i) => {
      if (a === BlockAction.zero) digests.setZero(i);
    });
    const buffers: Buffer[] = [];
    let done = 0;
    await runPool(
      plan.items,
      o.readers ?? 4,
      async (item, _s, worker) => {
        const buffer = (buffers[worker] ??= Buffer.allocUnsafe(pieceSize));
        const fetched = [];
        for (const f of item.fetches) {
          const target = buffer.subarray(f.offset - item.offset, f.offset - item.offset + f.length);
          fetched.push({ offset: f.offset, data: await readLocal(img.nbd, f.offset, target) });
        }
        await hashItemBlocks(item, fetched, plan.blocks, digests);
        done += item.copyBytes;
        o.onBytes?.(done, plan.copyBytes);
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
    return { virtualSize: img.size, digests: d.digests, checksum: checksumHex(d) };
  } catch (err) {
    firstError ??= err;
    throw abortReason(firstError, o.signal);
  } finally {
    dispose();
    await img.close();
  }
}

/** A qcow2 image stored at [offset, offset+size) of a tar, as qemu opens it (json: pseudo-protocol). */
export function tarMemberSpec(tarPath: string, offset: number, size: number): string {
  return `json:${JSON.stringify({ driver: "qcow2", file: { driver: "raw", offset, size, file: { driver: "file", filename: tarPath } } })}`;
}

// ---------------------------------------------------------------------------------------------
// The export

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Export one restore point to `dir`. Throws before writing anything for an unknown VM, point or
 * disk (StoreError / ChainError / ExportError) and for an existing output without `force`
 * (OutputExistsError). A checksum mismatch is not thrown: the disk is written and reported with
 * `ok: false`.
 */
export async function exportRestorePoint(p: ExportParams): Promise<ExportResult> {
  const format = p.format ?? "qcow2";
  if (!EXPORT_FORMATS.includes(format)) throw new ExportError("EXPORT_BAD_FORMAT", `format must be one of ${EXPORT_FORMATS.join(", ")}`);
  const vmName = assertSegment("VM name", p.vm);
  const qemu = p.qemuImg ?? defaultQemuImg;
  const signal = p.signal;
  signal?.throwIfAborted();

  const before = (await p.store.readManifest(vmName))?.updatedAt;
  const resolved = await p.store.resolvePoint(vmName, p.ref ?? "latest", signal ? { signal } : {});
  const disks = selectDisks(resolved, p.disks);
  const ovfText = resolved.point.ovfFile ? (await readFile(await p.store.paths.assertReal(resolved.point.ovfFile, "file"))).toString("utf8") : undefined;
  if (format === "ova" && ovfText === undefined) {
    throw new ExportError("EXPORT_NO_OVF", `restore point #${resolved.number} of VM ${vmName} has no OVF saved with it; an OVA needs one (use --format qcow2 or raw)`);
  }

  const dir = p.dir;
  const finals: string[] =
    format === "ova"
      ? [join(dir, `${vmName}.ova`)]
      : [...diskFileNames(disks, format).map((n) => join(dir, n)), ...(ovfText !== undefined ? [join(dir, `${vmName}.ovf`)] : [])];
  if (!p.force) for (const f of finals) if (await exists(f)) throw new OutputExistsError(f);

  const warnings: string[] = [];
  if (ovfText === undefined) warnings.push(`restore point #${resolved.number} has no OVF saved with it; only the disks are written`);

  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temps = new Set<string>();
  // Belt and braces: should the process die of an uncaught error before the finally below runs,
  // its temporary files still go (only SIGKILL can leave one behind).
  const onExit = () => {
    for (const t of temps) rmSync(t, { force: true });
  };
  process.on("exit", onExit);
  const temp = (final: string) => {
    const t = tempPathFor(final);
    temps.add(t);
    return t;
  };
  const progress = (phase: ExportProgress["phase"], d: ResolvedDisk, bytes: number, total: number) =>
    p.onProgress?.({ phase, diskId: d.disk.diskId, alias: d.disk.alias, bytes, total });
  const convert = async (d: ResolvedDisk, out: string, fmt: ImageFormat) => {
    // Created here, exclusively and 0600: qemu-img truncates and fills it, keeping the mode, so
    // guest data is never readable by others, not even half-written.
    await (await open(out, "wx", 0o600)).close();
    await qemu.convert({ path: d.top, format: "qcow2" }, { path: out, format: fmt }, {
      forceShare: true,
      onProgress: (pct) => progress("convert", d, Math.round((pct / 100) * d.disk.virtualSize), d.disk.virtualSize),
      ...(signal ? { signal } : {}),
    });
  };
  const check = async (d: ResolvedDisk, image: string, fmt: ImageFormat): Promise<Pick<ExportedDisk, "checksum" | "ok" | "badBlocks" | "problem">> => {
    const blockSize = d.disk.checksum.blockSize;
    const checksum: ExportedDisk["checksum"] = { algorithm: "sha256", blockSize, expected: d.disk.checksum.value };
    const got = await digestImage({
      image,
      format: fmt,
      blockSize,
      ...(p.readers ? { readers: p.readers } : {}),
      ...(signal ? { signal } : {}),
      onBytes: (done, total) => progress("verify", d, done, total),
    });
    checksum.actual = got.checksum;
    if (got.virtualSize !== d.disk.virtualSize) {
      return { checksum, ok: false, problem: `the exported image is ${got.virtualSize} bytes, the restore point recorded ${d.disk.virtualSize}` };
    }
    if (got.checksum === checksum.expected) return { checksum, ok: true };
    let badBlocks: number | undefined;
    const recorded = await p.store.readDigests(d.disk.digestsFile).catch(() => undefined);
    if (recorded) {
      try {
        const want = parseStoredDigests(recorded, d.disk.virtualSize, blockSize, d.disk.digestsFile);
        badBlocks = 0;
        for (let i = 0; i * DIGEST_SIZE < want.length; i++) {
          if (!want.subarray(i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE).equals(got.digests.subarray(i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE))) badBlocks++;
        }
      } catch {
        badBlocks = undefined;
      }
    }
    const raced = (await p.store.readManifest(vmName).catch(() => undefined))?.updatedAt !== before;
    const problem = raced
      ? "the checksum differs from the one recorded at backup time, and the restore point changed while it was exported (retention or a backup ran); export it again"
      : `the checksum differs from the one recorded at backup time${badBlocks !== undefined ? ` (${badBlocks} of ${Math.ceil(d.disk.virtualSize / blockSize)} blocks differ)` : ""}`;
    return { checksum, ok: false, problem, ...(badBlocks !== undefined ? { badBlocks } : {}) };
  };

  const result: ExportResult = {
    vm: resolved.vm,
    point: { number: resolved.number, id: resolved.point.id, time: resolved.point.time, kind: resolved.point.kind },
    format,
    dir,
    files: [],
    ok: false,
    warnings,
  };
  const placements: { temp: string; final: string }[] = [];
  try {
    if (format === "ova") {
      await exportOva({ p, resolved, disks, ovfText: ovfText!, final: finals[0]!, temp, temps, convert, check, progress, result, placements });
    } else {
      const names = finals.slice(0, disks.length);
      for (const [i, d] of disks.entries()) {
        const out = temp(names[i]!);
        await convert(d, out, format);
        await fsyncFile(out);
        const bytes = (await stat(out)).size;
        result.files.push({ diskId: d.disk.diskId, alias: d.disk.alias, path: names[i]!, bytes, virtualSize: d.disk.virtualSize, ...(await check(d, out, format)) });
        placements.push({ temp: out, final: names[i]! });
      }
      if (ovfText !== undefined) {
        const final = finals.at(-1)!;
        const out = temp(final);
        const fh = await open(out, "wx", 0o600);
        try {
          await fh.writeFile(ovfText);
          await fh.sync();
        } finally {
          await fh.close();
        }
        placements.push({ temp: out, final });
        result.ovf = final;
      }
    }
    // Everything is written and checked: name it (quick; not interrupted half-way).
    signal?.throwIfAborted();
    for (const { temp: t, final } of placements) {
      if (p.force) await rename(t, final);
      else await placeNoClobber(t, final);
      temps.delete(t);
    }
    await syncDir(dir);
  } finally {
    await Promise.all([...temps].map((t) => rm(t, { force: true })));
    temps.clear();
    process.off("exit", onExit);
  }
  result.ok = result.files.every((f) => f.ok);
  return result;
}

interface OvaContext {
  p: ExportParams;
  resolved: ResolvedPoint;
  disks: ResolvedDisk[];
  ovfText: string;
  final: string;
  temp: (final: string) => string;
  temps: Set<string>;
  convert: (d: ResolvedDisk, out: string, fmt: ImageFormat) => Promise<void>;
  check: (d: ResolvedDisk, image: string, fmt: ImageFormat) => Promise<Pick<ExportedDisk, "checksum" | "ok" | "badBlocks" | "problem">>;
  progress: (phase: ExportProgress["phase"], d: ResolvedDisk, bytes: number, total: number) => void;
  result: ExportResult;
  placements: { temp: string; final: string }[];
}

/**
 * Convert every disk to a temporary qcow2 (sizes must be known: the OVF goes first and names
 * them), write the tar (each temporary qcow2 removed as soon as it is in), then check each disk
 * where it lies inside the tar. Peak extra space: the OVA plus one disk.
 */
async function exportOva(c: OvaContext): Promise<void> {
  const { p, disks } = c;
  const signal = p.signal;
  const members = ovaMemberNames(c.ovfText, disks.map((d) => d.disk.diskId));
  const parts: { d: ResolvedDisk; member: string; file: string; bytes: number }[] = [];
  for (const [i, d] of disks.entries()) {
    const file = c.temp(join(p.dir, `${basename(c.final)}.${members[i]}`));
    await c.convert(d, file, "qcow2");
    // extract_ova.py seeks exactly `size` past a disk: keep every disk a whole number of 512-byte
    // blocks (qcow2 ignores bytes past its last cluster; qemu-img output is cluster-aligned anyway).
    let bytes = (await stat(file)).size;
    if (bytes % TAR_BLOCK) {
      bytes += TAR_BLOCK - (bytes % TAR_BLOCK);
      await truncate(file, bytes);
    }
    parts.push({ d, member: members[i]!, file, bytes });
  }
  const rewritten = rewriteOvfForOva(c.ovfText, parts.map((x) => ({ diskId: x.d.disk.diskId, member: x.member, bytes: x.bytes })));
  c.result.warnings.push(...rewritten.warnings);
  const ovf = Buffer.from(rewritten.ovf, "utf8");

  const ova = c.temp(c.final);
  const mtime = new Date(c.resolved.point.time);
  const layout: { name: string; offset: number; bytes: number }[] = [];
  const pack = tar.pack();
  const fh = await open(ova, "wx", 0o600);
  let failed: unknown;
  pack.on("error", () => {});
  const drain = (async () => {
    for await (const chunk of pack) await fh.write(chunk as Buffer);
  })();
  drain.catch(() => {});
  /** One entry: its writable and a promise settled when tar-stream has taken all of it. */
  const entry = (name: string, size: number) => {
    let w!: Sink;
    const done = new Promise<void>((resolve, reject) => {
      w = pack.entry({ name, size, mode: 0o644, mtime, uid: 0, gid: 0, type: "file" }, (err) => (err ? reject(err) : resolve()));
    });
    done.catch(() => {});
    // A destroyed pack destroys its entry too; the error reaches us through `done`, not as an unhandled 'error'.
    w.on("error", () => {});
    return { w, done };
  };
  const aborted = new Promise<never>((_r, reject) => {
    if (!signal) return;
    const fail = () => reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
  aborted.catch(() => {});
  const writeAll = async (w: Sink, chunks: AsyncIterable<Buffer>, onChunk: (n: number) => void) => {
    for await (const chunk of chunks) {
      signal?.throwIfAborted();
      if (!w.write(chunk)) await Promise.race([new Promise<void>((resolve) => w.once("drain", () => resolve())), aborted]);
      onChunk(chunk.length);
    }
  };
  try {
    let offset = 0;
    {
      const e = entry(OVA_OVF_MEMBER, ovf.length);
      e.w.end(ovf);
      await Promise.race([e.done, aborted]);
      layout.push({ name: OVA_OVF_MEMBER, offset: offset + TAR_BLOCK, bytes: ovf.length });
      offset += tarEntrySize(ovf.length);
    }
    for (const part of parts) {
      const pad = padBefore(offset);
      if (pad !== undefined) {
        const e = entry("pad", pad);
        e.w.end(Buffer.alloc(pad));
        await Promise.race([e.done, aborted]);
        offset += tarEntrySize(pad);
      }
      const e = entry(part.member, part.bytes);
      let copied = 0;
      await writeAll(e.w, createReadStream(part.file, { highWaterMark: 1 << 20 }), (n) => {
        copied += n;
        c.progress("pack", part.d, copied, part.bytes);
      });
      e.w.end(undefined);
      await Promise.race([e.done, aborted]);
      layout.push({ name: part.member, offset: offset + TAR_BLOCK, bytes: part.bytes });
      offset += tarEntrySize(part.bytes);
      await rm(part.file, { force: true });
      c.temps.delete(part.file);
    }
    pack.finalize();
    await drain;
    await fh.sync();
  } catch (err) {
    failed = err;
    pack.destroy();
    await drain.catch(() => {});
    throw signal?.aborted ? abortReason(err, signal) : err;
  } finally {
    await fh.close().catch(() => {});
    if (failed) await rm(ova, { force: true });
  }
  const total = (await stat(ova)).size;

  for (const part of parts) {
    const at = layout.find((l) => l.name === part.member)!;
    const verdict = await c.check(part.d, tarMemberSpec(ova, at.offset, part.bytes), "qcow2");
    c.result.files.push({
      diskId: part.d.disk.diskId,
      alias: part.d.disk.alias,
      path: c.final,
      member: part.member,
      bytes: part.bytes,
      virtualSize: part.d.disk.virtualSize,
      ...verdict,
    });
  }
  c.result.ova = { path: c.final, bytes: total, members: layout };
  c.placements.push({ temp: ova, final: c.final });
}
