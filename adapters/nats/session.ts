/**
 * What the bus commands (run, publish, events) share: find and load the config (or its
 * defaults when there is no file), decide the NATS settings and connect. The caller passes
 * env and cwd (commands get them from CommandIO); nothing here reads process.env.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { loadConfig, parseConfig, type LoadedConfig } from "../../config/load.ts";
import { locateConfig } from "../../config/locate.ts";
import { connectNats } from "./connect.ts";
import { natsSettings } from "./settings.ts";

export interface SessionOptions {
  readonly configFlag?: string;
  readonly natsFlag?: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** NATS client name. */
  readonly name: string;
  /**
   * Whether the whole config is needed (run) or only its NATS part (publish, events): with
   * --nats or NATS_URL given, publish/events do not load the config at all, so a missing
   * engine password in this shell does not stop an operator from watching the bus.
   */
  readonly needConfig: boolean;
}

export interface Session {
  readonly nc: NatsConnection;
  readonly config: LoadedConfig;
  /** How the servers were chosen: --nats, NATS_URL, config, default. */
  readonly via: string;
  readonly servers: string;
}

export async function resolveConfig(o: Pick<SessionOptions, "configFlag" | "env" | "cwd">): Promise<LoadedConfig> {
  const where = locateConfig(o.configFlag, o.env, o.cwd);
  return where.file ? loadConfig(where.file, o.env, { envFile: true }) : parseConfig({}, { baseDir: o.cwd, env: o.env });
}

export async function openSession(o: SessionOptions): Promise<Session> {
  const skipConfig = !o.needConfig && (o.natsFlag !== undefined || o.env.NATS_URL !== undefined);
  const config = skipConfig ? await parseConfig({}, { baseDir: o.cwd, env: {} }) : await resolveConfig(o);
  const settings = natsSettings({ flag: o.natsFlag, env: o.env, config: skipConfig ? undefined : config, name: o.name });
  const nc = await connectNats({ ...settings, maxReconnectAttempts: o.needConfig ? -1 : 10 });
  const servers = typeof settings.servers === "string" ? settings.servers : settings.servers.join(",");
  return { nc, config, via: settings.via, servers };
}
