import type { Writable } from "node:stream";
import { parseArgs, type ParseArgsConfig } from "node:util";

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

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * Parse a command's options (positionals allowed, unknown options refused). A bad command line
 * prints `ferry <command>: <problem>` (and the usage, when given) and returns undefined, so the
 * caller answers ExitCode.usage.
 */
export function parseCommandLine<const O extends Options>(
  command: string,
  args: string[],
  options: O,
  io: Pick<CommandIO, "stderr">,
  usage?: string,
) {
  try {
    return parseArgs({ args, allowPositionals: true, strict: true, options });
  } catch (err) {
    io.stderr.write(`ferry ${command}: ${(err as Error).message}\n${usage ?? ""}`);
    return undefined;
  }
}

/**
 * The `--nats` help every command shows: one reader (adapters/nats/settings.ts) decides, in this
 * order, for all of them.
 */
export const NATS_OPTION_HELP = "NATS servers (default: $NATS_URL, else the config's nats.servers, else nats://127.0.0.1:4222)";

/** A warning from a shared reader (a deprecated setting in use), printed as `ferry <command>: warning: …`. */
export function warnTo(io: Pick<CommandIO, "stderr">, command: string): (message: string) => void {
  return (message) => io.stderr.write(`ferry ${command}: warning: ${message}\n`);
}
