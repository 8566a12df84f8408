/**
 * What the bus commands (run, publish, events, state, checkpoints, backup, status) share: find and
 * load the config (or its defaults when there is no file), decide the NATS settings (the one
 * reader, adapters/nats/settings.ts) and connect. The caller passes env and cwd (commands get them
 * from CommandIO); nothing here reads process.env.
 *
 * It loads the config, so it lives in config/, above the adapters it uses.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../adapters/nats/connect.ts";
import { natsSettings, natsUrlFromEnv, serversText } from "../adapters/nats/settings.ts";
import { loadConfig, parseConfig, type LoadedConfig } from "./load.ts";
import { locateConfig } from "./locate.ts";

export interface SessionOptions {
  readonly configFlag?: string | undefined;
  readonly natsFlag?: string | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** NATS client name. */
  readonly name: string;
  /**
   * Whether the whole config is needed (run) or only its NATS part (publish, events, ...): with
   * --nats or NATS_URL given, those do not load the config at all, so a missing engine password
   * in this shell does not stop an operator from watching the bus.
   */
  readonly needConfig: boolean;
  /** Told about a deprecated setting in use (the command prints it on stderr). */
  readonly warn?: ((message: string) => void) | undefined;
  /** Reconnect attempts after the first connection (default: forever when needConfig, else 10). */
  readonly maxReconnectAttempts?: number | undefined;
}

export interface Session {
  readonly nc: NatsConnection;
  readonly config: LoadedConfig;
  /** How the servers were chosen: --nats, NATS_URL, FERRY_NATS_URL, config, default. */
  readonly via: string;
  readonly servers: string;
}

export async function resolveConfig(o: Pick<SessionOptions, "configFlag" | "env" | "cwd">): Promise<LoadedConfig> {
  const where = locateConfig(o.configFlag, o.env, o.cwd);
  return where.file ? loadConfig(where.file, o.env, { envFile: true }) : parseConfig({}, { baseDir: o.cwd, env: o.env });
}

export async function openSession(o: SessionOptions): Promise<Session> {
  const skipConfig = !o.needConfig && (o.natsFlag !== undefined || natsUrlFromEnv(o.env) !== undefined);
  const config = skipConfig ? await parseConfig({}, { baseDir: o.cwd, env: {} }) : await resolveConfig(o);
  const settings = natsSettings({ flag: o.natsFlag, env: o.env, config: skipConfig ? undefined : config, name: o.name });
  for (const w of settings.warnings) o.warn?.(w);
  const nc = await connectNats({ ...settings, maxReconnectAttempts: o.maxReconnectAttempts ?? (o.needConfig ? -1 : 10) });
  return { nc, config, via: settings.via, servers: serversText(settings) };
}
