import type { Writable } from "node:stream";

/** What a command may touch: its streams, the environment and a signal for Ctrl-C. */
export interface CommandIO {
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  readonly signal: AbortSignal;
}

/** One `ferry <name>` command. A command with subcommands (`ferry lab up`) parses them itself. */
export interface Command {
  readonly name: string;
  /** One line for `ferry --help`. */
  readonly summary: string;
  /** Full help text for `ferry <name> --help`. */
  readonly usage: string;
  run(args: string[], io: CommandIO): Promise<number>;
}

/** Exit codes scripts can rely on (documented in the README). */
export const ExitCode = {
  ok: 0,
  /** The work was attempted and failed (backup failed, verification mismatch). */
  failed: 1,
  /** The command line was wrong: unknown command, bad option, invalid JSON. */
  usage: 2,
  /** Something the command needs is missing or unreachable (NATS down, engine unreachable). */
  unavailable: 3,
  /** Input was understood but rejected (schema or config validation). */
  invalid: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
