/**
 * Store-relative paths → absolute paths, refusing anything that could leave the store: absolute
 * paths, '..' or '.' segments, empty segments, NUL, characters outside [A-Za-z0-9._-], and
 * symlinks anywhere below the store root (a hostile store could point a layer at /etc/shadow).
 */
import { lstat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { assertSegment, isSegment, MANIFEST_FILE, RESTORE_LOGS_DIR } from "../../domain/chain/mod.ts";
import { StoreError } from "./errors.ts";

export class StorePaths {
  readonly root: string;

  constructor(root: string) {
    if (typeof root !== "string" || root.length === 0 || root.includes("\0")) {
      throw new StoreError("STORE_BAD_PATH", "the store path must be a non-empty directory path");
    }
    this.root = resolve(root);
  }

  /** Absolute path of a store-relative path like `web01/d1/20250131T020000Z.c9.full.qcow2`. */
  abs(rel: string): string {
    return join(this.root, ...this.segments(rel));
  }

  segments(rel: string): string[] {
    const shown = JSON.stringify(String(rel).slice(0, 120));
    if (typeof rel !== "string" || rel.length === 0 || rel.length > 4096 || rel.startsWith("/")) {
      throw new StoreError("STORE_BAD_PATH", `path ${shown} must be relative to the store`, { path: String(rel).slice(0, 120) });
    }
    const parts = rel.split("/");
    if (!parts.every(isSegment)) {
      throw new StoreError("STORE_BAD_PATH", `path ${shown} has a segment that is empty, '.', '..' or not [A-Za-z0-9._-]`, { path: rel.slice(0, 120) });
    }
    return parts;
  }

  vmDir(vmName: string): string {
    return join(this.root, assertSegment("VM name", vmName));
  }

  manifest(vmName: string): string {
    return join(this.vmDir(vmName), MANIFEST_FILE);
  }

  restoreLogs(): string {
    return join(this.root, RESTORE_LOGS_DIR);
  }

  /**
   * Every component below the root must be a real directory (and the last a regular file when
   * `file`): no symlinks. Missing components → STORE_FILE_MISSING.
   */
  async assertReal(rel: string, kind: "file" | "dir"): Promise<string> {
    const parts = this.segments(rel);
    let cur = this.root;
    for (let i = 0; i < parts.length; i++) {
      cur = join(cur, parts[i]!);
      let st;
      try {
        st = await lstat(cur);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") {
          throw new StoreError("STORE_FILE_MISSING", `${rel} is missing from the store`, { path: rel });
        }
        throw err;
      }
      const last = i === parts.length - 1;
      const ok = last && kind === "file" ? st.isFile() : st.isDirectory();
      if (!ok) {
        const what = st.isSymbolicLink() ? "a symbolic link" : last && kind === "file" ? "not a regular file" : "not a directory";
        throw new StoreError("STORE_HOSTILE_PATH", `${parts.slice(0, i + 1).join("/")} in the store is ${what}; refusing to use it`, { path: rel });
      }
    }
    return cur;
  }
}
