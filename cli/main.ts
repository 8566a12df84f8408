import { readdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { ExitCode, type Command, type CommandIO } from "./command.ts";

const commandsDir = fileURLToPath(new URL("./commands/", import.meta.url));

/** Every file in cli/commands/ (not tests) default-exports one Command; its file name is its name. */
async function commandNames(): Promise<string[]> {
  const files = await readdir(commandsDir);
  return files
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
    .map((f) => f.slice(0, -3))
    .sort();
}

// Only the command being run is imported: some pull in NATS, undici or the lab, and a CLI call
// should not pay for all of them.
async function loadCommand(name: string): Promise<Command | undefined> {
  const mod = (await import(new URL(`./commands/${name}.ts`, import.meta.url).href)) as { default?: Command };
  return mod.default;
}

async function loadCommands(): Promise<Map<string, Command>> {
  const commands = new Map<string, Command>();
  for (const name of await commandNames()) {
    const command = await loadCommand(name);
    if (command) commands.set(command.name, command);
  }
  return commands;
}

function overview(commands: Map<string, Command>): string {
  const width = Math.max(...[...commands.keys()].map((n) => n.length), 4);
  const lines = [...commands.values()].map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    "ferry: event-driven backup and disaster recovery for oVirt / OLVM",
    "",
    "Usage: ferry <command> [options]    (ferry <command> --help for details)",
    "",
    "Commands:",
    ...lines,
    "",
    "Exit codes: 0 ok, 1 failed, 2 usage error, 3 something needed is unavailable, 4 input rejected.",
    "",
  ].join("\n");
}

export async function main(argv: string[], io?: Partial<CommandIO>): Promise<number> {
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  const fullIO: CommandIO = {
    stdout: io?.stdout ?? process.stdout,
    stderr: io?.stderr ?? process.stderr,
    env: io?.env ?? process.env,
    cwd: io?.cwd ?? process.cwd(),
    signal: io?.signal ?? controller.signal,
  };
  try {
    const [name, ...rest] = argv;
    if (!name || name === "--help" || name === "-h" || name === "help") {
      fullIO.stdout.write(overview(await loadCommands()));
      return name ? ExitCode.ok : ExitCode.usage;
    }
    const known = await commandNames();
    const command = known.includes(name) ? await loadCommand(name) : undefined;
    if (!command) {
      fullIO.stderr.write(`ferry: unknown command '${name}'. Run 'ferry --help' for the list.\n`);
      return ExitCode.usage;
    }
    if (rest.includes("--help") || rest.includes("-h")) {
      fullIO.stdout.write(command.usage.endsWith("\n") ? command.usage : `${command.usage}\n`);
      return ExitCode.ok;
    }
    return await command.run(rest, fullIO);
  } finally {
    process.off("SIGINT", onSignal);
  }
}
