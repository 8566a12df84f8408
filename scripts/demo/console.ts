/**
 * The web console as an operator runs it: `ferry console` in a child process (JSON logs to a
 * file), with one operator user made for this demo run. The user's password is random, written
 * only as its scrypt hash (console/users.ts) into the demo's users file, and handed back to be
 * printed on the operator's terminal — never to a log or an event. Ready when the console says
 * where it listens; stopped with SIGTERM.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { putUser } from "../../console/users.ts";
import { spawnFerry } from "./functions.ts";
import { waitForOutput } from "./child-output.ts";

export const DEMO_CONSOLE_USER = "demo";

export interface DemoConsole {
  readonly url: string;
  readonly pid: number;
  readonly logFile: string;
  readonly login: { readonly user: string; readonly password: string };
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** What `ferry console` writes to stderr once it serves (cli/commands/console.ts). */
const LISTENING = /^ferry console: listening on (https?:\/\/\S+)$/m;

/** A fresh operator of this demo run in `usersFile` (the config's console.usersFile). */
export async function addDemoOperator(usersFile: string): Promise<{ user: string; password: string }> {
  const password = randomBytes(12).toString("base64url");
  await putUser(usersFile, DEMO_CONSOLE_USER, "operator", password);
  return { user: DEMO_CONSOLE_USER, password };
}

export async function startDemoConsole(o: {
  configFile: string;
  natsUrl: string;
  usersFile: string;
  logDir: string;
  signal: AbortSignal;
  timeoutMs: number;
}): Promise<DemoConsole> {
  const login = await addDemoOperator(o.usersFile);
  const logFile = join(o.logDir, "console.log");
  const { child, stop } = spawnFerry(["console", "--config", o.configFile], { configFile: o.configFile, natsUrl: o.natsUrl, logFile, graceMs: 10_000 });
  try {
    const url = await waitListening(child, o.timeoutMs, o.signal);
    return { url, pid: child.pid ?? -1, logFile, login, stop };
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message} (log: ${logFile})`);
  }
}

function waitListening(child: ChildProcess, timeoutMs: number, signal: AbortSignal): Promise<string> {
  return waitForOutput(child, {
    stream: "stderr",
    timeoutMs,
    signal,
    match: (text) => LISTENING.exec(text)?.[1],
    timedOut: () => new Error(`'ferry console' did not say where it listens within ${timeoutMs / 1000} s`),
    exited: (code, sig, text) =>
      new Error(`'ferry console' exited (${sig ?? `code ${code}`}) before it listened: ${text.trim().split("\n").slice(-3).join(" | ")}`),
  });
}
