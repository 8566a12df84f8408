/**
 * The demo's nats-server: JetStream on, loopback only, its store under the demo's data
 * directory, port 4222 when free (so the nats CLI works without flags), else a free port.
 * Logs go to a file; start waits for "Server is ready".
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { createWriteStream } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { waitForOutput } from "./child-output.ts";

export interface DemoNats {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly confFile: string;
  readonly logFile: string;
  stop(): Promise<void>;
}

const DEFAULT_PORT = 4222;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

export async function startDemoNats(o: { dir: string; logDir: string; port?: number | undefined; signal: AbortSignal }): Promise<DemoNats> {
  let port = o.port ?? ((await portFree(DEFAULT_PORT)) ? DEFAULT_PORT : 0);
  try {
    return await launch(o.dir, o.logDir, port, o.signal);
  } catch (err) {
    // 4222 was taken between the check and the bind: any free port will do.
    if (port === DEFAULT_PORT && o.port === undefined && /address already in use/i.test(String(err))) {
      port = 0;
      return launch(o.dir, o.logDir, port, o.signal);
    }
    throw err;
  }
}

async function launch(dir: string, logDir: string, port: number, signal: AbortSignal): Promise<DemoNats> {
  const confFile = join(dir, "nats.conf");
  const logFile = join(logDir, "nats-server.log");
  await writeFile(
    confFile,
    [
      "# Written by scripts/demo.ts (compare infra/nats/single.conf for a real install).",
      "server_name: ferry-demo",
      "host: 127.0.0.1",
      `port: ${port === 0 ? -1 : port}`,
      `jetstream { store_dir: ${JSON.stringify(join(dir, "js"))}, max_memory_store: 64MB, max_file_store: 2GB }`,
      "max_payload: 1MB",
      "",
    ].join("\n"),
  );
  const child = spawnOwned("nats-server", ["-c", confFile], { stdio: ["ignore", "ignore", "pipe"] });
  const log = createWriteStream(logFile, { flags: "a" });
  child.stderr!.pipe(log);
  const stop = async () => {
    await stopChild(child, 10_000);
  };
  try {
    const bound = await waitReady(child, 20_000, signal);
    return { url: `nats://127.0.0.1:${bound}`, port: bound, pid: child.pid ?? -1, confFile, logFile, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function waitReady(child: ChildProcess, timeoutMs: number, signal: AbortSignal): Promise<number> {
  return waitForOutput(child, {
    stream: "stderr",
    timeoutMs,
    signal,
    match: (text) => {
      const m = /Listening for client connections on [^\s]+:(\d+)/.exec(text);
      return m && text.includes("Server is ready") ? Number(m[1]) : undefined;
    },
    timedOut: (text) => new Error(`nats-server not ready after ${timeoutMs / 1000} s:\n${text.slice(-1500)}`),
    exited: (code, _sig, text) => new Error(`nats-server exited (code ${code}) before it was ready:\n${text.slice(-1500)}`),
    spawnFailed: (err) => new Error(`cannot start nats-server: ${err.message} (is it installed? 'bash infra/setup.sh' installs it)`),
  });
}

const owned = new Set<ChildProcess>();
let exitHook = false;

/**
 * A child in its own process group: Ctrl-C in the terminal reaches only the demo, which then
 * stops its children in order (functions before the lab and NATS they still talk to). Should
 * the demo itself die, the children are killed on its way out.
 */
export function spawnOwned(cmd: string, args: string[], o: SpawnOptions): ChildProcess {
  const child = spawn(cmd, args, { ...o, detached: true });
  owned.add(child);
  child.once("exit", () => owned.delete(child));
  if (!exitHook) {
    exitHook = true;
    process.once("exit", () => {
      for (const c of owned) c.kill("SIGKILL");
    });
  }
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    return { code: child.exitCode, signal: child.signalCode };
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, sig) => resolve({ code, signal: sig })),
  );
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}
