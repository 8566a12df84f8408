import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats, natsSettings, NatsUnavailableError, provisionInfra } from "../../adapters/nats/mod.ts";
import { openSlotClaims } from "../../adapters/store/mod.ts";
import { configCrossChecks, FerryConfigSchema } from "../../contracts/config.ts";
import { locateConfig } from "../../config/locate.ts";
import { assertTimeZone, runSchedule, type ScheduledVm, type SlotClaims, type SlotPublisher, type SlotResult } from "../../domain/schedule/mod.ts";
import { createPublisher } from "../../functions/runtime/mod.ts";
import { ExitCode, NATS_OPTION_HELP, warnTo, type Command, type CommandIO } from "../command.ts";
import { Kvm } from "@nats-io/kv";
import { ensureBucket } from "../../adapters/nats/mod.ts";
import { bucketDefinitions, buckets } from "../../infra/streams/mod.ts";
import { createChainGuard, type ChainGuard } from "../../pipeline/chain-guard.ts";
import { formatCheckResult, loadCertConfig, runCertCheck } from "./cert.ts";
import { formatPostResult, postSummaryNow } from "./summary.ts";
import { summaryDueDay } from "../../pipeline/daily-summary.ts";

const usage = `Usage: ferry schedule [options]

Publish backup.requested for every VM whose schedule (config: vms.<name>.schedule, days + time or
cron) is due. Run it from cron every few minutes, or keep it running with --daemon.

Each due slot is published once: its message id is '<vm>:<slot>' (JetStream drops a repeat within
FERRY_COMMANDS' duplicate window), and a claim in KV ferry-schedule (kept 8 days) stops a catch-up
run from publishing a slot again after that window.

Options:
  --config FILE     config file with the VMs and their policies (default: $FERRY_CONFIG, ./ferry.json, /etc/ferry/ferry.json)
  --now ISO         pretend it is this time (testing, catching up)
  --window MIN      look back this many minutes for due slots (default 10; cover the cron interval)
  --since ISO       look back to this time instead of --window
  --tz ZONE         read the schedules in this zone for this run (default: the config's timeZone,
                    else the machine's; $TZ does not change a configured timeZone)
  --dry-run         only print what is due; publish nothing (no NATS needed)
  --daemon          keep running: check every minute until interrupted; once a day (at start and
                    after midnight) also run the certificate check of \`ferry cert check\`, and
                    post the daily summary (\`ferry summary\`) to every engine at summary.time
  --nats URL        ${NATS_OPTION_HELP}
  --json            one JSON line per slot: {vm, slot, key, status}

Exit: 0 done, 1 a publish failed, 2 usage, 3 NATS unavailable, 4 bad config or schedule.
`;

const MINUTE = 60_000;

interface Loaded {
  vms: ScheduledVm[];
  /** The config's timeZone (the machine's when it sets none). */
  timeZone: string;
  summary: { enabled: boolean; time: string };
  nats: { servers: string[]; credsFile?: string; user?: string; password?: string; replicas: number };
  file: string;
}

/** The VM list and NATS settings from the config file; secrets other than the NATS password are not needed here. */
async function loadSchedules(flag: string | undefined, io: CommandIO): Promise<Loaded> {
  const where = locateConfig(flag, io.env, io.cwd);
  if (!where.file) throw new ConfigMissing("no config file found (use --config FILE): the schedules live in its vms section");
  let text: string;
  try {
    text = await readFile(where.file, "utf8");
  } catch (err) {
    throw new ConfigMissing(`cannot read ${where.file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UsageProblem(`cannot read ${where.file}: ${(err as Error).message}`);
  }
  const parsed = FerryConfigSchema.safeParse(raw);
  const cross = configCrossChecks(raw).filter((i) => i.path[0] === "vms" || i.path[0] === "defaults");
  if (!parsed.success || cross.length) {
    const issues = [...(parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`)), ...cross.map((i) => `${i.path.join(".")}: ${i.message}`)];
    throw new UsageProblem(`${where.file}: ${issues.slice(0, 5).join("; ")}`);
  }
  const cfg = parsed.data;
  const passwordEnv = (raw as { nats?: { passwordEnv?: string } }).nats?.passwordEnv;
  return {
    file: where.file,
    timeZone: cfg.timeZone,
    summary: cfg.summary,
    vms: Object.entries(cfg.vms).map(([name, p]) => ({ name, engine: p.engine, enabled: p.enabled, schedule: p.schedule })),
    nats: {
      servers: [...cfg.nats.servers],
      ...(cfg.nats.credsFile ? { credsFile: cfg.nats.credsFile } : {}),
      ...(cfg.nats.user ? { user: cfg.nats.user } : {}),
      ...(passwordEnv && io.env[passwordEnv] ? { password: io.env[passwordEnv] } : {}),
      replicas: cfg.nats.replicas,
    },
  };
}

class UsageProblem extends Error {}
/** The config file is not there or cannot be read (exit 3, like every command). */
class ConfigMissing extends Error {}

function parseTime(what: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new UsageProblem(`${what} '${value}' is not an ISO-8601 time`);
  return d;
}

function print(io: CommandIO, json: boolean, results: SlotResult[], dryRun: boolean): void {
  for (const r of results) {
    if (json) io.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      const what = {
        due: dryRun ? "due (dry run: not published)" : "due",
        published: "published backup.requested",
        duplicate: "already published (JetStream duplicate)",
        claimed: "already published by an earlier run (claimed)",
        failed: `FAILED: ${r.error ?? ""}`,
      }[r.status];
      io.stdout.write(`${r.vm} ${r.slot}: ${what}\n`);
    }
  }
}

const command: Command = {
  name: "schedule",
  summary: "publish backup.requested for every VM that is due (for cron, or --daemon)",
  usage,
  async run(args: string[], io: CommandIO): Promise<number> {
    let v;
    try {
      v = parseArgs({
        args,
        options: {
          config: { type: "string" },
          now: { type: "string" },
          window: { type: "string" },
          since: { type: "string" },
          tz: { type: "string" },
          "dry-run": { type: "boolean" },
          daemon: { type: "boolean" },
          nats: { type: "string" },
          json: { type: "boolean" },
        },
      }).values;
    } catch (err) {
      io.stderr.write(`ferry schedule: ${(err as Error).message}\n`);
      return ExitCode.usage;
    }
    let loaded: Loaded;
    let fixedNow: Date | undefined;
    let since: Date | undefined;
    let windowMs = 10 * MINUTE;
    let timeZone: string;
    try {
      fixedNow = parseTime("--now", v.now);
      since = parseTime("--since", v.since);
      if (v.window !== undefined) {
        if (!/^\d+$/.test(v.window) || Number(v.window) < 1) throw new UsageProblem(`--window '${v.window}' must be a number of minutes`);
        windowMs = Number(v.window) * MINUTE;
      }
      if (v.daemon && (fixedNow || since)) throw new UsageProblem("--daemon runs on the real clock: do not combine it with --now or --since");
      if (v.tz !== undefined) assertTimeZone(v.tz);
      loaded = await loadSchedules(v.config, io);
      // One zone for slots, the weekly full day and retention: the config's (--tz for one run).
      timeZone = v.tz ?? loaded.timeZone;
    } catch (err) {
      io.stderr.write(`ferry schedule: ${(err as Error).message}\n`);
      if (err instanceof ConfigMissing) return ExitCode.unavailable;
      return err instanceof UsageProblem && /--(now|since|window|daemon)/.test((err as Error).message) ? ExitCode.usage : ExitCode.invalid;
    }
    const dryRun = v["dry-run"] ?? false;
    const json = v.json ?? false;

    let nc: NatsConnection | undefined;
    let publisher: SlotPublisher | undefined;
    let claims: SlotClaims | undefined;
    let guard: ChainGuard | undefined;
    try {
      if (!dryRun) {
        const settings = natsSettings({ flag: v.nats, env: io.env, config: { nats: loaded.nats }, name: "ferry-schedule" });
        for (const w of settings.warnings) warnTo(io, "schedule")(w);
        nc = await connectNats({ ...settings, maxReconnectAttempts: v.daemon ? -1 : 5 });
        const js = jetstream(nc);
        const jsm = await jetstreamManager(nc);
        if (!(await jsm.streams.info("FERRY_COMMANDS").then(() => true, () => false))) {
          await provisionInfra(nc, jsm, { replicas: loaded.nats.replicas });
        }
        const pub = createPublisher(nc, js);
        publisher = {
          async publish(event, msgId) {
            const ack = await pub.publish({ subject: "backup.requested", event: { ...event }, msgId });
            return { duplicate: ack.duplicate, seq: ack.seq };
          },
        };
        claims = await openSlotClaims(nc, { replicas: loaded.nats.replicas });
        // VMs removed from their engine (the chain guard, functions/engine-events) are not scheduled.
        guard = await new Kvm(nc).open(buckets.guard).then(createChainGuard, () => undefined);
      }
      const once = async (from: Date, to: Date): Promise<SlotResult[]> => {
        const removed = guard ? await guard.removedVms() : new Map<string, unknown>();
        const results = await runSchedule({
          vms: loaded.vms.filter((vm) => !removed.has(vm.name)),
          from,
          to,
          now: to,
          timeZone,
          ...(publisher ? { publisher } : {}),
          ...(claims ? { claims } : {}),
        });
        print(io, json, results, dryRun);
        return results;
      };
      if (!v.daemon) {
        const now = fixedNow ?? new Date();
        const results = await once(since ?? new Date(now.getTime() - windowMs), now);
        if (!json && results.length === 0) io.stdout.write(`nothing due between ${(since ?? new Date(now.getTime() - windowMs)).toISOString()} and ${now.toISOString()} (${loaded.vms.length} VMs, zone ${timeZone})\n`);
        return results.some((r) => r.status === "failed") ? ExitCode.failed : ExitCode.ok;
      }
      io.stderr.write(`ferry schedule: running (${loaded.vms.length} VMs from ${loaded.file}, zone ${timeZone}); Ctrl-C to stop\n`);
      let from = new Date(Date.now() - windowMs);
      // The daily certificate check (ferry cert check): at start, then once per local day.
      let certDay = "";
      let certRunning: Promise<void> | undefined;
      const certCheck = async (day: string): Promise<void> => {
        const cfg = await loadCertConfig(v.config, io);
        if (!Object.keys(cfg.engines).length) return void (certDay = day);
        await ensureBucket(nc!, await jetstreamManager(nc!), bucketDefinitions.find((b) => b.name === buckets.certs)!, loaded.nats.replicas);
        const pub = createPublisher(nc!, jetstream(nc!));
        const results = await runCertCheck({
          engines: cfg.engines,
          warnDays: cfg.warnDays,
          kv: await new Kvm(nc!).open(buckets.certs),
          publish: async (subject, event) => pub.publish({ subject, event }),
          signal: io.signal,
        });
        for (const r of results) io.stderr.write(`ferry schedule: cert ${formatCheckResult(r)}\n`);
        // A check that could not publish is tried again next minute.
        if (!results.some((r) => r.status === "failed")) certDay = day;
      };
      // The daily summary: once summary.time is reached each local day (postSummaryNow keeps it
      // to one post per engine and day across restarts and schedulers).
      let summaryDone = "";
      let summaryRunning: Promise<void> | undefined;
      let summaryRetryAt = 0; // after a failure: every 10 minutes, not every minute
      const dailySummary = async (day: string): Promise<void> => {
        const { results } = await postSummaryNow({ nc: nc!, configFlag: v.config, io, policies: Object.fromEntries(loaded.vms.map((x) => [x.name, { enabled: x.enabled ?? true, schedule: x.schedule }])), timeZone, replicas: loaded.nats.replicas });
        for (const r of results) io.stderr.write(`ferry schedule: summary ${formatPostResult(r)}\n`);
        if (!results.some((r) => r.status === "failed")) summaryDone = day;
      };
      while (!io.signal.aborted) {
        const to = new Date();
        const day = new Intl.DateTimeFormat("en-CA", { timeZone }).format(to);
        const summaryDay = loaded.summary.enabled && !dryRun ? summaryDueDay(to, loaded.summary.time, timeZone) : undefined;
        if (summaryDay && summaryDay !== summaryDone && !summaryRunning && to.getTime() >= summaryRetryAt) {
          summaryRetryAt = to.getTime() + 10 * MINUTE;
          summaryRunning = dailySummary(summaryDay)
            .catch((err: unknown) => void io.stderr.write(`ferry schedule: daily summary: ${(err as Error).message}\n`))
            .finally(() => (summaryRunning = undefined));
        }
        // In the background: engines that do not answer never hold up a backup slot.
        if (!dryRun && day !== certDay && !certRunning) {
          certRunning = certCheck(day)
            .catch((err: unknown) => void io.stderr.write(`ferry schedule: certificate check: ${(err as Error).message}\n`))
            .finally(() => (certRunning = undefined));
        }
        let next = to;
        try {
          // A slot that failed to publish is tried again next minute (claims and msgIDs keep the
          // others from repeating); the window never grows past a day.
          const failed = (await once(from, to)).filter((r) => r.status === "failed").map((r) => Date.parse(r.slot));
          if (failed.length) next = new Date(Math.max(Math.min(...failed) - 1000, to.getTime() - 86_400_000));
        } catch (err) {
          io.stderr.write(`ferry schedule: ${(err as Error).message}\n`);
          next = from;
        }
        from = next;
        const wait = MINUTE - (Date.now() % MINUTE) + 1000;
        // A pass that ended after the signal must not start the minute's timer: a listener added
        // to a signal that already fired never runs.
        if (io.signal.aborted) break;
        await new Promise<void>((resolve) => {
          const done = () => (clearTimeout(t), io.signal.removeEventListener("abort", done), resolve());
          const t = setTimeout(done, wait);
          io.signal.addEventListener("abort", done, { once: true });
        });
      }
      await certRunning;
      await summaryRunning;
      return ExitCode.ok;
    } catch (err) {
      io.stderr.write(`ferry schedule: ${(err as Error).message}\n`);
      return err instanceof NatsUnavailableError ? ExitCode.unavailable : ExitCode.failed;
    } finally {
      if (nc && !nc.isClosed()) await nc.close().catch(() => undefined);
    }
  },
};
export default command;
