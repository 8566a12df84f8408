import { parseArgs } from "node:util";
import { Kvm } from "@nats-io/kv";
import { buckets } from "../../infra/streams/mod.ts";
import { chainsKv } from "../../adapters/store/mod.ts";
import { createRunJournal, type BackupRun } from "../../pipeline/run-journal.ts";
import { visiblePoints, pointSize, type ChainRecord } from "../../domain/chain/mod.ts";
import { ExitCode, NATS_OPTION_HELP, type Command } from "../command.ts";
import { connectForCommand } from "./backup.ts";

const usage = `Usage: ferry status [--json] [--config FILE] [--nats URL]

The last result per VM: the newest restore point (number, time, full or incremental, size) and
the newest backup run (running, done, failed with its code and reason), read from the KV buckets
ferry-chains and ferry-runs.

Options:
  --json          one JSON document: a row per VM
  --config FILE   Ferry config (for the NATS settings); default $FERRY_CONFIG, ./ferry.json, /etc/ferry/ferry.json
  --nats URL      ${NATS_OPTION_HELP}
`;

export interface VmStatus {
  vm: string;
  vmId: string;
  restorePoints: number;
  last?: { id: string; number: number; time: string; kind: string; bytes: number; verified?: boolean | undefined } | undefined;
  run?: { runId: string; phase: string; startedAt: string; updatedAt: string; error?: { code: string; message: string } | undefined } | undefined;
  result: "ok" | "failed" | "running" | "never";
}

/** Join chains and runs into one line per VM (pure, for tests). */
export function summarize(chains: readonly ChainRecord[], runs: readonly BackupRun[]): VmStatus[] {
  const byVm = new Map<string, VmStatus>();
  for (const c of chains) {
    const points = visiblePoints(c);
    const last = points.at(-1);
    byVm.set(c.vm.id, {
      vm: c.vm.name,
      vmId: c.vm.id,
      restorePoints: points.length,
      last: last && { id: last.id, number: points.length, time: last.time, kind: last.kind, bytes: pointSize(last), verified: last.verified?.ok },
      result: last ? "ok" : "never",
    });
  }
  for (const r of [...runs].sort((a, b) => a.startedAt.localeCompare(b.startedAt))) {
    const s = byVm.get(r.vm.id) ?? { vm: r.vm.name, vmId: r.vm.id, restorePoints: 0, result: "never" as const };
    s.run = { runId: r.runId, phase: r.phase, startedAt: r.startedAt, updatedAt: r.updatedAt, error: r.error };
    const newerThanPoint = !s.last || r.startedAt >= s.last.time;
    if (newerThanPoint) {
      if (r.phase === "failed" || r.phase === "abandoned") s.result = "failed";
      else if (r.phase !== "transferred") s.result = "running";
      else s.result = s.last && s.last.time >= r.startedAt ? "ok" : "running";
    }
    byVm.set(r.vm.id, s);
  }
  return [...byVm.values()].sort((a, b) => a.vm.localeCompare(b.vm));
}

const command: Command = {
  name: "status",
  summary: "Show the last backup result per VM",
  usage,
  async run(args, io) {
    let o;
    try {
      o = parseArgs({ args, options: { json: { type: "boolean" }, config: { type: "string" }, nats: { type: "string" } } }).values;
    } catch (err) {
      io.stderr.write(`ferry status: ${(err as Error).message}\n${usage}`);
      return ExitCode.usage;
    }
    const connected = await connectForCommand("status", o, io);
    if ("exit" in connected) return connected.exit;
    const nc = connected.session.nc;
    try {
      const kvm = new Kvm(nc);
      const open = async (b: string) => kvm.open(b).catch(() => undefined);
      const chainsBucket = await open(buckets.chains);
      const runsKv = await open(buckets.runs);
      const chains = chainsBucket ? await chainsKv(chainsBucket).list() : [];
      const runs = runsKv ? await createRunJournal(runsKv).list() : [];
      const rows = summarize(chains, runs);
      if (o.json) {
        io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        return ExitCode.ok;
      }
      if (!rows.length) {
        io.stdout.write("no backups yet\n");
        return ExitCode.ok;
      }
      for (const r of rows) {
        const last = r.last ? `#${r.last.number} ${r.last.time} ${r.last.kind} ${(r.last.bytes / 1048576).toFixed(1)} MiB` : "no restore point";
        const why = r.result === "failed" && r.run?.error ? ` — ${r.run.error.code}: ${r.run.error.message}` : "";
        io.stdout.write(`${r.vm.padEnd(24)} ${r.result.padEnd(8)} ${String(r.restorePoints).padStart(3)} points  last ${last}${why}\n`);
      }
      return ExitCode.ok;
    } finally {
      await nc.drain().catch(() => undefined);
    }
  },
};

export default command;
