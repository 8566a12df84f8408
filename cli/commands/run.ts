import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, ConfigNotFoundError } from "../../config/load.ts";
import { NatsUnavailableError } from "../../adapters/nats/mod.ts";
import { openSession, type Session } from "../../config/session.ts";
import { createLogger, hostFunctions, UnknownFunctionError } from "../../functions/runtime/mod.ts";
import { ExitCode, NATS_OPTION_HELP, type Command, type CommandIO, parseCommandLine, warnTo } from "../command.ts";

const usage = `Usage: ferry run <function...|all> [options]

Run Ferry functions in this process until SIGTERM/SIGINT. Each function is a folder under
functions/ with a main.ts; its name is its durable consumer, so several processes running the
same function share its work. Streams, KV buckets and consumers are created or updated first.

Options:
  --config FILE         config file (default: $FERRY_CONFIG, ./ferry.json, /etc/ferry/ferry.json, else defaults)
  --nats URL[,URL]      ${NATS_OPTION_HELP}
  --replicas N          stream/bucket/consumer replicas (default: the config's nats.replicas)
  --grace SECONDS       on SIGTERM, how long in-flight work may finish before it is handed back (default 30)
  --max-in-flight N     messages handled at once by this process across its functions
                        (default: the sum of the functions' concurrency)
  --log-level LEVEL     trace|debug|info|warn|error (default info, or $FERRY_LOG_LEVEL)
  --functions-dir DIR   where to find function folders (default: functions/ of this install)

Logs are JSON lines on stdout. The process registers the NATS micro service "ferry":
  nats micro ls; nats micro stats ferry
Exit: 0 after a clean stop, 3 when NATS is unreachable or the connection failed, 4 for a bad config.
`;

const defaultFunctionsDir = fileURLToPath(new URL("../../functions/", import.meta.url));

const command: Command = {
  name: "run",
  summary: "run functions (or all) on the bus until stopped",
  usage,
  async run(args: string[], io: CommandIO): Promise<number> {
    const parsed = parseCommandLine("run", args, {
          config: { type: "string" },
          nats: { type: "string" },
          replicas: { type: "string" },
          grace: { type: "string" },
          "max-in-flight": { type: "string" },
          "log-level": { type: "string" },
          "functions-dir": { type: "string" },
        }, io, usage);
    if (!parsed) return ExitCode.usage;
    const v = parsed.values;
    const names = parsed.positionals;
    const num = (s: string | undefined, name: string, min: number): number | undefined => {
      if (s === undefined) return undefined;
      const n = Number(s);
      if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}`);
      return n;
    };
    let replicas: number | undefined, graceS: number | undefined, maxInFlight: number | undefined;
    try {
      if (names.length === 0) throw new Error("name at least one function, or 'all'");
      replicas = num(v.replicas, "replicas", 1);
      graceS = num(v.grace, "grace", 0);
      maxInFlight = num(v["max-in-flight"], "max-in-flight", 1);
    } catch (err) {
      io.stderr.write(`ferry run: ${(err as Error).message}\n`);
      return ExitCode.usage;
    }

    // SIGINT is wired by cli/main.ts into io.signal; SIGTERM (systemd, docker stop) stops us the same way.
    const stop = new AbortController();
    const onStop = () => stop.abort(new Error("stopping"));
    io.signal.addEventListener("abort", onStop, { once: true });
    process.once("SIGTERM", onStop);
    let session: Session | undefined;
    try {
      session = await openSession({
        configFlag: v.config,
        natsFlag: v.nats,
        env: io.env,
        cwd: io.cwd,
        name: `ferry-run:${names.join(",")}`,
        needConfig: true,
        warn: warnTo(io, "run"),
      });
      const log = createLogger({ level: v["log-level"] ?? io.env.FERRY_LOG_LEVEL ?? "info", base: { pid: process.pid } });
      log.info({ nats: session.servers, via: session.via, config: session.config.file ?? "(defaults)" }, "connected");
      const result = await hostFunctions({
        config: session.config,
        functionsDir: v["functions-dir"] ? resolve(io.cwd, v["functions-dir"]) : defaultFunctionsDir,
        names,
        nc: session.nc,
        log,
        signal: stop.signal,
        replicas: replicas ?? session.config.nats.replicas,
        graceMs: (graceS ?? 30) * 1000,
        ...(maxInFlight !== undefined ? { maxInFlight } : {}),
      });
      if (result.connectionError) {
        io.stderr.write(`ferry run: NATS connection failed: ${result.connectionError.message}\n`);
        return ExitCode.unavailable;
      }
      return ExitCode.ok;
    } catch (err) {
      if (err instanceof ConfigError) {
        io.stderr.write(`ferry run: ${err.message}\n`);
        return ExitCode.invalid;
      }
      if (err instanceof ConfigNotFoundError || err instanceof NatsUnavailableError) {
        io.stderr.write(`ferry run: ${err.message}\n`);
        return ExitCode.unavailable;
      }
      if (err instanceof UnknownFunctionError) {
        io.stderr.write(`ferry run: ${err.message}\n`);
        return ExitCode.usage;
      }
      io.stderr.write(`ferry run: ${err instanceof Error ? err.message : String(err)}\n`);
      return ExitCode.failed;
    } finally {
      // runFunctions drains on a normal stop; after an error the connection must not keep us alive.
      if (session && !session.nc.isClosed()) await session.nc.close().catch(() => undefined);
      process.off("SIGTERM", onStop);
      io.signal.removeEventListener("abort", onStop);
    }
  },
};
export default command;
