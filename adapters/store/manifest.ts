/**
 * `<store>/<vm-name>/restore-points.json`: the VM's chain record (domain/chain schema) plus, while
 * a retention run is in flight, its write-ahead intent (`pending`). Read as untrusted input.
 */
import { readFile } from "node:fs/promises";
import { MANIFEST_FILE, parseChainJson, type ChainRecord } from "../../domain/chain/mod.ts";
import { StoreError } from "./errors.ts";
import { writeFileAtomic } from "./fs-atomic.ts";
import type { StorePaths } from "./paths.ts";

/** A manifest larger than this is not one Ferry wrote (thousands of restore points fit in 16 MiB). */
export const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;

export async function readManifestFile(paths: StorePaths, vmName: string): Promise<ChainRecord | undefined> {
  const rel = `${vmName}/${MANIFEST_FILE}`;
  let abs: string;
  try {
    abs = await paths.assertReal(rel, "file");
  } catch (err) {
    if (err instanceof StoreError && err.code === "STORE_FILE_MISSING") return undefined;
    throw err;
  }
  const text = await readFile(abs);
  if (text.length > MAX_MANIFEST_BYTES) {
    throw new StoreError("STORE_MANIFEST_INVALID", `${rel} is ${text.length} bytes, larger than any manifest Ferry writes`, { path: rel });
  }
  let record: ChainRecord;
  try {
    record = parseChainJson(text.toString("utf8"), rel);
  } catch (err) {
    throw new StoreError("STORE_MANIFEST_INVALID", (err as Error).message, { path: rel }, { cause: err });
  }
  if (record.vm.name !== vmName) {
    throw new StoreError("STORE_MANIFEST_INVALID", `${rel} describes VM ${record.vm.name}, not ${vmName} (folder renamed or copied?)`, { path: rel });
  }
  return record;
}

/** The store keeps complete restore points only: `incoming` (disks still arriving) stays in KV. */
export function manifestBody(record: ChainRecord): ChainRecord {
  const { incoming: _incoming, ...rest } = record;
  if (rest.pending) {
    const { incoming: _i, ...target } = rest.pending.target;
    return { ...rest, pending: { ...rest.pending, target } };
  }
  return rest;
}

export async function writeManifestFile(paths: StorePaths, record: ChainRecord): Promise<void> {
  await writeFileAtomic(paths.manifest(record.vm.name), `${JSON.stringify(manifestBody(record), null, 2)}\n`);
}
