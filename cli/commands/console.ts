import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { ConfigError } from "../../config/load.ts";
import { locateConfig } from "../../config/locate.ts";
import { openSession } from "../../config/session.ts";
import { CONFIG_DEFAULTS } from "../../contracts/config.ts";
import { createLogger } from "../../functions/runtime/mod.ts";
import { readCaFiles, settingsFromConfig } from "../../pipeline/composition.ts";
import { ConsoleListenError, ConsoleSetupError, consoleOptionsFromConfig, startConsole } from "../../console/start.ts";
import { MIN_PASSWORD, putUser, ROLES, UsersFileError, type Role } from "../../console/users.ts";
import { ExitCode, NATS_OPTION_HELP, parseCommandLine, warnTo, type Command, type CommandIO } from "../command.ts";

const usage = `Usage: ferry console [--listen HOST:PORT] [--config FILE] [--nats URL]
       ferry console adduser <name> --role viewer|operator [--sso] [--users-file FILE] [--config FILE]

The web console: every VM's state, restore points, live runs and the bus's events, and the
operator's actions (back up now, verify, restore, restore test), each confirmed and published as
the same validated command the CLI publishes. Runs until SIGTERM / Ctrl-C.

HTTPS with console.tlsCertFile / console.tlsKeyFile; without them plain HTTP, on a loopback
address only. Logins: the users file (console.usersFile, scrypt-hashed passwords), or the
engine's SSO (console.ssoEngine) for users like admin@internal listed with --sso. Roles: viewer
(looks) and operator (acts). Every action and login is written to console.auditFile.

  --listen HOST:PORT   where to listen (default: console.listen, else ${CONFIG_DEFAULTS.consoleListen})
  --config FILE        Ferry config (default $FERRY_CONFIG, ./ferry.json, /etc/ferry/ferry.json)
  --nats URL           ${NATS_OPTION_HELP}

adduser: add or replace a user. The password is read from stdin (one line; prompted without
echo on a terminal), never from the command line. --sso: an engine user (name with '@') whose
password the engine's SSO checks; no password is stored.

Exit: 0 stopped cleanly / user written, 2 usage, 3 NATS or the listen address unavailable,
4 bad config, user name, role or password.
`;

async function readPassword(io: CommandIO): Promise<string> {
  const stdin = process.stdin;
  if (stdin.isTTY) {
    let muted = false;
    const out = new Writable({ write(chunk, _e, cb) { if (!muted) io.stderr.write(chunk); cb(); } });
    const rl = createInterface({ input: stdin, output: out, terminal: true });
    const ask = (q: string) => new Promise<string>((r) => { io.stderr.write(q); muted = true; rl.question("", (a) => { muted = false; io.stderr.write("\n"); r(a); }); });
    try {
      const a = await ask("password: ");
      const b = await ask("again: ");
      if (a !== b) throw new UsersFileError("the two passwords differ");
      return a;
    } finally {
      rl.close();
    }
  }
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8").split(/\r?\n/)[0] ?? "";
}

/** console.usersFile of the config (read without resolving any secret), relative to it. */
async function usersFileOf(configFlag: string | undefined, io: CommandIO): Promise<string> {
  const where = locateConfig(configFlag, io.env, io.cwd);
  if (!where.file) return resolve(io.cwd, CONFIG_DEFAULTS.consoleUsersFile);
  let raw: { console?: { usersFile?: unknown } };
  try {
    raw = JSON.parse(await readFile(where.file, "utf8")) as typeof raw;
  } catch (err) {
    throw new UsersFileError(`${where.file}: ${(err as Error).message}`);
  }
  const f = raw.console?.usersFile;
  return resolve(dirname(where.file), typeof f === "string" && f ? f : CONFIG_DEFAULTS.consoleUsersFile);
}

async function addUser(args: string[], io: CommandIO): Promise<number> {
  const parsed = parseCommandLine("console adduser", args, { role: { type: "string" }, sso: { type: "boolean" }, "users-file": { type: "string" }, config: { type: "string" } }, io, usage);
  if (!parsed) return ExitCode.usage;
  const [name, ...extra] = parsed.positionals;
  const role = parsed.values.role as Role | undefined;
  if (!name || extra.length || !role) {
    io.stderr.write(`ferry console adduser: name one user and give --role ${ROLES.join("|")}\n`);
    return ExitCode.usage;
  }
  if (!ROLES.includes(role)) {
    io.stderr.write(`ferry console adduser: --role must be ${ROLES.join(" or ")}\n`);
    return ExitCode.invalid;
  }
  try {
    const file = parsed.values["users-file"] ? resolve(io.cwd, parsed.values["users-file"]) : await usersFileOf(parsed.values.config, io);
    const password = parsed.values.sso ? undefined : await readPassword(io);
    if (password !== undefined && password.length < MIN_PASSWORD) throw new UsersFileError(`the password needs at least ${MIN_PASSWORD} characters (read from stdin)`);
    await putUser(file, name, role, password);
    io.stdout.write(`user ${name} (${role}${password === undefined ? ", engine SSO" : ""}) written to ${file}\n`);
    return ExitCode.ok;
  } catch (err) {
    io.stderr.write(`ferry console adduser: ${(err as Error).message}\n`);
    return err instanceof UsersFileError ? ExitCode.invalid : ExitCode.unavailable;
  }
}

const command: Command = {
  name: "console",
  summary: "the web console: status, restore points, live runs, events and operator actions",
  usage,
  async run(args, io) {
    if (args[0] === "adduser") return addUser(args.slice(1), io);
    const parsed = parseCommandLine("console", args, { listen: { type: "string" }, config: { type: "string" }, nats: { type: "string" }, "log-level": { type: "string" } }, io, usage);
    if (!parsed) return ExitCode.usage;
    if (parsed.positionals.length) {
      io.stderr.write(`ferry console: unexpected '${parsed.positionals[0]}'\n${usage}`);
      return ExitCode.usage;
    }
    const log = createLogger({ level: parsed.values["log-level"] ?? io.env.FERRY_LOG_LEVEL ?? "info", base: { pid: process.pid, function: "console" } });
    let session;
    try {
      session = await openSession({ configFlag: parsed.values.config, natsFlag: parsed.values.nats, env: io.env, cwd: io.cwd, name: "ferry-console", needConfig: true, warn: warnTo(io, "console") });
    } catch (err) {
      io.stderr.write(`ferry console: ${(err as Error).message}\n`);
      return err instanceof ConfigError ? ExitCode.invalid : ExitCode.unavailable;
    }
    const { nc, config } = session;
    const stop = new AbortController();
    const onTerm = () => stop.abort();
    process.once("SIGTERM", onTerm);
    io.signal.addEventListener("abort", onTerm, { once: true });
    try {
      const caPems = await readCaFiles(config.engines);
      const timeZone = (config as { timeZone?: string }).timeZone ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
      const running = await startConsole(consoleOptionsFromConfig(config, { nc, cwd: io.cwd, listen: parsed.values.listen, caPems, restore: settingsFromConfig(config, caPems).restore!, timeZone, log }));
      io.stderr.write(`ferry console: listening on ${running.url}\n`);
      await new Promise<void>((r) => (stop.signal.aborted ? r() : stop.signal.addEventListener("abort", () => r(), { once: true })));
      await running.close();
      return ExitCode.ok;
    } catch (err) {
      io.stderr.write(`ferry console: ${(err as Error).message}\n`);
      return err instanceof ConsoleSetupError && !(err instanceof ConsoleListenError) ? ExitCode.invalid : ExitCode.unavailable;
    } finally {
      process.off("SIGTERM", onTerm);
      await nc.drain().catch(() => undefined);
    }
  },
};
export default command;
