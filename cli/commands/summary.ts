import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats, natsSettings, NatsUnavailableError } from "../../adapters/nats/mod.ts";
import { createEngineClient, type EngineClient } from "../../adapters/ovirt/client.ts";
import { openSlotClaims } from "../../adapters/store/mod.ts";
import { checkConfig, ConfigError, parseConfigText } from "../../config/load.ts";
import { locateConfig } from "../../config/locate.ts";
import { resolveConfig } from "../../config/session.ts";
import { natsProblem, type VmPolicies } from "../../config/status-source.ts";
import { assertTimeZone } from "../../domain/schedule/mod.ts";
import { buckets } from "../../infra/streams/mod.ts";
import { postDailySummary, readDailySummary, summaryText, type DailySummary, type SummaryEngine, type SummaryPostResult } from "../../pipeline/daily-summary.ts";
import { createDeploymentId } from "../../pipeline/deployment.ts";
import { caPathFor, readTrustedCa } from "../../pipeline/trust.ts";
import { ExitCode, NATS_OPTION_HELP, warnTo, type Command, type CommandIO } from "../command.ts";

const usage = `Usage: ferry summary [--post] [--json] [--tz ZONE] [--config FILE] [--nats URL]

Today's summary: how many VMs are protected (last result ok, not overdue), failed (last result
failed), overdue (no good restore point within the schedule's interval + 60 min) and never backed
up, and the bytes of every restore point in the store. The facts are those of \`ferry status\`
(outcome events in FERRY_EVENTS, KV ferry-runs, ferry-leases, ferry-chains); the day is the
local day of the config's timeZone.

\`ferry schedule --daemon\` posts it to every configured engine's audit log (severity normal,
origin ferry) once a day at summary.time (default 07:00). With --post it is posted now — still
once per engine and day: an engine that has it (claim summary.<engine>.<day> in KV
ferry-schedule, or the engine refusing the same custom_id) is not posted to again.

Options:
  --post          post it to every engine of the config (needs the engines' passwords)
  --json          one JSON document: the summary, its text and (with --post) each engine's result
  --tz ZONE       count the day in this zone instead of the config's timeZone
  --config FILE   config file (default: $FERRY_CONFIG, ./ferry.json, /etc/ferry/ferry.json)
  --nats URL      ${NATS_OPTION_HELP}

Exit: 0 printed (and posted, or already there), 1 a post failed, 2 usage, 3 NATS, the config
file or an engine unavailable, 4 bad config.
`;

class Missing extends Error {}

/** What the summary needs from the config file, without engine secrets. */
interface SummaryConfig {
  readonly file?: string | undefined;
  readonly policies: VmPolicies;
  readonly timeZone: string;
  readonly summary: { readonly enabled: boolean; readonly time: string };
  readonly nats: { servers: string[]; credsFile?: string; user?: string; password?: string; replicas: number };
}

async function readSummaryConfig(flag: string | undefined, io: Pick<CommandIO, "env" | "cwd">): Promise<SummaryConfig> {
  const where = locateConfig(flag, io.env, io.cwd);
  let raw: unknown = {};
  if (where.file) {
    let text: string;
    try {
      text = await readFile(where.file, "utf8");
    } catch (err) {
      throw new Missing(`cannot read ${where.file}: ${(err as Error).message}`);
    }
    raw = parseConfigText(text, where.file);
  }
  // The wording every command prints for an invalid config (ConfigError), without engine secrets.
  const cfg = checkConfig(raw, { env: io.env, source: where.file ?? "config" });
  const passwordEnv = (raw as { nats?: { passwordEnv?: string } }).nats?.passwordEnv;
  return {
    file: where.file,
    policies: Object.fromEntries(Object.entries(cfg.vms).map(([name, p]) => [name, { enabled: p.enabled, schedule: p.schedule }])),
    timeZone: cfg.timeZone,
    summary: cfg.summary,
    nats: {
      servers: [...cfg.nats.servers],
      ...(cfg.nats.credsFile ? { credsFile: cfg.nats.credsFile } : {}),
      ...(cfg.nats.user ? { user: cfg.nats.user } : {}),
      ...(passwordEnv && io.env[passwordEnv] ? { password: io.env[passwordEnv] } : {}),
      replicas: cfg.nats.replicas,
    },
  };
}

/** Engine clients of every configured engine (passwords resolved, each engine's trusted CA). */
async function openEngines(flag: string | undefined, io: Pick<CommandIO, "env" | "cwd">): Promise<Map<string, EngineClient>> {
  const config = await resolveConfig({ configFlag: flag, env: io.env, cwd: io.cwd });
  const engines = new Map<string, EngineClient>();
  for (const [name, e] of Object.entries(config.engines)) {
    const ca = await readTrustedCa(caPathFor(name, e, config.file, io.cwd));
    engines.set(name, createEngineClient({ url: e.url, user: e.user, password: e.password, caPem: ca?.pem, insecure: e.insecure, correlationId: `ferry-summary-${name}` }));
  }
  return engines;
}

/**
 * Read today's summary and post it to every engine that does not have it yet: `ferry summary
 * --post`, and `ferry schedule --daemon` once a day. The engine clients live for this call only.
 */
export async function postSummaryNow(o: { nc: NatsConnection; configFlag: string | undefined; io: Pick<CommandIO, "env" | "cwd">; policies: VmPolicies; timeZone: string; replicas: number; now?: Date }): Promise<{ summary: DailySummary; results: SummaryPostResult[] }> {
  const now = o.now ?? new Date();
  const summary = await readDailySummary(o.nc, { policies: o.policies, timeZone: o.timeZone, now });
  const engines = await openEngines(o.configFlag, o.io);
  try {
    const deployment = await createDeploymentId(await new Kvm(o.nc).open(buckets.runs));
    const claims = await openSlotClaims(o.nc, { replicas: o.replicas });
    return { summary, results: await postDailySummary({ summary, engines: engines as ReadonlyMap<string, SummaryEngine>, claims, deployment, now }) };
  } finally {
    for (const e of engines.values()) await e.close().catch(() => undefined);
  }
}

export function formatPostResult(r: SummaryPostResult): string {
  const what = { posted: "posted", claimed: "already posted today (claimed)", duplicate: "already in the engine's audit log", failed: `FAILED: ${r.error ?? ""}` }[r.status];
  return `${r.engine} ${r.day}: ${what}`;
}

const command: Command = {
  name: "summary",
  summary: "print today's summary (protected, failed, overdue, bytes stored); --post puts it in each engine's audit log once a day",
  usage,
  async run(args, io) {
    let v;
    try {
      v = parseArgs({ args, options: { post: { type: "boolean" }, json: { type: "boolean" }, tz: { type: "string" }, config: { type: "string" }, nats: { type: "string" } } }).values;
    } catch (err) {
      io.stderr.write(`ferry summary: ${(err as Error).message}\n`);
      return ExitCode.usage;
    }
    try {
      if (v.tz !== undefined) assertTimeZone(v.tz);
    } catch (err) {
      io.stderr.write(`ferry summary: ${(err as Error).message}\n`);
      return ExitCode.usage;
    }
    let cfg: SummaryConfig;
    try {
      cfg = await readSummaryConfig(v.config, io);
    } catch (err) {
      io.stderr.write(`ferry summary: ${(err as Error).message}\n`);
      return err instanceof Missing ? ExitCode.unavailable : ExitCode.invalid;
    }
    const timeZone = v.tz ?? cfg.timeZone;
    let nc: NatsConnection | undefined;
    try {
      const settings = natsSettings({ flag: v.nats, env: io.env, config: { nats: cfg.nats }, name: "ferry-summary" });
      for (const w of settings.warnings) warnTo(io, "summary")(w);
      nc = await connectNats({ ...settings, maxReconnectAttempts: 5 });
      let summary: DailySummary;
      let results: SummaryPostResult[] | undefined;
      if (v.post) ({ summary, results } = await postSummaryNow({ nc, configFlag: v.config, io, policies: cfg.policies, timeZone, replicas: cfg.nats.replicas }));
      else summary = await readDailySummary(nc, { policies: cfg.policies, timeZone, now: new Date() });
      if (v.json) io.stdout.write(`${JSON.stringify({ ...summary, text: summaryText(summary), ...(results ? { posts: results } : {}) }, null, 2)}\n`);
      else {
        io.stdout.write(`${summaryText(summary)}\n`);
        for (const r of results ?? []) io.stdout.write(`${formatPostResult(r)}\n`);
        if (results && results.length === 0) io.stdout.write("no engines in the config: nothing posted\n");
      }
      return results?.some((r) => r.status === "failed") ? ExitCode.failed : ExitCode.ok;
    } catch (err) {
      if (err instanceof ConfigError) {
        io.stderr.write(`ferry summary: ${err.message}\n`);
        return ExitCode.invalid;
      }
      io.stderr.write(`ferry summary: ${err instanceof NatsUnavailableError ? (err as Error).message : natsProblem(err)}\n`);
      return ExitCode.unavailable;
    } finally {
      if (nc && !nc.isClosed()) await nc.close().catch(() => undefined);
    }
  },
};

export default command;
