/**
 * pino for every Ferry process: JSON lines, object first, errors under `err`. Secrets are
 * removed twice: by key (password, token, authorization, ...) with pino's redact, and by shape
 * (imageio ticket URLs, bearer tokens, `password=...`) by running every string through
 * redactText — including the message and error messages and stacks.
 */
import { pino, stdSerializers, type DestinationStream, type Logger } from "pino";
import { redactText } from "../../adapters/secrets.ts";

const SECRET_KEYS = ["password", "pass", "passwd", "token", "secret", "authorization", "cookie", "ticket"];
export const redactPaths: readonly string[] = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `headers.${k}`, `*.headers.${k}`]);

export interface LoggerOptions {
  readonly level?: string;
  /** Base fields, e.g. { service: "ferry", fn: "backup-requested" }. */
  readonly base?: Record<string, unknown>;
  /** Where to write; default stdout. Tests pass a stream to read the lines back. */
  readonly destination?: DestinationStream;
}

/** Strings in any nested value, through redactText. Depth-limited: logs are not for huge objects. */
export function redactDeep(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return redactText(value);
  if (depth > 6 || value === null || typeof value !== "object") return value;
  if (value instanceof Error) return redactDeep(stdSerializers.err(value), depth + 1);
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, depth + 1));
  if (value instanceof Date || ArrayBuffer.isView(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactDeep(v, depth + 1);
  return out;
}

function errSerializer(err: unknown): unknown {
  if (!(err instanceof Error)) return redactDeep(err);
  const s = stdSerializers.err(err) as unknown as Record<string, unknown>;
  const fields = (err as { fields?: unknown }).fields;
  return redactDeep(fields ? { ...s, fields } : s);
}

export function createLogger(o: LoggerOptions = {}): Logger {
  return pino(
    {
      level: o.level ?? "info",
      base: { service: "ferry", ...(o.base ?? {}) },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: [...redactPaths], censor: "***" },
      serializers: { err: errSerializer, error: errSerializer },
      formatters: {
        level: (label) => ({ level: label }),
        log: (obj) => redactDeep(obj) as Record<string, unknown>,
      },
      hooks: {
        // The message string (and printf-style args) are redacted too.
        logMethod(args, method) {
          const cleaned = args.map((a) => (typeof a === "string" ? redactText(a) : a));
          return method.apply(this, cleaned as Parameters<typeof method>);
        },
      },
    },
    o.destination,
  );
}

export type { Logger } from "pino";
