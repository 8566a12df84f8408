/**
 * Reading Ferry's config file: parse JSON, apply the two environment overrides, validate with the
 * schema in contracts/config.ts plus its cross-key rules, resolve secrets, make paths absolute,
 * and hand back one deep-frozen object. Every problem is collected and reported at once, each
 * naming its JSON path. Secret values never appear in an error, a warning or JSON output.
 */
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { natsUrlFromEnv, serverList } from "../adapters/nats/settings.ts";
import { PermanentError } from "../contracts/errors.ts";
import {
  configCrossChecks,
  FerryConfigSchema,
  type ConfigIssue,
  type EngineConfig,
  type FerryConfig,
  type NatsConfig,
} from "../contracts/config.ts";
import { readEnvFile } from "./env-file.ts";
import { formatIssue, formatPath, fromZodIssues, plainMessage } from "./issues.ts";

export type ResolvedEngine = EngineConfig & {
  /** Resolved from passwordEnv, passwordFile or password. Hidden from JSON.stringify. */
  readonly password: string;
};

export type LoadedConfig = DeepReadonly<
  Omit<FerryConfig, "engines" | "nats"> & {
    engines: Record<string, ResolvedEngine>;
    nats: NatsConfig & { password?: string };
    /** Absolute path of the file this came from, when it came from a file. */
    file?: string;
  }
>;

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export interface ConfigWarning {
  path: (string | number)[];
  message: string;
}

export interface ParseOptions {
  /** Relative paths in the config are resolved against this directory. */
  baseDir: string;
  /** Environment for passwordEnv and the overrides (BACKUP_DIR, NATS_URL). */
  env: Readonly<Record<string, string | undefined>>;
  /** Shown in error messages ("ferry.json: ..."). */
  source?: string;
  onWarning?: (warning: ConfigWarning) => void;
}

/** The config file is missing or unreadable. */
export class ConfigNotFoundError extends PermanentError {
  constructor(file: string, reason: string) {
    super("CONFIG_NOT_FOUND", `${file}: ${reason}`, { file });
  }
}

/** The config was read but is not valid: `issues` lists every problem with its JSON path. */
export class ConfigError extends PermanentError {
  readonly issues: readonly ConfigIssue[];
  constructor(source: string, issues: ConfigIssue[]) {
    const lines = issues.map((i) => `  ${formatIssue(i)}`);
    super("CONFIG_INVALID", `${source} is not a valid Ferry config (${issues.length} problem${issues.length === 1 ? "" : "s"}):\n${lines.join("\n")}`, {
      source,
      issues: issues.map((i) => ({ path: formatPath(i.path), message: i.message })),
    });
    this.issues = Object.freeze(issues.map((i) => Object.freeze({ ...i })));
  }
}

let knownKeysCache: string[] | undefined;
/** Every property name the schema knows, for "did you mean" hints. */
function knownKeys(): string[] {
  if (knownKeysCache) return knownKeysCache;
  const keys = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== "object") return;
    const props = (node as { properties?: Record<string, unknown> }).properties;
    if (props) for (const k of Object.keys(props)) keys.add(k);
    Object.values(node).forEach(walk);
  };
  walk(z.toJSONSchema(FerryConfigSchema, { io: "input" }));
  knownKeysCache = [...keys];
  return knownKeysCache;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * BACKUP_DIR and NATS_URL (comma-separated, the nats CLI's variable) win over the file, for
 * containers and demos. NATS_URL is read by natsUrlFromEnv, the same reader every command's
 * NATS settings go through (adapters/nats/settings.ts), so `ferry config show` prints the
 * servers the commands use.
 */
function applyEnvOverrides(raw: unknown, env: ParseOptions["env"]): unknown {
  if (!isRecord(raw)) return raw;
  const out: Record<string, unknown> = { ...raw };
  if (env.BACKUP_DIR) out.store = { ...(isRecord(raw.store) ? raw.store : {}), path: env.BACKUP_DIR };
  const nats = natsUrlFromEnv(env);
  if (nats) out.nats = { ...(isRecord(raw.nats) ? raw.nats : {}), servers: serverList(nats.url) };
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** JSON.stringify(engine) shows the password as "***"; spreading the object keeps the real one. */
function hidePasswordInJson<T extends { password?: string }>(o: T): T {
  Object.defineProperty(o, "toJSON", {
    enumerable: false,
    value(this: T) {
      const { password, ...rest } = this;
      return password === undefined ? rest : { ...rest, password: "***" };
    },
  });
  return o;
}

async function readSecretFile(file: string): Promise<{ value?: string; problem?: string; warning?: string }> {
  try {
    const [text, info] = await Promise.all([readFile(file, "utf8"), stat(file)]);
    const value = text.replace(/\r?\n$/, "");
    if (!value) return { problem: `${file} is empty` };
    const warning = (info.mode & 0o077) !== 0
      ? `${file} can be read by other users (mode ${(info.mode & 0o777).toString(8).padStart(4, "0")}): chmod 600 it`
      : undefined;
    return warning ? { value, warning } : { value };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { problem: code === "ENOENT" ? `${file} does not exist` : `${file} cannot be read (${code ?? "error"})` };
  }
}

/** The schema's problems (in plain words) and the cross-key rules' problems of one document. */
function schemaIssues(input: unknown) {
  const result = FerryConfigSchema.safeParse(input, { error: (iss) => plainMessage(iss) });
  const issues: ConfigIssue[] = result.success ? [] : fromZodIssues(result.error.issues, knownKeys());
  issues.push(...configCrossChecks(input));
  return { result, issues };
}

/**
 * The checks of parseConfig without resolving any secret: for the commands that read only part
 * of the config and need no engine password (`ferry hooks serve`, `ferry summary`). The
 * environment overrides (BACKUP_DIR, NATS_URL) apply; paths stay as written. Throws the same
 * ConfigError parseConfig would for these problems.
 */
export function checkConfig(raw: unknown, options: Pick<ParseOptions, "env" | "source">): FerryConfig {
  const { result, issues } = schemaIssues(applyEnvOverrides(raw, options.env));
  if (issues.length > 0 || !result.success) throw new ConfigError(options.source ?? "config", dedupe(issues));
  return result.data;
}

/** A config file's text as JSON; ConfigError (with the line and column) when it is not JSON. */
export function parseConfigText(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(source, [{ path: [], message: jsonProblem(text, err) }]);
  }
}

/** A config file as JSON: ConfigNotFoundError when it is missing or unreadable, ConfigError when it is not JSON. */
export async function readConfigFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigNotFoundError(file, code === "ENOENT" ? "no such file" : `cannot be read (${code ?? "error"})`);
  }
  return parseConfigText(text, file);
}

/**
 * Validate an already-parsed JSON document. Throws ConfigError listing every problem.
 * Use this for configs built in code (tests, the demo); use loadConfig for files.
 */
export async function parseConfig(raw: unknown, options: ParseOptions): Promise<LoadedConfig> {
  const source = options.source ?? "config";
  const input = applyEnvOverrides(raw, options.env);
  const { result, issues } = schemaIssues(input);

  const warnings: ConfigWarning[] = [];
  const natsFromEnv = natsUrlFromEnv(options.env);
  if (natsFromEnv?.warning) warnings.push({ path: ["nats", "servers"], message: natsFromEnv.warning });
  const resolveRel = (p: string) => path.resolve(options.baseDir, p);
  const passwords = new Map<string, string>();
  let natsPassword: string | undefined;

  // Secrets are resolved from the raw input so their problems join the schema's.
  const rawEngines = isRecord(input) && isRecord(input.engines) ? input.engines : {};
  for (const [name, engine] of Object.entries(rawEngines)) {
    if (!isRecord(engine)) continue;
    if (typeof engine.passwordEnv === "string") {
      // An invalid name is already reported by the schema.
      if (!ENV_NAME.test(engine.passwordEnv)) continue;
      const value = options.env[engine.passwordEnv];
      if (value) passwords.set(name, value);
      else {
        issues.push({
          path: ["engines", name, "passwordEnv"],
          message: `environment variable ${engine.passwordEnv} is not set (put it in ferry.env or export it)`,
        });
      }
    } else if (typeof engine.passwordFile === "string" && engine.passwordFile) {
      const secret = await readSecretFile(resolveRel(engine.passwordFile));
      if (secret.problem) issues.push({ path: ["engines", name, "passwordFile"], message: secret.problem });
      if (secret.warning) warnings.push({ path: ["engines", name, "passwordFile"], message: secret.warning });
      if (secret.value !== undefined) passwords.set(name, secret.value);
    } else if (typeof engine.password === "string" && engine.password) {
      passwords.set(name, engine.password);
      warnings.push({
        path: ["engines", name, "password"],
        message: "a literal password in the config file: move it to passwordEnv or passwordFile",
      });
    }
    if (engine.insecure === true) {
      warnings.push({ path: ["engines", name, "insecure"], message: "TLS verification is off for this engine" });
    }
  }
  const rawNats = isRecord(input) && isRecord(input.nats) ? input.nats : {};
  if (typeof rawNats.passwordEnv === "string" && ENV_NAME.test(rawNats.passwordEnv)) {
    natsPassword = options.env[rawNats.passwordEnv];
    if (!natsPassword) {
      issues.push({ path: ["nats", "passwordEnv"], message: `environment variable ${rawNats.passwordEnv} is not set` });
    }
  }

  if (issues.length > 0 || !result.success) throw new ConfigError(source, dedupe(issues));
  for (const w of warnings) options.onWarning?.(w);

  const parsed = result.data;
  const engines: Record<string, ResolvedEngine> = {};
  for (const [name, engine] of Object.entries(parsed.engines)) {
    engines[name] = hidePasswordInJson({
      ...engine,
      ...(engine.caFile !== undefined ? { caFile: resolveRel(engine.caFile) } : {}),
      ...(engine.passwordFile !== undefined ? { passwordFile: resolveRel(engine.passwordFile) } : {}),
      password: passwords.get(name)!,
    });
  }
  const nats = hidePasswordInJson({
    ...parsed.nats,
    ...(parsed.nats.credsFile !== undefined ? { credsFile: resolveRel(parsed.nats.credsFile) } : {}),
    ...(natsPassword !== undefined ? { password: natsPassword } : {}),
  });
  const config = {
    ...parsed,
    engines,
    nats,
    store: { ...parsed.store, path: resolveRel(parsed.store.path) },
    ...(parsed.hooks
      ? {
          hooks: {
            ...parsed.hooks,
            ...(parsed.hooks.tokenFile !== undefined ? { tokenFile: resolveRel(parsed.hooks.tokenFile) } : {}),
            ...(parsed.hooks.tlsCertFile !== undefined ? { tlsCertFile: resolveRel(parsed.hooks.tlsCertFile) } : {}),
            ...(parsed.hooks.tlsKeyFile !== undefined ? { tlsKeyFile: resolveRel(parsed.hooks.tlsKeyFile) } : {}),
          },
        }
      : {}),
    ...(options.source !== undefined && path.isAbsolute(options.source) ? { file: options.source } : {}),
  };
  return deepFreeze(config) as LoadedConfig;
}

function dedupe(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = formatIssue(i);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** "Unexpected token } in JSON at position 42" → with a line and column. */
function jsonProblem(text: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const pos = /position (\d+)/.exec(message);
  if (pos && !/line \d+/.test(message)) {
    const before = text.slice(0, Number(pos[1]));
    const line = before.split("\n").length;
    const column = Number(pos[1]) - before.lastIndexOf("\n");
    return `not valid JSON: ${message} (line ${line}, column ${column})`;
  }
  return `not valid JSON: ${message}`;
}

/** The secrets file `ferry config import` writes beside the config. */
export const ENV_FILE_NAME = "ferry.env";

export interface LoadOptions {
  onWarning?: (warning: ConfigWarning) => void;
  /**
   * Also read variables from an env file: true (the default) = `ferry.env` beside the config
   * file, if it exists; a string = that file (must exist); false = none. Variables already in
   * `env` win.
   */
  envFile?: boolean | string;
}

/**
 * Read, validate and resolve a config file. Relative paths inside it are relative to its
 * directory. Throws ConfigNotFoundError (file missing) or ConfigError (every problem at once).
 */
export async function loadConfig(
  file: string,
  env: Readonly<Record<string, string | undefined>>,
  options: LoadOptions = {},
): Promise<LoadedConfig> {
  const absolute = path.resolve(file);
  const envFileOption = options.envFile ?? true;
  const early: ConfigWarning[] = [];
  if (envFileOption) {
    const implicit = envFileOption === true;
    const envFile = implicit ? path.join(path.dirname(absolute), ENV_FILE_NAME) : path.resolve(envFileOption);
    if (!implicit && !existsSync(envFile)) throw new ConfigNotFoundError(envFile, "no such file");
    try {
      // The process environment wins over the file, as systemd's Environment= over EnvironmentFile=.
      env = { ...(await readEnvFile(envFile)), ...env };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "error";
      if (!implicit) throw new ConfigNotFoundError(envFile, `cannot be read (${code})`);
      early.push({ path: [], message: `${envFile} cannot be read (${code}): its variables are not used` });
    }
  }
  const raw = await readConfigFile(absolute);
  for (const w of early) options.onWarning?.(w);
  return parseConfig(raw, {
    baseDir: path.dirname(absolute),
    env,
    source: absolute,
    ...(options.onWarning ? { onWarning: options.onWarning } : {}),
  });
}

/** The config as `ferry config show` prints it: every default filled in, secrets as "***". */
export function redactedConfig(config: LoadedConfig): unknown {
  return JSON.parse(JSON.stringify(config));
}
