/**
 * Which NATS to use, decided once by a command: `--nats URL[,URL]`, else $NATS_URL, else the
 * config file's `nats` section, else nats://127.0.0.1:4222. Credentials come from the config.
 * Takes the environment as a parameter: nothing here reads process.env.
 */
import type { NatsConnectOptions } from "./connect.ts";

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

export interface NatsSettingsSource {
  readonly flag?: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly config?: {
    readonly nats: { readonly servers: readonly string[]; readonly credsFile?: string; readonly user?: string; readonly password?: string };
  };
  readonly name: string;
}

export function natsSettings(src: NatsSettingsSource): NatsConnectOptions & { readonly via: string } {
  const nats = src.config?.nats;
  const creds = {
    ...(nats?.credsFile ? { credsFile: nats.credsFile } : {}),
    ...(nats?.user ? { user: nats.user } : {}),
    ...(nats?.password ? { password: nats.password } : {}),
  };
  if (src.flag) return { servers: src.flag, name: src.name, via: "--nats", ...creds };
  if (src.env.NATS_URL) return { servers: src.env.NATS_URL, name: src.name, via: "NATS_URL", ...creds };
  if (nats?.servers.length) return { servers: nats.servers, name: src.name, via: "config", ...creds };
  return { servers: DEFAULT_NATS_URL, name: src.name, via: "default" };
}
