/**
 * The one reader of NATS settings: every `ferry` command (and the config loader's NATS_URL
 * override) decides which NATS to use here.
 *
 * Servers, first that applies:
 *   1. `--nats URL[,URL]`
 *   2. `$NATS_URL` (comma-separated; the same variable the nats CLI reads)
 *      `$FERRY_NATS_URL` is a deprecated alias, used only when NATS_URL is unset, with a warning
 *   3. the config file's `nats.servers`
 *   4. nats://127.0.0.1:4222 (CONFIG_DEFAULTS.natsUrl)
 * Credentials (`nats.credsFile`, or `nats.user` + the password from `nats.passwordEnv`) come from
 * the config file, whichever way the servers were chosen.
 *
 * Takes the environment as a parameter: nothing here reads process.env.
 */
import { CONFIG_DEFAULTS } from "../../contracts/config.ts";
import type { NatsConnectOptions } from "./connect.ts";

export const DEFAULT_NATS_URL: string = CONFIG_DEFAULTS.natsUrl;
/** The environment variable naming the NATS servers. */
export const NATS_URL_ENV = "NATS_URL";
/** Deprecated alias of NATS_URL (older `ferry backup` / `ferry status`); warned about when used. */
export const DEPRECATED_NATS_URL_ENV = "FERRY_NATS_URL";

type Env = Readonly<Record<string, string | undefined>>;

/** The NATS servers the environment names, if any: NATS_URL, else the deprecated FERRY_NATS_URL. */
export function natsUrlFromEnv(env: Env): { url: string; via: string; warning?: string } | undefined {
  const url = env[NATS_URL_ENV]?.trim();
  if (url) return { url, via: NATS_URL_ENV };
  const old = env[DEPRECATED_NATS_URL_ENV]?.trim();
  if (old) {
    return {
      url: old,
      via: DEPRECATED_NATS_URL_ENV,
      warning: `${DEPRECATED_NATS_URL_ENV} is deprecated and will be removed: set ${NATS_URL_ENV} instead`,
    };
  }
  return undefined;
}

/** `a,b` or a list → the server URLs, trimmed, empties dropped. */
export function serverList(servers: string | readonly string[]): string[] {
  return (typeof servers === "string" ? servers.split(",") : [...servers]).map((s) => s.trim()).filter(Boolean);
}

export interface NatsSettingsSource {
  /** The command's --nats value. */
  readonly flag?: string | undefined;
  readonly env: Env;
  /** The loaded config (servers and credentials), when the command has one. */
  readonly config?:
    | {
        readonly nats: { readonly servers: readonly string[]; readonly credsFile?: string | undefined; readonly user?: string | undefined; readonly password?: string | undefined };
      }
    | undefined;
  /** NATS client name, e.g. ferry-backup. */
  readonly name: string;
}

export interface NatsSettings extends NatsConnectOptions {
  /** How the servers were chosen: --nats, NATS_URL, FERRY_NATS_URL, config, default. */
  readonly via: string;
  /** Things the operator should hear about (a deprecated variable); the command prints them. */
  readonly warnings: readonly string[];
}

export function natsSettings(src: NatsSettingsSource): NatsSettings {
  const nats = src.config?.nats;
  const creds = {
    ...(nats?.credsFile ? { credsFile: nats.credsFile } : {}),
    ...(nats?.user ? { user: nats.user } : {}),
    ...(nats?.password ? { password: nats.password } : {}),
  };
  if (src.flag) return { servers: src.flag, name: src.name, via: "--nats", warnings: [], ...creds };
  const fromEnv = natsUrlFromEnv(src.env);
  if (fromEnv) return { servers: fromEnv.url, name: src.name, via: fromEnv.via, warnings: fromEnv.warning ? [fromEnv.warning] : [], ...creds };
  if (nats?.servers.length) return { servers: nats.servers, name: src.name, via: "config", warnings: [], ...creds };
  return { servers: DEFAULT_NATS_URL, name: src.name, via: "default", warnings: [], ...creds };
}

/** The servers of a settings object as one comma-separated string, for messages. */
export function serversText(settings: Pick<NatsConnectOptions, "servers">): string {
  return serverList(settings.servers).join(",");
}
