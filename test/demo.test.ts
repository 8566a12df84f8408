/**
 * `npm run demo` (scripts/demo.ts) as a child process with small disks in a temp directory: it
 * must finish with exit 0, leave web01 with a full and an incremental restore point in the
 * store, and leave nothing running. Plus the guards around its data directory and options.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseChainJson } from "../domain/chain/mod.ts";
import { prepareDataDir } from "../scripts/demo/data-dir.ts";
import { parseDemoOptions } from "../scripts/demo/options.ts";

const root = fileURLToPath(new URL("../", import.meta.url));
const tsx = join(root, "node_modules", ".bin", "tsx");
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "ferry-demo-test-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function runDemo(args: string[], timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, FERRY_DEMO_SIZE: "small" };
    delete env.NATS_URL;
    delete env.FERRY_CONFIG;
    const child = spawn(tsx, ["scripts/demo.ts", ...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    // The demo has its own per-step timeouts; this only guards the test against a hang.
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("demo", () => {
  it("demo - small disks: exits 0 with a full and an incremental restore point of web01 in the store, nothing left running", async () => {
    const data = join(tmp, "run");
    const started = Date.now();
    const run = await runDemo(["--data", data, "--nats-port", "0"], 110_000);
    const seconds = (Date.now() - started) / 1000;
    expect(run.code, run.output.slice(-4000)).toBe(0);

    const record = parseChainJson(await readFile(join(data, "backups", "web01", "restore-points.json"), "utf8"));
    expect(record.vm.name).toBe("web01");
    expect(record.restorePoints.map((p) => p.kind)).toEqual(["full", "incremental"]);
    const [full, incr] = record.restorePoints;
    expect(incr!.parentId).toBe(full!.id);
    expect(incr!.disks).toHaveLength(2);
    for (const d of incr!.disks) {
      expect(d.parentLayer).toBeDefined();
      expect(existsSync(join(data, "backups", d.layer))).toBe(true);
    }

    // What it says it did, in order.
    for (const line of ["backup.completed  web01: full", "backup.completed  web01: incremental", "2 restore points", "all verified", "Images are identical.", "nats-server stopped"]) {
      expect(run.output).toContain(line);
    }
    // The processes it started are gone.
    const natsPid = Number(/NATS\s+nats:\/\/[\d.:]+\s+\(pid (\d+)\)/.exec(run.output)?.[1]);
    const fnPid = Number(/pid (\d+): [^\n]*backup-requested/.exec(run.output)?.[1]);
    expect(natsPid).toBeGreaterThan(0);
    expect(fnPid).toBeGreaterThan(0);
    expect(alive(natsPid)).toBe(false);
    expect(alive(fnPid)).toBe(false);
    expect(existsSync(join(data, "demo.pid"))).toBe(false);
    console.log(`demo (small) took ${seconds.toFixed(1)} s`);
  });

  it("demo - refuses a data directory it did not make, and leaves it alone", async () => {
    const foreign = join(tmp, "foreign");
    await mkdir(foreign);
    await writeFile(join(foreign, "important.txt"), "keep me");
    await expect(prepareDataDir(foreign)).rejects.toThrow(/not made by the demo/);
    expect(await readdir(foreign)).toEqual(["important.txt"]);
  });

  it("demo - refuses a data directory a running demo uses, and starts clean from a stopped one", async () => {
    const dir = join(tmp, "busy");
    const first = await prepareDataDir(dir);
    await writeFile(join(first.store, "old-layer.qcow2"), "x");
    // A live process that is not us holds it.
    await writeFile(join(dir, "demo.pid"), `${process.ppid}\n`);
    await expect(prepareDataDir(dir)).rejects.toThrow(new RegExp(`another demo \\(pid ${process.ppid}\\)`));
    expect(existsSync(join(first.store, "old-layer.qcow2"))).toBe(true);
    // Stopped (the pid file names a dead process): cleaned and recreated.
    await writeFile(join(dir, "demo.pid"), "999999999\n");
    const again = await prepareDataDir(dir);
    expect(await readdir(again.store)).toEqual([]);
  });

  it("demo options - --small or FERRY_DEMO_SIZE pick small disks; a bad port or size is refused", () => {
    expect(parseDemoOptions([], {}, "/x").profile.name).toBe("normal");
    expect(parseDemoOptions(["--small"], {}, "/x").profile.name).toBe("small");
    expect(parseDemoOptions([], { FERRY_DEMO_SIZE: "small" }, "/x").profile.name).toBe("small");
    expect(parseDemoOptions([], {}, "/x").dataDir).toBe("/x/data/demo");
    expect(parseDemoOptions(["--nats-port", "0"], {}, "/x").natsPort).toBe(0);
    expect(parseDemoOptions([], { FERRY_DEMO_BACKUP_TIMEOUT: "30" }, "/x").profile.backupTimeoutMs).toBe(30_000);
    expect(() => parseDemoOptions(["--nats-port", "70000"], {}, "/x")).toThrow(/--nats-port/);
    expect(() => parseDemoOptions([], { FERRY_DEMO_SIZE: "huge" }, "/x")).toThrow(/FERRY_DEMO_SIZE/);
  });
});
