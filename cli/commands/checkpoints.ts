import { stat } from "node:fs/promises";
import { parseArgs } from "node:util";
import { openChainsKv, openStore } from "../../adapters/store/mod.ts";
import { openSession, type Session } from "../../config/session.ts";
import { locateStore } from "../../config/store-location.ts";
import { describePoints, isSegment, summarizeChain, type ChainRecord, type PointSummary } from "../../domain/chain/mod.ts";
import { Kvm } from "@nats-io/kv";
import { buckets } from "../../infra/streams/mod.ts";
import { activeMark, createChainGuard, markReason, type GuardMark, type RemovedMark } from "../../pipeline/chain-guard.ts";
import { bytes } from "../format.ts";
import { ExitCode, NATS_OPTION_HELP, type Command, type CommandIO, parseCommandLine, warnTo } from "../command.ts";

const usage = `Usage: ferry checkpoints <vm> [options]

List a VM's restore points, oldest first. The number in the first column is what
'ferry restore <vm> --checkpoint N' and 'ferry verify <vm> --checkpoint N' take (1 = the oldest kept;
numbers move down when retention removes older points).

Read straight from the backup store's restore-points.json, so it works when NATS is down.

Options:
  --json           one JSON document: {vm, source, store, points: [...]}
  --store DIR      the backup store (default: $BACKUP_DIR, else the config's store.path, else ./data/backups)
  --config FILE    config file (for store.path, and the NATS settings with --kv)
  --kv             read the chain record from KV ferry-chains instead of the store, and the chain
                   guard's marks from KV ferry-guard (next backup full because of an engine event;
                   VM removed from its engine)
  --nats URL       with --kv: ${NATS_OPTION_HELP}

Columns: # | time (UTC) | kind | chain (what it builds on, layers read to restore it) | size of its
own layers | verified | boot-tested (the last restore test: ferry restore <vm> --test) | reason for a full.
Exit: 0 listed, 1 no restore points for the VM, 2 usage, 3 store or NATS unavailable, 4 bad VM name.
`;

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n");
}

/** The chain guard's view of the VM (KV ferry-guard), when it could be read. */
export interface GuardView {
  readonly mark?: GuardMark | undefined;
  readonly removed?: RemovedMark | undefined;
}

export function renderCheckpoints(record: ChainRecord, points: PointSummary[], source: string, guard: GuardView = {}): string {
  const head = `VM ${record.vm.name} (id ${record.vm.id}): ${points.length} restore point${points.length === 1 ? "" : "s"} — ${source}`;
  const rows = [["#", "time (UTC)", "kind", "chain", "size", "verified", "boot-tested", "reason"]];
  for (const p of points) {
    const chain = p.parent !== undefined ? `on #${p.parent}, ${p.depth} layers` : p.depth > 1 ? `${p.depth} layers` : "self-contained";
    const verified = p.verified ? `${p.verified.ok ? "ok" : "FAILED"} ${p.verified.time.slice(0, 16).replace("T", " ")}` : "-";
    const mixed = p.kind === "incremental" && p.disks.some((d) => d.kind === "full") ? " (some disks full)" : "";
    const booted = p.bootTested ? `${p.bootTested.ok ? "ok" : "FAILED"} ${p.bootTested.time.slice(0, 10)}` : "-";
    rows.push([String(p.number), p.time.slice(0, 19).replace("T", " "), `${p.kind}${mixed}`, chain, bytes(p.size), verified, booted, p.reason ?? ""]);
  }
  const lines = [head, "", table(rows)];
  const mark = activeMark(guard.mark, summarizeChain(record).lastFullTime);
  if (guard.removed) lines.push("", `removed from engine ${guard.removed.engine} (${guard.removed.reason}): no longer scheduled.`);
  else if (mark) lines.push("", `next backup: full (${markReason(mark)})`);
  if (record.pending) {
    lines.push("", `note: a retention run (${record.pending.phase}) is unfinished; it completes at the next backup or 'ferry state rebuild'.`);
  }
  return `${lines.join("\n")}\n`;
}

const command: Command = {
  name: "checkpoints",
  summary: "list a VM's restore points (numbers, time, full/incremental, chain, size, verified)",
  usage,
  async run(args: string[], io: CommandIO): Promise<number> {
    const parsed = parseCommandLine("checkpoints", args, {
          json: { type: "boolean" },
          store: { type: "string" },
          config: { type: "string" },
          kv: { type: "boolean" },
          nats: { type: "string" },
        }, io);
    if (!parsed) return ExitCode.usage;
    const [vm, ...extra] = parsed.positionals;
    if (!vm || extra.length) {
      io.stderr.write(`ferry checkpoints: expected one VM name\n\n${usage}`);
      return ExitCode.usage;
    }
    if (!isSegment(vm)) {
      io.stderr.write(`ferry checkpoints: '${vm.slice(0, 80)}' is not a valid VM name (A-Z a-z 0-9 . _ -, not '.' or '..')\n`);
      return ExitCode.invalid;
    }
    let record: ChainRecord | undefined;
    let source: string;
    let storeRoot: string | undefined;
    let session: Session | undefined;
    let guard: GuardView = {};
    try {
      if (parsed.values.kv) {
        session = await openSession({ configFlag: parsed.values.config, natsFlag: parsed.values.nats, env: io.env, cwd: io.cwd, name: "ferry-checkpoints", needConfig: false, warn: warnTo(io, "checkpoints") });
        const kv = await openChainsKv(session.nc);
        record = (await kv.read(vm)) ?? (await kv.list()).find((r) => r.vm.name === vm);
        source = `from KV ferry-chains (${session.servers})`;
        // Best effort: an operator account may see the chains (a mirror) but not the guard bucket.
        const g = await new Kvm(session.nc).open(buckets.guard).then(createChainGuard, () => undefined);
        if (g && record) guard = { mark: await g.mark(record.vm.id).catch(() => undefined), removed: await g.removed(record.vm.name).catch(() => undefined) };
      } else {
        const where = await locateStore({ flag: parsed.values.store, configFlag: parsed.values.config, env: io.env, cwd: io.cwd });
        storeRoot = where.root;
        if (!(await stat(where.root).then((s) => s.isDirectory(), () => false))) {
          throw new Error(`the store ${where.root} (from ${where.via}) is not a directory: mount the backup volume or fix --store / store.path`);
        }
        record = await openStore({ root: where.root }).readManifest(vm);
        source = `from the store ${where.root} (read directly, works without the bus)`;
      }
    } catch (err) {
      io.stderr.write(`ferry checkpoints: ${(err as Error).message}\n`);
      return ExitCode.unavailable;
    } finally {
      if (session && !session.nc.isClosed()) await session.nc.close().catch(() => undefined);
    }
    if (!record) {
      io.stderr.write(`ferry checkpoints: no restore points for VM ${vm} ${source}\n`);
      return ExitCode.failed;
    }
    const points = describePoints(record);
    if (parsed.values.json) {
      const mark = activeMark(guard.mark, summarizeChain(record).lastFullTime);
      const next = guard.removed ? { removed: guard.removed } : mark ? { nextFull: markReason(mark) } : {};
      const doc = { vm: record.vm, source: parsed.values.kv ? "kv" : "store", ...(storeRoot ? { store: storeRoot } : {}), pending: record.pending ? record.pending.phase : null, ...next, points };
      io.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    } else {
      io.stdout.write(renderCheckpoints(record, points, source, guard));
    }
    return ExitCode.ok;
  },
};
export default command;
