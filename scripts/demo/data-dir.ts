/**
 * The demo's data directory. Every run starts from a clean one (so a re-run behaves like the
 * first), but only a directory the demo made itself is ever removed, and never one a running
 * demo (--keep) still uses.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

const MARKER = ".ferry-demo";
const PID_FILE = "demo.pid";

export interface DemoDirs {
  readonly root: string;
  readonly nats: string;
  readonly lab: string;
  readonly store: string;
  readonly secrets: string;
  readonly logs: string;
  readonly config: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export async function prepareDataDir(root: string): Promise<DemoDirs> {
  if (existsSync(root)) {
    const entries = await readdir(root);
    if (entries.length > 0 && !entries.includes(MARKER)) {
      throw new Error(`${root} exists and was not made by the demo (no ${MARKER} file); choose another --data directory`);
    }
    const pidFile = join(root, PID_FILE);
    if (existsSync(pidFile)) {
      const pid = Number((await readFile(pidFile, "utf8")).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new Error(`another demo (pid ${pid}) is using ${root}; stop it with Ctrl-C (or kill ${pid}) first`);
      }
    }
    await rm(root, { recursive: true, force: true });
  }
  const dirs: DemoDirs = {
    root,
    nats: join(root, "nats"),
    lab: join(root, "lab"),
    store: join(root, "backups"),
    secrets: join(root, "secrets"),
    logs: join(root, "logs"),
    config: join(root, "ferry.json"),
  };
  await mkdir(root, { recursive: true });
  await writeFile(join(root, MARKER), "made by scripts/demo.ts; removed and recreated by every demo run\n");
  await writeFile(join(root, PID_FILE), `${process.pid}\n`);
  for (const d of [dirs.nats, dirs.lab, dirs.logs]) await mkdir(d, { recursive: true });
  // Passwords and backups: owner only.
  await mkdir(dirs.secrets, { recursive: true, mode: 0o700 });
  await mkdir(dirs.store, { recursive: true, mode: 0o700 });
  return dirs;
}

/** The pid file goes when the demo ends; the data stays for inspection until the next run. */
export async function releaseDataDir(dirs: DemoDirs): Promise<void> {
  await rm(join(dirs.root, PID_FILE), { force: true });
}
