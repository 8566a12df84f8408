import { execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QemuNbdStartError, qemuImg, startQemuNbd, type QemuNbdServer } from "../adapters/qemu/mod.ts";
import { waitFor } from "./harness/wait-for.ts";

const run = promisify(execFile);
const MiB = 1024 * 1024;
let dir: string;
const servers: QemuNbdServer[] = [];

const uri = (s: QemuNbdServer) => `nbd+unix:///${s.exportName}?socket=${s.socket}`;

async function map(s: QemuNbdServer, context = "base:allocation"): Promise<Array<[number, number, number]>> {
  const { stdout } = await run("nbdinfo", ["--json", `--map=${context}`, uri(s)]);
  return (JSON.parse(stdout) as Array<{ offset: number; length: number; type: number }>).map((e) => [e.offset, e.length, e.type]);
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Alive and not a zombie (an exited child of init that nobody reaped yet counts as gone). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-qemu-nbd-"));
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await rm(dir, { recursive: true, force: true });
});

async function start(o: Parameters<typeof startQemuNbd>[0]) {
  const s = await startQemuNbd(o);
  servers.push(s);
  return s;
}

describe("startQemuNbd", () => {
  it("startQemuNbd - serves a qcow2 chain read-only, survives client disconnects, stop() ends it", async () => {
    const base = join(dir, "ro-base.qcow2");
    const top = join(dir, "ro-top.qcow2");
    await qemuImg.create({ path: base, format: "qcow2", size: 4 * MiB });
    execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x61 0 1M", base], { stdio: "ignore" });
    await qemuImg.create({ path: top, format: "qcow2", backing: { path: base, format: "qcow2" } });
    execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x62 2M 64k", top], { stdio: "ignore" });
    const s = await start({ image: top, format: "qcow2", socket: join(dir, "ro.sock"), readOnly: true, exportName: "sda" });
    expect(s.exportName).toBe("sda");
    const { stdout } = await run("nbdinfo", ["--json", uri(s)]);
    const info = JSON.parse(stdout) as { exports: Array<{ "export-size": number; is_read_only: boolean }> };
    expect(info.exports[0]?.["export-size"]).toBe(4 * MiB);
    expect(info.exports[0]?.is_read_only).toBe(true);
    // Several clients one after the other: --persistent keeps the server up.
    expect(await map(s)).toEqual([
      [0, MiB, 0],
      [MiB, MiB, 3],
      [2 * MiB, 65536, 0],
      [2 * MiB + 65536, 2 * MiB - 65536, 3],
    ]);
    const out = join(dir, "ro-copy.raw");
    await run("nbdcopy", [uri(s), out]);
    const data = await readFile(out);
    expect(data[0]).toBe(0x61);
    expect(data[2 * MiB]).toBe(0x62);
    expect(alive(s.pid)).toBe(true);
    await s.stop();
    expect(alive(s.pid)).toBe(false);
    expect(existsSync(s.socket)).toBe(false);
    await s.stop(); // idempotent
  });

  it("startQemuNbd - backingChain false exports one layer with holes where it is unallocated", async () => {
    const s = await start({
      image: join(dir, "ro-top.qcow2"),
      format: "qcow2",
      socket: join(dir, "shallow.sock"),
      readOnly: true,
      backingChain: false,
    });
    expect(await map(s)).toEqual([
      [0, 2 * MiB, 3],
      [2 * MiB, 65536, 0],
      [2 * MiB + 65536, 2 * MiB - 65536, 3],
    ]);
    await s.stop();
  });

  it("startQemuNbd - allocationDepth exposes qemu:allocation-depth (0 = unallocated in every layer)", async () => {
    const s = await start({
      image: join(dir, "ro-top.qcow2"),
      format: "qcow2",
      socket: join(dir, "depth.sock"),
      readOnly: true,
      allocationDepth: true,
    });
    expect(await map(s, "qemu:allocation-depth")).toEqual([
      [0, MiB, 2],
      [MiB, MiB, 0],
      [2 * MiB, 65536, 1],
      [2 * MiB + 65536, 2 * MiB - 65536, 0],
    ]);
    await s.stop();
  });

  it("startQemuNbd - exports a persistent dirty bitmap as qemu:dirty-bitmap:<name>", async () => {
    const img = join(dir, "bm.qcow2");
    await qemuImg.create({ path: img, format: "qcow2", size: 4 * MiB });
    execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 1 0 64k", img], { stdio: "ignore" });
    await qemuImg.bitmap(img, { op: "add", name: "cp1" });
    execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 2 1M 128k", img], { stdio: "ignore" });
    const s = await start({ image: img, format: "qcow2", socket: join(dir, "bm.sock"), readOnly: true, bitmap: "cp1" });
    expect(await map(s, "qemu:dirty-bitmap:cp1")).toEqual([
      [0, MiB, 0],
      [MiB, 131072, 1],
      [MiB + 131072, 3 * MiB - 131072, 0],
    ]);
    await s.stop();
  });

  it("startQemuNbd - writable export with discard and detect-zeroes writes into the image", async () => {
    const img = join(dir, "rw.qcow2");
    const src = join(dir, "rw-src.raw");
    await qemuImg.create({ path: img, format: "qcow2", size: 2 * MiB });
    await qemuImg.create({ path: src, format: "raw", size: 2 * MiB });
    execFileSync("qemu-io", ["-f", "raw", "-c", "write -P 0x77 512k 256k", src], { stdio: "ignore" });
    const s = await start({
      image: img,
      format: "qcow2",
      socket: join(dir, "rw.sock"),
      discard: true,
      detectZeroes: "unmap",
      cache: "none",
      aio: "native",
    });
    await run("nbdcopy", [src, uri(s)]);
    await s.stop();
    expect((await qemuImg.compare(img, src, { formatA: "qcow2", formatB: "raw" })).identical).toBe(true);
    const check = await qemuImg.check(img, { format: "qcow2" });
    expect(check.allocatedClusters).toBe(4); // only the 256 KiB written, zeroes stayed unallocated
  });

  it("startQemuNbd - a failure to start reports qemu-nbd's own message", async () => {
    const err = await startQemuNbd({
      image: join(dir, "does-not-exist.qcow2"),
      format: "qcow2",
      socket: join(dir, "bad.sock"),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QemuNbdStartError);
    expect((err as Error).message).toMatch(/No such file|Could not open/);
  });

  it("startQemuNbd - stop() after SIGTERM is ignored escalates to SIGKILL after the grace", async () => {
    // A stand-in qemu-nbd that listens on the socket, greets like an NBD server, and ignores SIGTERM.
    const fake = join(dir, "stubborn.mjs");
    const { writeFile, chmod } = await import("node:fs/promises");
    await writeFile(
      fake,
      `#!/usr/bin/env node
process.on("SIGTERM", () => {});
const i = process.argv.indexOf("--socket");
require("node:net").createServer((c) => c.write("NBDMAGIC")).listen(process.argv[i + 1]);
`.replace('require("node:net")', "(await import('node:net'))"),
    );
    await chmod(fake, 0o755);
    const s = await startQemuNbd({
      image: "x",
      format: "raw",
      socket: join(dir, "stubborn.sock"),
      binary: fake,
      stopGraceMs: 300,
    });
    const t0 = Date.now();
    await s.stop();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(alive(s.pid)).toBe(false);
  });

  it("startQemuNbd - qemu-nbd exits when the process that started it is killed with SIGKILL", async () => {
    const image = join(dir, "orphan.qcow2");
    await qemuImg.create({ path: image, format: "qcow2", size: MiB });
    const owner = join(dir, "owner.mts");
    const mod = new URL("../adapters/qemu/mod.ts", import.meta.url).href;
    await writeFile(
      owner,
      `import { startQemuNbd } from ${JSON.stringify(mod)};\n` +
        `const s = await startQemuNbd({ image: ${JSON.stringify(image)}, format: "qcow2", socket: ${JSON.stringify(join(dir, "orphan.sock"))} });\n` +
        `process.stdout.write(String(s.pid) + "\\n");\nsetInterval(() => {}, 1000);\n`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", owner], { cwd: fileURLToPath(new URL("..", import.meta.url)), stdio: ["ignore", "pipe", "inherit"] });
    const pid = await new Promise<number>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("\n")) resolve(Number(out.trim()));
      });
      child.once("exit", (code) => reject(new Error(`owner exited ${code} before starting qemu-nbd`)));
    });
    expect(running(pid)).toBe(true);
    child.kill("SIGKILL");
    await waitFor(() => !running(pid), { timeoutMs: 5000, what: `qemu-nbd (pid ${pid}) to exit after its owner was killed` });
    expect(running(pid)).toBe(false);
  });

  it("startQemuNbd - an aborted signal refuses to start", async () => {
    const ac = new AbortController();
    ac.abort(new Error("cancelled"));
    await expect(
      startQemuNbd({ image: join(dir, "rw.qcow2"), format: "qcow2", socket: join(dir, "ab.sock"), signal: ac.signal }),
    ).rejects.toThrow("cancelled");
  });
});
