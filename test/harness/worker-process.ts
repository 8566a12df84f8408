/**
 * A pipeline worker fixture (test/fixtures/*-worker.ts) as its own process, for the SIGKILL tests:
 * node itself with tsx's loader (not the tsx CLI, which would put a wrapper process in between and
 * the SIGKILL would hit the wrapper, not the worker). Resolves once the worker prints "ready".
 * FERRY_TEST_WORKER_LOG names a file that gets the worker's output (for diagnosis).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, openSync } from "node:fs";

export function startWorkerProcess(script: string, configFile: string, children: ChildProcess[], nodeFlags: readonly string[] = []): Promise<ChildProcess> {
  const logFile = process.env.FERRY_TEST_WORKER_LOG;
  const child = spawn(process.execPath, [...nodeFlags, "--import", "tsx", script, configFile], { stdio: ["ignore", "pipe", logFile ? openSync(logFile, "a") : "inherit"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("worker did not start")), 30_000);
    child.stdout!.on("data", (b: Buffer) => {
      if (logFile) appendFileSync(logFile, b);
      if (String(b).includes("ready")) {
        clearTimeout(t);
        resolve(child);
      }
    });
    child.once("exit", (code) => reject(new Error(`worker exited with ${code}`)));
  });
}

/** SIGKILL a worker (if still running) and wait until it is gone. */
export async function killWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}
