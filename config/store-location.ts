/**
 * Which store a CLI command reads: `--store DIR`, else $BACKUP_DIR, else the config file's
 * `store.path` (relative to the file), else ./data/backups (CONFIG_DEFAULTS.storePath). The config
 * file is read for that one key only, so a store command works without engine passwords in the
 * shell and without NATS.
 *
 * It reads the config file, so it lives in config/ (it was adapters/store/locate.ts).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { StoreError } from "../adapters/store/errors.ts";
import { CONFIG_DEFAULTS } from "../contracts/config.ts";
import { locateConfig } from "./locate.ts";

export interface StoreLocation {
  root: string;
  /** --store, BACKUP_DIR, config <file>, default */
  via: string;
}

export async function locateStore(o: {
  flag?: string | undefined;
  configFlag?: string | undefined;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
}): Promise<StoreLocation> {
  if (o.flag) return { root: path.resolve(o.cwd, o.flag), via: "--store" };
  if (o.env.BACKUP_DIR) return { root: path.resolve(o.cwd, o.env.BACKUP_DIR), via: "BACKUP_DIR" };
  const where = locateConfig(o.configFlag, o.env, o.cwd);
  if (where.file) {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(where.file, "utf8"));
    } catch (err) {
      throw new StoreError("STORE_CONFIG_UNREADABLE", `cannot read the store path from ${where.file}: ${(err as Error).message}`);
    }
    const store = (raw as { store?: { path?: unknown } } | null)?.store;
    if (store && typeof store.path === "string" && store.path) {
      return { root: path.resolve(path.dirname(where.file), store.path), via: `config ${where.file}` };
    }
  }
  return { root: path.resolve(o.cwd, CONFIG_DEFAULTS.storePath), via: "default" };
}
