/**
 * A real nats-server with JetStream for tests: random port (`-p -1`, so no port race), a fresh
 * store under os.tmpdir(), 127.0.0.1 only. `stop()` kills it and removes the store.
 *
 *   const nats = await startNatsServer();   // { url, port, storeDir, stop() }
 *   ...
 *   await nats.stop();
 *
 * From vitest globalSetup: see ./global-setup.ts (provides `natsUrl`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";

const SETPRIV = "/usr/bin/setpriv";

export interface NatsServer {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export interface NatsServerOptions {
  /** nats-server binary. Default: `nats-server` on PATH. */
  readonly bin?: string;
  /** Extra config file text appended to the generated config (accounts, limits, ...). */
  readonly extraConfig?: string;
  /**
   * A config file to include after the generated config (e.g. infra/nats/auth.conf), as the file
   * itself: nats-server resolves includes relative to the including file, so it is referenced by
   * its path relative to the store dir. `$VAR`s in it come from this process's environment.
   */
  readonly include?: string;
  /** Start timeout. Default 15 s (the machine is shared). */
  readonly timeoutMs?: number;
  /** Keep the store dir on stop (e.g. to restart on it). */
  readonly keepStore?: boolean;
  /** Reuse a store dir (restart scenarios). */
  readonly storeDir?: string;
}

export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServer> {
  const dir = opts.storeDir ?? (await mkdtemp(join(tmpdir(), "ferry-nats-")));
  const confPath = join(dir, "nats.conf");
  await writeFile(
    confPath,
    [
      "host: 127.0.0.1",
      "port: -1",
      `jetstream { store_dir: ${JSON.stringify(join(dir, "js"))}, max_memory_store: 64MB, max_file_store: 4GB }`,
      opts.extraConfig ?? "",
      opts.include ? `include ${JSON.stringify(relative(dir, resolve(opts.include)))}` : "",
    ].join("\n"),
  );
  // setpriv --pdeathsig: the server dies with the test worker even when afterAll never runs (a
  // worker killed by a timeout or by `timeout(1)` around vitest), instead of lingering under init.
  const argv = [opts.bin ?? "nats-server", "-c", confPath];
  const child = existsSync(SETPRIV)
    ? spawn(SETPRIV, ["--pdeathsig", "SIGTERM", "--", ...argv], { stdio: ["ignore", "ignore", "pipe"] })
    : spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (!stopped) {
      stopped = true;
      await killAndWait(child);
    }
    if (!opts.keepStore && !opts.storeDir) await rm(dir, { recursive: true, force: true });
  };
  try {
    const port = await waitReady(child, opts.timeoutMs ?? 15_000);
    return { url: `nats://127.0.0.1:${port}`, port, storeDir: dir, pid: child.pid ?? -1, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Resolves with the client port once the server logs "Server is ready". */
function waitReady(child: ChildProcess, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let log = "";
    let port: number | undefined;
    const timer = setTimeout(() => finish(new Error(`nats-server not ready after ${timeoutMs} ms:\n${log.slice(-2000)}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      log += chunk.toString();
      const m = /Listening for client connections on [^\s]+:(\d+)/.exec(log);
      if (m) port = Number(m[1]);
      if (port !== undefined && log.includes("Server is ready")) finish(undefined, port);
    };
    const onExit = (code: number | null) => finish(new Error(`nats-server exited (${code}) before ready:\n${log.slice(-2000)}`));
    const onError = (err: Error) => finish(err);
    function finish(err: Error | undefined, p?: number) {
      clearTimeout(timer);
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
      child.off("error", onError);
      // Keep draining stderr so the server never blocks on a full pipe.
      child.stderr?.resume();
      if (err) reject(err);
      else resolve(p as number);
    }
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}
