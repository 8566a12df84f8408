/** Runs one `ferry <command>` in-process with captured stdout/stderr, for the config and doctor tests. */
import { PassThrough } from "node:stream";
import type { Command } from "../cli/command.ts";

export interface CommandRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCommand(
  command: Command,
  args: string[],
  o: { env?: Record<string, string | undefined>; cwd: string },
): Promise<CommandRun> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (c: Buffer) => (out += c.toString()));
  stderr.on("data", (c: Buffer) => (err += c.toString()));
  const code = await command.run(args, {
    stdout,
    stderr,
    env: o.env ?? { PATH: process.env.PATH },
    cwd: o.cwd,
    signal: new AbortController().signal,
  });
  return { code, stdout: out, stderr: err };
}
