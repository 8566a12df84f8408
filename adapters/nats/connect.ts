/**
 * One way to connect to NATS for every Ferry process: servers, optional credentials, a client
 * name that shows up in `nats server report connections`, and endless reconnects (a function
 * should ride out a NATS restart, not exit).
 */
import { readFile } from "node:fs/promises";
import { connect } from "@nats-io/transport-node";
import { credsAuthenticator, type NatsConnection } from "@nats-io/nats-core";
import { TransientError } from "../../contracts/errors.ts";

export interface NatsConnectOptions {
  readonly servers: string | readonly string[];
  /** Client name, e.g. `ferry-run:backup-requested`. */
  readonly name?: string;
  readonly user?: string;
  readonly password?: string;
  readonly token?: string;
  /** A `.creds` file (JWT + nkey seed). */
  readonly credsFile?: string;
  /** PEM CA file for tls:// servers. */
  readonly caFile?: string;
  /** Give up reconnecting after this many attempts (-1 = forever, the default). */
  readonly maxReconnectAttempts?: number;
  readonly timeoutMs?: number;
}

export class NatsUnavailableError extends TransientError {
  constructor(servers: string, cause: unknown) {
    super("NATS_UNAVAILABLE", `cannot connect to NATS at ${servers}: ${cause instanceof Error ? cause.message : String(cause)}`, { servers }, { cause });
  }
}

export async function connectNats(o: NatsConnectOptions): Promise<NatsConnection> {
  const servers = typeof o.servers === "string" ? o.servers.split(",").map((s) => s.trim()) : [...o.servers];
  try {
    return await connect({
      servers,
      name: o.name,
      user: o.user,
      pass: o.password,
      token: o.token,
      authenticator: o.credsFile ? credsAuthenticator(await readFile(o.credsFile)) : undefined,
      tls: o.caFile ? { caFile: o.caFile } : undefined,
      maxReconnectAttempts: o.maxReconnectAttempts ?? -1,
      timeout: o.timeoutMs ?? 5000,
    });
  } catch (err) {
    throw new NatsUnavailableError(servers.join(","), err);
  }
}
