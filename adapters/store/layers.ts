/**
 * Reading qcow2 layers from the store as untrusted input. A layer must be a regular qcow2 file
 * (no symlink, no external data file) whose backing file, if any, is a bare layer file name in
 * the same disk folder that the manifest knows, in qcow2 format. Each file is opened alone
 * (`qemu-img info` without --backing-chain does not open the backing file), so a backing name
 * like `/etc/shadow`, `../x`, `nbd://...` or `json:{...}` is rejected before qemu ever follows it,
 * and a loop is caught by the walk.
 */
import { stat } from "node:fs/promises";
import type { QemuImg } from "../qemu/mod.ts";
import { isSegment, parseLayerPath } from "../../domain/chain/mod.ts";
import { StoreError } from "./errors.ts";
import type { StorePaths } from "./paths.ts";

export interface LayerFacts {
  /** Store-relative path. */
  path: string;
  /** Size of the file in bytes. */
  size: number;
  virtualSize: number;
  /** Store-relative path of the backing layer, if any. */
  backing?: string;
}

function hostile(rel: string, why: string): StoreError {
  return new StoreError("STORE_HOSTILE_IMAGE", `layer ${rel} ${why}; refusing to use it`, { path: rel });
}

export async function inspectLayer(paths: StorePaths, qemu: QemuImg, rel: string, signal?: AbortSignal): Promise<LayerFacts> {
  const name = parseLayerPath(rel);
  if (!name) throw new StoreError("STORE_BAD_PATH", `${rel.slice(0, 120)} is not a layer path <vm>/<disk>/<time>.<checkpoint>.<kind>.qcow2`);
  const abs = await paths.assertReal(rel, "file");
  const info = await qemu.info(abs, { format: "qcow2", untrusted: true, ...(signal ? { signal } : {}) });
  if (info.format !== "qcow2") throw hostile(rel, `is ${info.format}, not qcow2`);
  const data = info.raw["format-specific"]?.data as Record<string, unknown> | undefined;
  if (data && data["data-file"] !== undefined) throw hostile(rel, "uses an external data file");
  if (info.corrupt) throw hostile(rel, "is marked corrupt by qemu");
  const facts: LayerFacts = { path: rel, size: (await stat(abs)).size, virtualSize: info.virtualSize };
  const b = info.backingFilename;
  if (b !== undefined && b !== "") {
    if (!isSegment(b) || !parseLayerPath(`${name.vmName}/${name.diskId}/${b}`)) {
      throw hostile(rel, `has backing file ${JSON.stringify(b.slice(0, 120))}, which is not a layer file name in its own folder`);
    }
    if (info.backingFormat !== "qcow2") throw hostile(rel, `has a backing file of format ${info.backingFormat ?? "unspecified"} (must be qcow2)`);
    facts.backing = `${name.vmName}/${name.diskId}/${b}`;
  }
  return facts;
}

/**
 * The layers of a chain from `top` down to its base, each inspected. `known` is the set of
 * layer paths the manifest records: a backing file outside it is refused.
 */
export async function inspectChain(
  paths: StorePaths,
  qemu: QemuImg,
  top: string,
  known: ReadonlySet<string>,
  signal?: AbortSignal,
): Promise<LayerFacts[]> {
  const out: LayerFacts[] = [];
  const seen = new Set<string>();
  for (let rel: string | undefined = top; rel !== undefined; ) {
    if (seen.has(rel)) throw hostile(top, `has a backing chain that loops at ${rel}`);
    if (!known.has(rel)) throw hostile(out.at(-1)?.path ?? top, `builds on ${rel}, which the manifest does not record`);
    seen.add(rel);
    const facts = await inspectLayer(paths, qemu, rel, signal);
    out.push(facts);
    rel = facts.backing;
  }
  return out;
}
