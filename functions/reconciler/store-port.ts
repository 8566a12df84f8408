/**
 * BackupStore over the backup volume with the layout of domain/chain/naming.ts (architecture §5):
 * directories 0700, files 0600, every file written under a temp name, fsynced, renamed.
 */
import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { randomBytes } from "node:crypto";
import { PermanentError } from "../../contracts/errors.ts";
import { digestsPath, layerPath, ovfPath, assertSegment, type ChainRecord } from "../../domain/chain/mod.ts";
import type { BackupStore } from "../backup-requested/ports.ts";
import { decodeDigests, encodeDigests } from "../../dataplane/blkhash.ts";
import { writeManifestFile } from "../../adapters/store/manifest.ts";
import { StorePaths } from "../../adapters/store/paths.ts";

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = join(dirname(path), `.${basename(path)}.part-${randomBytes(4).toString("hex")}`);
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

export function createStorePort(root: string): BackupStore & { writeManifest(record: ChainRecord): Promise<void> } {
  const abs = (rel: string) => {
    const p = resolve(root, rel);
    if (!p.startsWith(resolve(root) + sep)) throw new PermanentError("STORE_BAD_PATH", `path ${rel.slice(0, 80)} leaves the store`);
    return p;
  };
  const storePaths = new StorePaths(root);
  return {
    root,
    absolute: abs,
    async layerTarget(o) {
      const relPath = layerPath(o.vmName, o.diskId, o.time, o.key, o.mode);
      const finalPath = abs(relPath);
      await mkdir(dirname(finalPath), { recursive: true, mode: 0o700 });
      return { relPath, finalPath };
    },
    async removeUnrecorded(path) {
      const p = path.startsWith("/") ? path : abs(path);
      await rm(p, { force: true });
      const dir = dirname(p);
      const prefix = `.${basename(p)}.part-`;
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const n of names) if (n.startsWith(prefix)) await rm(join(dir, n), { force: true });
    },
    async fileSize(path) {
      return (await stat(path)).size;
    },
    async saveOvf(vmName, key, ovf) {
      const rel = ovfPath(vmName, key);
      await writeFileAtomic(abs(rel), ovf);
      return rel;
    },
    async saveDigests(vmName, key, diskId, digests) {
      const rel = digestsPath(vmName, key, diskId);
      await writeFileAtomic(abs(rel), encodeDigests(digests));
      return rel;
    },
    async readDigests(rel) {
      try {
        return decodeDigests(await readFile(abs(rel)), rel);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
    },
    async writeManifest(record) {
      assertSegment("VM name", record.vm.name);
      await writeManifestFile(storePaths, record);
    },
  };
}
