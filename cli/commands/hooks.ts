/**
 * `ferry hooks serve`: the hook endpoint (ingress/hooks) wired to the bus. Reads the config's
 * `hooks` section and NATS settings, the token ($FERRY_HOOKS_TOKEN or hooks.tokenFile), publishes
 * through the runtime's contract-checked JetStream publisher, and stops on SIGTERM/SIGINT after
 * the posts in flight are answered.
 */
import { dirname, join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { PermissionViolationError, RequestError, type NatsConnection } from "@nats-io/nats-core";
import { connectNats, natsSettings, NatsUnavailableError, serversText } from "../../adapters/nats/mod.ts";
import { CONFIG_DEFAULTS, LISTEN_ADDRESS } from "../../contracts/config.ts";
import { readEnvFile } from "../../config/env-file.ts";
import { checkConfig, ConfigError, ConfigNotFoundError, ENV_FILE_NAME, parseConfig, readConfigFile, type LoadedConfig } from "../../config/load.ts";
import { locateConfig } from "../../config/locate.ts";
import { createLogger, createPublisher, parseListen } from "../../functions/runtime/mod.ts";
import { BusUnavailableError, createHooksServer, HOOKS_TOKEN_ENV, HooksTokenInvalidError, HooksTokenMissingError, resolveHooksToken, type HookPublisher, type HooksServer } from "../../ingress/hooks/mod.ts";
import { ExitCode, NATS_OPTION_HELP, parseCommandLine, warnTo, type Command, type CommandIO } from "../command.ts";
import { InputFileMissingError, readInputFile } from "../input-file.ts";

const usage = `Usage: ferry hooks serve [--listen HOST:PORT] [options]

Serve the hook endpoint: oVirt/VDSM hook scripts (infra/hooks/) and other tools POST here, and
each valid post becomes one event on the bus. Every route but /healthz needs the header
'Authorization: Bearer <token>'; bodies are JSON (Content-Type: application/json).

  POST /v1/backup    → backup.requested   {"vm":"web01"}  {"vm":"web01","mode":"full"}
  POST /v1/restore   → restore.requested  {"vm":"web01","checkpoint":3}
  POST /v1/event     → ovirt.event        {"engine":"prd","kind":"vm-migrating","vm":{"id":"<uuid>","name":"web01"},"description":"..."}
  GET  /healthz      200 while NATS is connected, else 503

Answers: 202 {"id","subject","stream","seq","duplicate"} once JetStream has stored the event;
400 with the reasons; 401 (no or wrong token); 404; 405; 413 (body over hooks.maxBodyBytes);
415 (not JSON); 503 with Retry-After when NATS cannot store it now (retry: nothing was lost).
The same post twice is stored once: the msgID is the body's "id", else 'hook-<Idempotency-Key>'
(or X-Request-Id), else 'hook-<hash of route and body>' (within the stream's 1-hour duplicate window).

The token: $${HOOKS_TOKEN_ENV}, else the file hooks.tokenFile in the config names (at least 16
characters, e.g. openssl rand -hex 32). Without one the server does not start (exit 3).

  FERRY_HOOKS_TOKEN=$(cat /etc/ferry/hooks-token) ferry hooks serve --listen 0.0.0.0:8441
  curl --fail -H "Authorization: Bearer $(cat /etc/ferry/hooks-token)" -H 'Content-Type: application/json' \\
       -d '{"vm":"web01"}' http://127.0.0.1:8441/v1/backup

Options:
  --listen HOST:PORT  where to listen (default: hooks.listen, else ${CONFIG_DEFAULTS.hooksListen}); port 0 = any free port
  --config FILE       config file: the hooks section (token file, TLS, body limit) and NATS settings
  --nats URL          ${NATS_OPTION_HELP}
  --log-level LEVEL   debug, info (default, or $FERRY_LOG_LEVEL), warn, error

Logs one JSON line per post (accepted or refused, never a header or the token) on stdout.
Exit: 0 stopped (SIGTERM/SIGINT), 2 usage, 3 no token (neither $${HOOKS_TOKEN_ENV} nor the
hooks.tokenFile), the config file missing, NATS unavailable or the address in use, 4 invalid
config (checked whole, before connecting) or a token too short or with spaces.
`;

/** The first error in `err`'s cause chain that is a T. */
function causeOf<T>(err: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) if (e instanceof type) return e;
  return undefined;
}

/**
 * JetStream through the runtime's publisher (the event is checked against its contract strictly
 * first). The two refusals an operator must fix, not wait out, get a hint in the 503.
 */
function busPublisher(nc: NatsConnection): HookPublisher {
  const pub = createPublisher(nc, jetstream(nc), { timeoutMs: 5000 });
  return {
    async publish(subject, event, msgId) {
      try {
        return await pub.publish({ subject, event, msgId });
      } catch (err) {
        if (causeOf(err, RequestError)?.isNoResponders()) {
          throw new BusUnavailableError(subject, `no JetStream stream stores ${subject}: start Ferry's functions (ferry run all), which create the streams`, err);
        }
        if (causeOf(err, PermissionViolationError)) {
          throw new BusUnavailableError(subject, `this NATS user may not publish ${subject} (infra/nats/auth.conf: the user hooks may)`, err);
        }
        throw err;
      }
    },
  };
}

/**
 * The config's nats and hooks sections, checked and resolved by the config loader (NATS password
 * from passwordEnv, ferry.env beside the file read, hooks paths made absolute). The whole file is
 * checked first (schema and cross-key rules, as every command: an invalid config is exit 4 before
 * any connection), but no engine secret is resolved: the endpoint needs no engine password.
 */
async function loadHooksConfig(flag: string | undefined, io: CommandIO): Promise<LoadedConfig> {
  const where = locateConfig(flag, io.env, io.cwd);
  if (!where.file) return parseConfig({}, { baseDir: io.cwd, env: io.env });
  const raw = await readConfigFile(where.file);
  const envFile = join(dirname(where.file), ENV_FILE_NAME);
  const fromFile = await readEnvFile(envFile).catch((err: NodeJS.ErrnoException) => {
    warnTo(io, "hooks")(`${envFile} cannot be read (${err.code ?? "error"}): its variables are not used`);
    return {};
  });
  const env = { ...fromFile, ...io.env };
  checkConfig(raw, { env, source: where.file });
  const doc = typeof raw === "object" && raw !== null && !Array.isArray(raw)
    ? Object.fromEntries(Object.entries(raw).filter(([k]) => k === "nats" || k === "hooks"))
    : raw;
  return parseConfig(doc, { baseDir: dirname(where.file), env, source: where.file, onWarning: (w) => warnTo(io, "hooks")(w.message) });
}

async function serve(args: string[], io: CommandIO): Promise<number> {
  const parsed = parseCommandLine(
    "hooks",
    args,
    { listen: { type: "string" }, config: { type: "string" }, nats: { type: "string" }, "log-level": { type: "string" } },
    io,
    usage,
  );
  if (!parsed) return ExitCode.usage;
  const v = parsed.values;
  if (parsed.positionals.length) {
    io.stderr.write(`ferry hooks serve: unexpected argument '${parsed.positionals[0]}'\n`);
    return ExitCode.usage;
  }
  if (v.listen !== undefined && (!LISTEN_ADDRESS.test(v.listen) || Number(LISTEN_ADDRESS.exec(v.listen)?.[2]) > 65535)) {
    io.stderr.write(`ferry hooks serve: --listen '${v.listen}' is not HOST:PORT (e.g. 127.0.0.1:8441 or [::1]:8441)\n`);
    return ExitCode.usage;
  }

  const stop = new AbortController();
  const onStop = () => stop.abort();
  io.signal.addEventListener("abort", onStop, { once: true });
  process.once("SIGTERM", onStop);
  let nc: NatsConnection | undefined;
  let server: HooksServer | undefined;
  try {
    const config = await loadHooksConfig(v.config, io);
    const hooks = config.hooks;
    const token = await resolveHooksToken({ env: io.env, tokenFile: hooks?.tokenFile });
    if (token.warning) warnTo(io, "hooks")(token.warning);
    const tls = hooks?.tlsCertFile && hooks.tlsKeyFile
      ? { cert: await readInputFile("hooks.tlsCertFile", hooks.tlsCertFile, io.cwd), key: await readInputFile("hooks.tlsKeyFile", hooks.tlsKeyFile, io.cwd) }
      : undefined;
    const log = createLogger({ level: v["log-level"] ?? io.env.FERRY_LOG_LEVEL ?? "info", base: { fn: "hooks", pid: process.pid } });

    const settings = natsSettings({ flag: v.nats, env: io.env, config, name: "ferry-hooks" });
    for (const w of settings.warnings) warnTo(io, "hooks")(w);
    // Reconnect forever: the endpoint rides out a NATS restart, answering 503 meanwhile.
    const bus = (nc = await connectNats({ ...settings, maxReconnectAttempts: -1 }));
    let connected = true;
    void (async () => {
      for await (const s of bus.status()) {
        if (s.type === "disconnect") connected = false;
        else if (s.type === "reconnect") connected = true;
      }
    })();

    server = createHooksServer({
      token: token.token,
      publisher: busPublisher(bus),
      log,
      maxBodyBytes: hooks?.maxBodyBytes ?? CONFIG_DEFAULTS.hooksMaxBodyBytes,
      tls,
      busReady: () => connected && !bus.isClosed(),
    });
    const { host, port } = parseListen(v.listen ?? hooks?.listen ?? CONFIG_DEFAULTS.hooksListen);
    if (stop.signal.aborted) return ExitCode.ok;
    let url: string;
    try {
      url = await server.listen(host, port);
    } catch (err) {
      io.stderr.write(`ferry hooks serve: cannot listen on ${host}:${port}: ${(err as Error).message}\n`);
      return ExitCode.unavailable;
    }
    log.info({ url, tls: tls !== undefined, tokenFrom: token.source, nats: serversText(settings), maxBodyBytes: hooks?.maxBodyBytes ?? CONFIG_DEFAULTS.hooksMaxBodyBytes }, "hooks listening");
    await new Promise<void>((resolve) => (stop.signal.aborted ? resolve() : stop.signal.addEventListener("abort", () => resolve(), { once: true })));
    log.info({}, "hooks stopping");
    await server.close();
    server = undefined;
    await bus.drain().catch(() => undefined);
    log.info({}, "hooks stopped");
    return ExitCode.ok;
  } catch (err) {
    if (err instanceof HooksTokenMissingError) {
      io.stderr.write(`ferry hooks serve: ${err.message}\n`);
      return ExitCode.unavailable;
    }
    if (err instanceof ConfigError || err instanceof HooksTokenInvalidError) {
      io.stderr.write(`ferry hooks serve: ${err.message}\n`);
      return ExitCode.invalid;
    }
    if (err instanceof ConfigNotFoundError || err instanceof NatsUnavailableError || err instanceof InputFileMissingError) {
      io.stderr.write(`ferry hooks serve: ${err.message}\n`);
      return ExitCode.unavailable;
    }
    io.stderr.write(`ferry hooks serve: ${err instanceof Error ? err.message : String(err)}\n`);
    return ExitCode.failed;
  } finally {
    await server?.close().catch(() => undefined);
    if (nc && !nc.isClosed()) await nc.close().catch(() => undefined);
    process.off("SIGTERM", onStop);
    io.signal.removeEventListener("abort", onStop);
  }
}

const command: Command = {
  name: "hooks",
  summary: "serve the hook endpoint oVirt/VDSM hook scripts post backups, restores and engine events to",
  usage,
  async run(args: string[], io: CommandIO): Promise<number> {
    const [sub, ...rest] = args;
    if (sub === "serve") return serve(rest, io);
    io.stderr.write(sub ? `ferry hooks: unknown subcommand '${sub}'\n\n${usage}` : usage);
    return ExitCode.usage;
  },
};
export default command;
