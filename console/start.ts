/**
 * Starting the console: settings from the config (defaults from CONFIG_DEFAULTS, paths relative
 * to the config file), the listen rule (plain HTTP only on loopback), then the bus feed, the
 * facts, the actions and the HTTP app. Used by `ferry console` and by the browser test.
 */
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { CONFIG_DEFAULTS, LISTEN_ADDRESS } from "../contracts/config.ts";
import type { LoadedConfig } from "../config/load.ts";
import type { VmPolicies } from "../config/status-source.ts";
import type { RestoreSettings } from "../pipeline/restore-plan.ts";
import { caPathFor } from "../pipeline/trust.ts";
import { createActions, type ActionEngine } from "./actions.ts";
import { createAuditLog } from "./audit.ts";
import { createBusFeed } from "./bus-feed.ts";
import { createFacts } from "./facts.ts";
import { buildConsoleApp, type ConsoleLog } from "./server.ts";
import { createSessions } from "./sessions.ts";
import { ssoChecker } from "./sso.ts";
import { createAuthenticator } from "./users.ts";

/** The console cannot start as configured: `message` says what to change. */
export class ConsoleSetupError extends Error {
  override readonly name = "ConsoleSetupError";
}

/** The listen address is taken or not allowed to this process. */
export class ConsoleListenError extends ConsoleSetupError {}

export interface ConsoleOptions {
  readonly nc: NatsConnection;
  readonly listen: string;
  readonly tls?: { readonly certFile: string; readonly keyFile: string } | undefined;
  readonly usersFile: string;
  readonly auditFile: string;
  readonly sessionMinutes: number;
  /** The engine whose SSO checks users listed with `sso: true`. */
  readonly ssoEngine?: string | undefined;
  readonly policies: VmPolicies;
  readonly timeZone: string;
  readonly storeRoot: string;
  readonly engines: Readonly<Record<string, ActionEngine>>;
  readonly restore: RestoreSettings;
  readonly replicates: (vm: string) => boolean;
  readonly engineOf: (vm: string) => string | undefined;
  readonly caFiles: Readonly<Record<string, string>>;
  readonly warnDays: number;
  readonly log: ConsoleLog;
  /** How far back the bus's stored events are read at start (default 14 days). */
  readonly eventsSinceMs?: number;
  readonly clock?: () => Date;
}

export interface RunningConsole {
  readonly url: string;
  close(): Promise<void>;
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])$/;

/** host and port of a listen address; refuses plain HTTP off loopback. */
export function checkListen(listen: string, tls: boolean): { host: string; port: number } {
  const m = LISTEN_ADDRESS.exec(listen);
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new ConsoleSetupError(`listen address '${listen.slice(0, 80)}' is not host:port (e.g. 127.0.0.1:8440)`);
  if (!tls && !LOOPBACK.test(m[1]!)) {
    throw new ConsoleSetupError(`plain HTTP is served on loopback only: ${listen} needs console.tlsCertFile and console.tlsKeyFile (or listen on 127.0.0.1)`);
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

/** The console's options from a loaded config (engines' passwords resolved) and the CA files. */
export function consoleOptionsFromConfig(
  config: LoadedConfig,
  o: { nc: NatsConnection; cwd: string; listen?: string | undefined; caPems: Readonly<Record<string, string | undefined>>; restore: RestoreSettings; timeZone: string; log: ConsoleLog },
): ConsoleOptions {
  const base = config.file ? dirname(config.file) : o.cwd;
  const c = config.console;
  const rel = (p: string) => resolve(base, p);
  if ((c?.tlsCertFile === undefined) !== (c?.tlsKeyFile === undefined)) throw new ConsoleSetupError("set both console.tlsCertFile and console.tlsKeyFile, or neither");
  const policies: VmPolicies = Object.fromEntries(Object.entries(config.vms).map(([name, p]) => [name, { enabled: p.enabled, schedule: p.schedule as VmPolicies[string]["schedule"] }]));
  return {
    nc: o.nc,
    listen: o.listen ?? c?.listen ?? CONFIG_DEFAULTS.consoleListen,
    tls: c?.tlsCertFile && c.tlsKeyFile ? { certFile: rel(c.tlsCertFile), keyFile: rel(c.tlsKeyFile) } : undefined,
    usersFile: rel(c?.usersFile ?? CONFIG_DEFAULTS.consoleUsersFile),
    auditFile: rel(c?.auditFile ?? CONFIG_DEFAULTS.consoleAuditFile),
    sessionMinutes: c?.sessionMinutes ?? CONFIG_DEFAULTS.consoleSessionMinutes,
    ssoEngine: c?.ssoEngine,
    policies,
    timeZone: o.timeZone,
    storeRoot: config.store.path,
    engines: Object.fromEntries(Object.entries(config.engines).map(([name, e]) => [name, { url: e.url, user: e.user, password: e.password, caPem: o.caPems[name], insecure: e.insecure }])),
    restore: o.restore,
    replicates: (vm) => config.vms[vm]?.replicateToDr ?? CONFIG_DEFAULTS.replicateToDr,
    engineOf: (vm) => config.vms[vm]?.engine,
    // An engine used with insecure: true trusts no CA file, so it has none to expire.
    caFiles: Object.fromEntries(Object.entries(config.engines).filter(([, e]) => !e.insecure).map(([name, e]) => [name, caPathFor(name, e, config.file, o.cwd)])),
    warnDays: config.certs.warnDays,
    log: o.log,
  };
}

export async function startConsole(o: ConsoleOptions): Promise<RunningConsole> {
  const { host, port } = checkListen(o.listen, o.tls !== undefined);
  let https: { cert: string; key: string } | undefined;
  if (o.tls) {
    try {
      https = { cert: await readFile(o.tls.certFile, "utf8"), key: await readFile(o.tls.keyFile, "utf8") };
    } catch (err) {
      throw new ConsoleSetupError(`the console's TLS certificate or key cannot be read: ${(err as Error).message}`);
    }
  }
  if (o.ssoEngine && !o.engines[o.ssoEngine]) throw new ConsoleSetupError(`console.ssoEngine '${o.ssoEngine}' is not an engine of the config`);
  const sso = o.ssoEngine ? o.engines[o.ssoEngine] : undefined;

  const feed = createBusFeed({ nc: o.nc, sinceMs: o.eventsSinceMs ?? 14 * 86_400_000, clock: o.clock, onError: (err) => o.log.warn({ err: String(err) }, "console: following the bus failed; the pages may be stale") });
  const facts = await createFacts({
    nc: o.nc, feed, policies: o.policies, timeZone: o.timeZone, storeRoot: o.storeRoot, replicates: o.replicates, caFiles: o.caFiles, warnDays: o.warnDays, clock: o.clock,
    onError: (err) => o.log.warn({ err: String(err) }, "console: following the outcomes failed"),
  });
  const app = await buildConsoleApp(
    {
      facts,
      feed,
      actions: createActions({ nc: o.nc, feed, storeRoot: o.storeRoot, engines: o.engines, restore: o.restore, engineOf: o.engineOf, clock: o.clock }),
      auth: createAuthenticator({ usersFile: o.usersFile, ssoCheck: sso && o.ssoEngine ? ssoChecker({ name: o.ssoEngine, url: sso.url, caPem: sso.caPem, insecure: sso.insecure }) : undefined }),
      sessions: createSessions({ idleMs: o.sessionMinutes * 60_000 }),
      audit: createAuditLog({ file: o.auditFile, onError: (err) => o.log.error({ err: String(err) }, "console: the audit log cannot be written") }),
      secure: https !== undefined,
      log: o.log,
      vmNames: Object.keys(o.policies),
      timeZone: o.timeZone,
      clock: o.clock,
    },
    https,
  );
  await feed.ready;
  let address: string;
  try {
    address = await app.listen({ host, port });
  } catch (err) {
    await feed.stop();
    facts.stop();
    throw new ConsoleListenError(`cannot listen on ${o.listen}: ${(err as Error).message}`);
  }
  const url = address.replace("0.0.0.0", "127.0.0.1");
  o.log.info({ url, users: o.usersFile, audit: o.auditFile }, "console listening");
  return {
    url,
    async close() {
      await app.close();
      facts.stop();
      await feed.stop();
    },
  };
}
