import { parseArgs } from "node:util";
import { locateConfig } from "../../config/locate.ts";
import { ConfigError, ConfigNotFoundError } from "../../config/load.ts";
import { computeStatus, formatDuration, OVERDUE_GRACE_MS, STALLED_AFTER_MS, type VmStatus } from "../../config/status.ts";
import { checkStatusInfra, natsProblem, readKvFacts, readOutcomes, readStatusConfig, statusJsm, statusTimeZone, type VmPolicies } from "../../config/status-source.ts";
import { assertTimeZone } from "../../domain/schedule/mod.ts";
import { ExitCode, NATS_OPTION_HELP, type Command } from "../command.ts";
import { connectForCommand } from "./backup.ts";

export type { VmStatus } from "../../config/status.ts";

const usage = `Usage: ferry status [vm...] [--json] [--tz ZONE] [--grace MIN] [--config FILE] [--nats URL]

Every VM of the config (and every VM with backups in KV) with its last result, its last good
restore point and its age, the next scheduled slot and the RPO lag against its schedule.

  ok        the newest outcome event is backup.completed
  failed    the newest outcome is backup.failed (code, reason, step and time shown), or a run
            that ended without any outcome event: failed/abandoned in the run journal, or
            RUN_STALLED (no outcome, its VM lease gone, unchanged for ${STALLED_AFTER_MS / 60_000} min)
  running   a run without an outcome event whose VM lease (KV ferry-leases) is held or handed on
            under its run id, or that changed in the last ${STALLED_AFTER_MS / 60_000} min; shown with the step
            working on it (or waited for), the journal phase and the disks already in the store.
            A run whose journal says 'transferred' is still running: it is done only when a
            backup.completed or backup.failed with its run id / correlation id exists.
  never     no restore point and no outcome yet (not a problem by itself: a failed first
            backup is 'failed')

Restores (restore, replicate, test) are shown under their VM from the restore journal (KV
ferry-runs): one running (its mode, target, phase, disks verified), the last failed one (with its
code; RESTORE_STALLED when it stopped changing ${STALLED_AFTER_MS / 60_000} min ago without ending) and the last good one.
They do not change the exit code. --json: "restore": {running, last, lastOk}.

Where it comes from: outcome events from the stream FERRY_EVENTS (kept 30 days), runs from KV
ferry-runs, leases from KV ferry-leases, restore points from KV ferry-chains (the same record as
each VM's restore-points.json in the store). The last good restore point is the newest one whose
verification did not fail; its age is the RPO lag. The next slot and the interval come from the
VM's schedule (vms.<vm>.schedule) read in --tz; the interval is the time between the two newest
slots. A VM is OVERDUE when the lag exceeds the interval plus the grace: its newest slot is
more than --grace old and no good restore point came after the previous one. Disabled VMs
(enabled: false) and VMs outside the config are never overdue.

Options:
  vm...           only these VMs (exit 4 for a name that is neither configured nor backed up)
  --json          a JSON array, one object per VM (result, outcome, running, lastGood, schedule,
                  rpo, overdue, problem, ...)
  --tz ZONE       time zone the schedules are read in (default: the config's timeZone, else
                  this machine's)
  --grace MIN     minutes a VM may be late before it is overdue (default ${OVERDUE_GRACE_MS / 60_000})
  --config FILE   Ferry config (the VMs and schedules; also the NATS settings); default
                  $FERRY_CONFIG, ./ferry.json, /etc/ferry/ferry.json. Only its vms and defaults
                  are read for the VM list, so no engine password is needed for that part
  --nats URL      ${NATS_OPTION_HELP}

Exit: 0 every VM is fine, 1 a VM's last result is failed or a VM is overdue (for cron and
monitoring), 2 usage, 3 NATS unreachable or a Ferry bucket/stream missing (one line on stderr),
4 the config's vms section is invalid or an unknown VM was named.
`;

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function ago(iso: string, now: number): string {
  return `${formatDuration((now - Date.parse(iso)) / 1000)} ago`;
}

/** The human lines of one VM. */
export function formatRow(r: VmStatus, now: number): string[] {
  const n = r.restorePoints;
  const points = `${n} point${n === 1 ? "" : "s"}`;
  const last = r.last ? `last #${r.last.number} ${r.last.time} ${r.last.kind} ${mib(r.last.bytes)} (${ago(r.last.time, now)})` : "no restore point";
  const parts = [`${r.vm.padEnd(24)} ${r.result.padEnd(8)} ${points.padStart(9)}  ${last}`];
  if (r.schedule?.description === "disabled") parts.push("schedule disabled");
  else if (r.schedule?.next) parts.push(`next ${r.schedule.next}`);
  if (r.rpo?.lagSeconds !== undefined && r.rpo.targetSeconds !== undefined) {
    parts.push(`${r.overdue ? "OVERDUE: " : ""}lag ${formatDuration(r.rpo.lagSeconds)}${r.overdue ? " >" : " of"} ${formatDuration(r.rpo.targetSeconds)}`);
  }
  if (!r.configured) parts.push("(not in the config)");
  const lines = [parts.join("  ")];
  const pad = " ".repeat(4);
  if (r.last && r.lastGood && r.lastGood.id !== r.last.id) {
    lines.push(`${pad}last good: #${r.lastGood.number} ${r.lastGood.time} (#${r.last.number} failed verification)`);
  }
  if (r.running) {
    const g = r.running;
    const disks = g.disks.total ? `, ${g.disks.placed}/${g.disks.total} disks in the store` : "";
    lines.push(`${pad}running since ${g.startedAt}: ${g.waiting ? `waiting for ${g.step}` : g.step}, phase ${g.phase}${disks} (run ${g.runId})`);
  }
  const o = r.outcome;
  if (o?.result === "failed") {
    const where = o.step ? ` in ${o.step}` : "";
    lines.push(`${pad}${r.running ? "last result: " : ""}failed ${o.time}${where}: ${o.code ?? "UNKNOWN"}: ${o.message ?? ""}`.trimEnd());
  } else if (r.running && o?.result === "ok") {
    lines.push(`${pad}last result: ok ${o.time}`);
  }
  const rs = r.restore;
  const onto = (v: { mode: string; target: string; name: string }) => (v.mode === "test" ? `restore test on ${v.target}` : `${v.mode} onto ${v.target} as ${v.name}`);
  if (rs?.running) {
    const g = rs.running;
    lines.push(`${pad}restore running since ${g.startedAt}: ${onto(g)}, phase ${g.phase}, ${g.disks.verified}/${g.disks.total} disks verified (run ${g.runId})`);
  }
  if (rs?.last?.result === "failed") {
    lines.push(`${pad}last restore failed ${rs.last.updatedAt}: ${onto(rs.last)}, phase ${rs.last.phase}: ${rs.last.error?.code ?? "UNKNOWN"}: ${rs.last.error?.message ?? ""} (run ${rs.last.runId})`.trimEnd());
  }
  if (rs?.lastOk) lines.push(`${pad}last restore ok ${rs.lastOk.updatedAt}: ${onto(rs.lastOk)} (run ${rs.lastOk.runId})`);
  return lines;
}

export function summaryLine(rows: readonly VmStatus[]): string {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.result, (counts.get(r.result) ?? 0) + 1);
  const order = ["ok", "failed", "running", "never"].filter((k) => counts.has(k)).map((k) => `${counts.get(k)} ${k}`);
  const overdue = rows.filter((r) => r.overdue).length;
  const failedBefore = rows.filter((r) => r.result === "running" && r.lastResult === "failed").length;
  const extra = [overdue ? `${overdue} overdue` : "", failedBefore ? `${failedBefore} running after a failure` : ""].filter(Boolean);
  return `${rows.length} VM${rows.length === 1 ? "" : "s"}: ${order.join(", ")}${extra.length ? `; ${extra.join(", ")}` : ""}`;
}

const command: Command = {
  name: "status",
  summary: "Show each VM's last result, last good restore point, next slot and RPO lag (exit 1 on failed/overdue)",
  usage,
  async run(args, io) {
    let o;
    let vmNames: string[];
    try {
      const parsed = parseArgs({
        args,
        allowPositionals: true,
        options: { json: { type: "boolean" }, config: { type: "string" }, nats: { type: "string" }, tz: { type: "string" }, grace: { type: "string" } },
      });
      o = parsed.values;
      vmNames = parsed.positionals;
    } catch (err) {
      io.stderr.write(`ferry status: ${(err as Error).message}\n${usage}`);
      return ExitCode.usage;
    }
    let timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    let graceMs = OVERDUE_GRACE_MS;
    try {
      if (o.tz !== undefined) timeZone = assertTimeZone(o.tz);
      if (o.grace !== undefined) {
        if (!/^\d+$/.test(o.grace)) throw new Error(`--grace '${o.grace}' must be a whole number of minutes`);
        graceMs = Number(o.grace) * 60_000;
      }
    } catch (err) {
      io.stderr.write(`ferry status: ${(err as Error).message}\n`);
      return ExitCode.usage;
    }

    // The VMs and schedules: the config's vms section (without one, only what KV knows).
    let policies: VmPolicies = {};
    const where = locateConfig(o.config, io.env, io.cwd);
    if (where.file) {
      try {
        const config = await readStatusConfig(where.file);
        policies = config.policies;
        if (o.tz === undefined) timeZone = statusTimeZone(where.file, config.timeZone);
      } catch (err) {
        if (!(err instanceof ConfigNotFoundError || err instanceof ConfigError)) throw err;
        io.stderr.write(`ferry status: ${err.message}\n`);
        return err instanceof ConfigNotFoundError ? ExitCode.unavailable : ExitCode.invalid;
      }
    }

    const connected = await connectForCommand("status", o, io);
    if ("exit" in connected) return connected.exit;
    const nc = connected.session.nc;
    try {
      let rows: VmStatus[];
      try {
        const jsm = await statusJsm(nc);
        await checkStatusInfra(jsm);
        const kv = await readKvFacts(nc);
        const outcomes = await readOutcomes(nc);
        rows = computeStatus({ now: new Date(), policies, ...kv, outcomes, timeZone, graceMs });
      } catch (err) {
        io.stderr.write(`ferry status: ${natsProblem(err)}\n`);
        return ExitCode.unavailable;
      }
      if (vmNames.length) {
        const unknown = vmNames.filter((n) => !rows.some((r) => r.vm === n));
        if (unknown.length) {
          io.stderr.write(`ferry status: unknown VM${unknown.length === 1 ? "" : "s"} ${unknown.map((n) => `'${n}'`).join(", ")}: not in the config and never backed up\n`);
          return ExitCode.invalid;
        }
        rows = rows.filter((r) => vmNames.includes(r.vm));
      }
      const code = rows.some((r) => r.problem) ? ExitCode.failed : ExitCode.ok;
      if (o.json) {
        io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        return code;
      }
      if (!rows.length) {
        io.stdout.write(`no VMs: none in the config${where.file ? ` (${where.file})` : ""} and no backups in KV\n`);
        return code;
      }
      const now = Date.now();
      for (const r of rows) io.stdout.write(`${formatRow(r, now).join("\n")}\n`);
      io.stdout.write(`${summaryLine(rows)}\n`);
      return code;
    } finally {
      await nc.drain().catch(() => undefined);
    }
  },
};

export default command;
