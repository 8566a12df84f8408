import { parseArgs } from "node:util";
import { ConfigError, ConfigNotFoundError } from "../../config/load.ts";
import { followBus, NatsUnavailableError, type BusEvent } from "../../adapters/nats/mod.ts";
import { openSession, type Session } from "../../config/session.ts";
import { ExitCode, NATS_OPTION_HELP, type Command, type CommandIO, parseCommandLine, warnTo } from "../command.ts";

const usage = `Usage: ferry events [subject] [options]

Follow the bus: by default every subject of Ferry's streams — commands (FERRY_COMMANDS), facts,
outcomes, failures, rejections and engine events (FERRY_EVENTS) — and transfer progress (live
only). With --since or --all, what the streams hold comes first, in time order across the
streams, then new events as they come. One line per event; --json prints one JSON object per
line instead. The subject may use NATS wildcards: backup.*, *.failed, *.*.rejected.

  ferry events                      everything from now on
  ferry events '*.failed' --all     every failure still in the streams
  ferry events backup.requested.rejected --since 1h

Options:
  --all             start at the beginning of the streams (default: only new events)
  --since DURATION  start this long ago: 30s, 10m, 2h, 7d
  --count N         exit after N events
  --json            {"subject","stream","seq","time","data"} per line (data: the event; "text" if not JSON)
  --config FILE     config file (for the NATS settings)
  --nats URL        ${NATS_OPTION_HELP}
Stop with Ctrl-C. Exit: 0, 2 usage, 3 NATS unreachable.
`;

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function parseDuration(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([smhd])$/.exec(s);
  return m ? Number(m[1]) * (UNITS[m[2] as string] as number) : undefined;
}

function show(v: unknown): string {
  if (typeof v === "string") {
    const t = v.length > 120 ? `${v.slice(0, 117)}...` : v;
    return /[\s"=]/.test(t) || t === "" ? JSON.stringify(t) : t;
  }
  if (Array.isArray(v)) return `[${v.length}]`;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (typeof o.name === "string") return show(o.name);
    if (typeof o.id === "string") return show(o.id);
    if (typeof o.path === "string") return show(o.path);
    return "{...}";
  }
  return String(v);
}

/** One human line: time, subject, the fields that matter, where it is stored. */
export function formatEvent(e: BusEvent): string {
  const where = e.stream ? `${e.stream}#${e.seq}` : "live";
  if (e.data === undefined || e.data === null || typeof e.data !== "object" || Array.isArray(e.data)) {
    return `${e.received.toISOString()}  ${e.subject}  (not a JSON object) ${show(e.text)}  [${where}]`;
  }
  const d = e.data as Record<string, unknown>;
  const time = typeof d.time === "string" ? d.time : e.received.toISOString();
  const skip = new Set(["id", "time", "correlationId", "errors", "checksum"]);
  const fields: string[] = [];
  if (e.subject === "transfer.progress" && typeof d.bytes === "number" && typeof d.total === "number" && d.total > 0) {
    fields.push(`${Math.floor((100 * d.bytes) / d.total)}%`);
  }
  for (const [k, v] of Object.entries(d)) {
    if (skip.has(k) || v === undefined) continue;
    fields.push(`${k}=${show(v)}`);
  }
  return `${time}  ${e.subject}  ${fields.join(" ")}  [${where}]`;
}

const command: Command = {
  name: "events",
  summary: "follow events on the bus (human lines or --json)",
  usage,
  async run(args: string[], io: CommandIO): Promise<number> {
    const parsed = parseCommandLine("events", args, {
          all: { type: "boolean" },
          since: { type: "string" },
          count: { type: "string" },
          json: { type: "boolean" },
          config: { type: "string" },
          nats: { type: "string" },
        }, io);
    if (!parsed) return ExitCode.usage;
    const v = parsed.values;
    if (parsed.positionals.length > 1) {
      io.stderr.write("ferry events: at most one subject\n");
      return ExitCode.usage;
    }
    const sinceMs = v.since === undefined ? undefined : parseDuration(v.since);
    if (v.since !== undefined && sinceMs === undefined) {
      io.stderr.write(`ferry events: --since wants a duration like 30s, 10m, 2h or 7d, not '${v.since}'\n`);
      return ExitCode.usage;
    }
    const count = v.count === undefined ? undefined : Number(v.count);
    if (count !== undefined && (!Number.isInteger(count) || count < 1)) {
      io.stderr.write("ferry events: --count wants a positive integer\n");
      return ExitCode.usage;
    }
    const stop = new AbortController();
    const onStop = () => stop.abort();
    io.signal.addEventListener("abort", onStop, { once: true });
    process.once("SIGTERM", onStop);
    let session: Session | undefined;
    try {
      session = await openSession({ configFlag: v.config, natsFlag: v.nats, env: io.env, cwd: io.cwd, name: "ferry-events", needConfig: false, warn: warnTo(io, "events") });
      let seen = 0;
      const from = v.all ? { kind: "all" as const } : sinceMs !== undefined ? { kind: "since" as const, time: new Date(Date.now() - sinceMs) } : { kind: "new" as const };
      session.nc.closed().then(() => stop.abort());
      await followBus(session.nc, { subject: parsed.positionals[0], from, signal: stop.signal }, (e) => {
        if (stop.signal.aborted) return;
        const line = v.json
          ? JSON.stringify({ subject: e.subject, stream: e.stream, seq: e.seq, time: e.received.toISOString(), ...(e.data !== undefined ? { data: e.data } : { text: e.text }) })
          : formatEvent(e);
        io.stdout.write(`${line}\n`);
        if (count !== undefined && ++seen >= count) stop.abort();
      });
      return ExitCode.ok;
    } catch (err) {
      if (err instanceof ConfigError) {
        io.stderr.write(`ferry events: ${err.message}\n(use --nats URL to skip the config file)\n`);
        return ExitCode.invalid;
      }
      if (err instanceof ConfigNotFoundError || err instanceof NatsUnavailableError) {
        io.stderr.write(`ferry events: ${err.message}\n`);
        return ExitCode.unavailable;
      }
      if (err instanceof Error && /^no Ferry stream or subject matches/.test(err.message)) {
        io.stderr.write(`ferry events: ${err.message}\n`);
        return ExitCode.usage;
      }
      io.stderr.write(`ferry events: ${err instanceof Error ? err.message : String(err)}\n`);
      return ExitCode.unavailable;
    } finally {
      process.off("SIGTERM", onStop);
      io.signal.removeEventListener("abort", onStop);
      if (session && !session.nc.isClosed()) await session.nc.close().catch(() => undefined);
    }
  },
};
export default command;
