/**
 * Ferry's functions as an operator runs them: `ferry run all` in a child process, JSON logs to a
 * file. Ready when it logs "functions running"; stopped with SIGTERM (in-flight work finishes or
 * is handed back), SIGKILL only if it does not exit in time.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnOwned, stopChild } from "./nats-server.ts";
import { FERRY_NODE_FLAGS } from "../../cli/node-flags.ts";
import { waitForOutput } from "./child-output.ts";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
export const ferryBin = join(repoRoot, "cli", "ferry.mjs");

export interface DemoFunctions {
  readonly pid: number;
  readonly logFile: string;
  readonly functions: readonly string[];
  /** Where `ferry run` serves GET /metrics (config metrics.listen), when it does. */
  readonly metricsUrl: string | undefined;
  /** Warnings and errors logged so far, newest last (for a failure report). */
  problems(max?: number): Promise<string[]>;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The environment every child `ferry` gets: the demo's config and NATS, nothing inherited that would override them. */
export function ferryEnv(configFile: string, natsUrl: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FERRY_CONFIG: configFile, NATS_URL: natsUrl };
  delete env.BACKUP_DIR;
  delete env.FERRY_NATS_URL;
  return env;
}

/**
 * A long-running `ferry <args>` of the demo, in its own process group, stdout and stderr appended
 * to `logFile`; `stop` is SIGTERM, SIGKILL after `graceMs`.
 */
export function spawnFerry(args: string[], o: { configFile: string; natsUrl: string; logFile: string; graceMs: number }): { child: ChildProcess; stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const log = createWriteStream(o.logFile, { flags: "a" });
  const child = spawnOwned(process.execPath, [...FERRY_NODE_FLAGS, ferryBin, ...args], {
    cwd: repoRoot,
    env: { ...ferryEnv(o.configFile, o.natsUrl), FERRY_LOG_LEVEL: process.env.FERRY_LOG_LEVEL ?? "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  return {
    child,
    async stop() {
      const r = await stopChild(child, o.graceMs);
      log.end();
      return r;
    },
  };
}

export async function startFunctions(o: { configFile: string; natsUrl: string; logDir: string; signal: AbortSignal; timeoutMs: number }): Promise<DemoFunctions> {
  const logFile = join(o.logDir, "functions.log");
  const { child, stop } = spawnFerry(["run", "all", "--config", o.configFile, "--grace", "10"], { configFile: o.configFile, natsUrl: o.natsUrl, logFile, graceMs: 25_000 });
  const problems = async (max = 8) => {
    const text = await readFile(logFile, "utf8").catch(() => "");
    const out: string[] = [];
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        const l = JSON.parse(line) as { level?: number; msg?: string; err?: { code?: string; message?: string }; fn?: string };
        if ((l.level ?? 0) >= 40) out.push(`${l.fn ? `${l.fn}: ` : ""}${l.msg ?? ""}${l.err ? ` — ${l.err.code ? `${l.err.code} ` : ""}${l.err.message ?? ""}` : ""}`);
      } catch {
        out.push(line);
      }
    }
    return out.slice(-max);
  };
  try {
    const { functions, metricsUrl } = await waitRunning(child, o.timeoutMs, o.signal);
    return { pid: child.pid ?? -1, logFile, functions, metricsUrl, problems, stop };
  } catch (err) {
    await stop();
    const tail = (await problems(10)).join("\n  ");
    throw new Error(`${(err as Error).message}${tail ? `\n  ${tail}` : ""}\n  (log: ${logFile})`);
  }
}

function waitRunning(child: ChildProcess, timeoutMs: number, signal: AbortSignal): Promise<{ functions: string[]; metricsUrl: string | undefined }> {
  return waitForOutput(child, {
    stream: "stdout",
    timeoutMs,
    signal,
    match: (text) => {
      // Complete lines only: the last one may still be arriving.
      for (const line of text.split("\n").slice(0, -1)) {
        try {
          const l = JSON.parse(line) as { msg?: string; functions?: string[]; metrics?: string };
          if (l.msg === "functions running") return { functions: l.functions ?? [], metricsUrl: l.metrics };
        } catch {
          // not a log line (a warning from node): ignore
        }
      }
      return undefined;
    },
    timedOut: () => new Error(`'ferry run all' did not report "functions running" within ${timeoutMs / 1000} s`),
    exited: (code, sig) => new Error(`'ferry run all' exited (${sig ?? `code ${code}`}) before it was running`),
  });
}

/** Run a `ferry` command to completion, capturing its output (killed after `timeoutMs`). */
export function runFerry(
  args: string[],
  o: { env: NodeJS.ProcessEnv; timeoutMs: number; signal: AbortSignal },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ferryBin, ...args], { cwd: repoRoot, env: o.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const kill = () => child.kill("SIGKILL");
    const timer = setTimeout(kill, o.timeoutMs);
    o.signal.addEventListener("abort", kill, { once: true });
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code, sig) => {
      clearTimeout(timer);
      o.signal.removeEventListener("abort", kill);
      if (sig) reject(new Error(`ferry ${args[0]} was killed (${sig}, limit ${o.timeoutMs / 1000} s): ${stderr.slice(-500)}`));
      else resolve({ code, stdout, stderr });
    });
  });
}
