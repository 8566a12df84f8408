/**
 * Test helper: the `ferry` CLI as a child process (node cli/ferry.mjs ...), with its JSON log
 * lines parsed as they arrive. Always `await p.kill()` or wait for `exited` in afterAll.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const ferryBin = fileURLToPath(new URL("../../cli/ferry.mjs", import.meta.url));
const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

export interface FerryProcess {
  readonly pid: number;
  readonly logs: Record<string, unknown>[];
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Send a signal (default SIGKILL) and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnFerry(args: string[], env: Record<string, string> = {}): FerryProcess {
  const child = spawn(process.execPath, [ferryBin, ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let partial = "";
  let err = "";
  child.stdout.on("data", (chunk: Buffer) => {
    partial += chunk.toString();
    const lines = partial.split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      if (!line) continue;
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ $raw: line });
      }
    }
    for (const w of waiters) w();
  });
  child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return {
    pid: child.pid ?? -1,
    logs,
    stderr: () => err,
    exited,
    waitForLog(pred, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = logs.find(pred);
          if (hit) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(hit);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`pid ${child.pid}: no matching log line in ${timeoutMs} ms. stderr: ${err.slice(-1000)} logs: ${JSON.stringify(logs.slice(-5))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async kill(signal = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
