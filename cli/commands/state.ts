import { readFile, stat, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { ensureBucket, NatsUnavailableError } from "../../adapters/nats/mod.ts";
import {
  CHAINS_BUCKET,
  exportChains,
  importChains,
  openChainsKv,
  openStore,
  rebuildChains,
  type StateReport,
} from "../../adapters/store/mod.ts";
import { ConfigError } from "../../config/load.ts";
import { openSession, type Session } from "../../config/session.ts";
import { locateStore, type StoreLocation } from "../../config/store-location.ts";
import { bucketDefinitions } from "../../infra/streams/mod.ts";
import { ExitCode, NATS_OPTION_HELP, type Command, type CommandIO, parseCommandLine, warnTo } from "../command.ts";

const usage = `Usage: ferry state <rebuild|export|import> [options]

Ferry's own state is recoverable: the backup store describes itself, so the KV chain records
(bucket ${CHAINS_BUCKET}, one per VM) can be recreated from it after the bus lost its data.

  ferry state rebuild [--force] [--vm NAME ...]
      Recreate KV records from every VM's restore-points.json (finishing any retention run a crash
      left unfinished first). Existing records that differ are reported, and replaced with --force.
  ferry state export [--out FILE]
      Write every KV chain record as JSON lines ({"vmId","revision","record"}) to FILE or stdout.
  ferry state import <FILE|-> [--force]
      Load JSON lines written by export. Every line is checked first: one bad line imports nothing.
      Existing records that differ are reported, and replaced with --force.

Options:
  --store DIR      the backup store for rebuild (default: $BACKUP_DIR, else the config's store.path, else ./data/backups)
  --config FILE    config file (store.path, NATS settings)
  --nats URL       ${NATS_OPTION_HELP}
  --json           print the report as JSON

Exit: 0 done, 1 some records failed or differ (without --force), 2 usage, 3 NATS, the config file,
the store or the input file unavailable, 4 invalid input lines or invalid config.
`;

function render(r: StateReport): string {
  const lines = r.items.map((i) => `  ${i.vm}${i.vmId ? ` (${i.vmId})` : ""}: ${i.action}${i.detail ? ` — ${i.detail}` : ""}`);
  const c = r.counts;
  lines.push(`${c.created} created, ${c.updated} updated, ${c.unchanged} unchanged, ${c.differs} differ, ${c.failed} failed`);
  return `${lines.join("\n")}\n`;
}

async function readInput(path: string): Promise<string> {
  if (path !== "-") return readFile(path, "utf8");
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const command: Command = {
  name: "state",
  summary: "rebuild the KV chain records from the store, or export / import them",
  usage,
  async run(args: string[], io: CommandIO): Promise<number> {
    const parsed = parseCommandLine("state", args, {
          force: { type: "boolean" },
          vm: { type: "string", multiple: true },
          out: { type: "string" },
          store: { type: "string" },
          config: { type: "string" },
          nats: { type: "string" },
          json: { type: "boolean" },
        }, io);
    if (!parsed) return ExitCode.usage;
    const [sub, ...rest] = parsed.positionals;
    const v = parsed.values;
    if (sub !== "rebuild" && sub !== "export" && sub !== "import") {
      io.stderr.write(`ferry state: expected rebuild, export or import\n\n${usage}`);
      return ExitCode.usage;
    }
    if ((sub === "import" && rest.length !== 1) || (sub !== "import" && rest.length)) {
      io.stderr.write(`ferry state ${sub}: unexpected arguments\n\n${usage}`);
      return ExitCode.usage;
    }
    let input: string | undefined;
    if (sub === "import") {
      try {
        input = await readInput(rest[0]!);
      } catch (err) {
        // A file that is not there is missing (3, like `ferry config import`); one that is there but bad is 4.
        io.stderr.write(`ferry state import: cannot read ${rest[0]}: ${(err as Error).message}\n`);
        return ExitCode.unavailable;
      }
    }
    let where: StoreLocation | undefined;
    if (sub === "rebuild") {
      // A store that is not there (unmounted volume, wrong --store) is unavailable: rebuilding
      // "nothing" from it would report success after the bus lost its data.
      try {
        where = await locateStore({ flag: v.store, configFlag: v.config, env: io.env, cwd: io.cwd });
      } catch (err) {
        io.stderr.write(`ferry state rebuild: ${(err as Error).message}\n`);
        return ExitCode.unavailable;
      }
      if (!(await stat(where.root).catch(() => undefined))?.isDirectory()) {
        io.stderr.write(`ferry state rebuild: the store ${where.root} (from ${where.via}) is not a directory: mount the backup volume or fix --store / store.path\n`);
        return ExitCode.unavailable;
      }
    }
    let session: Session | undefined;
    try {
      try {
        session = await openSession({ configFlag: v.config, natsFlag: v.nats, env: io.env, cwd: io.cwd, name: `ferry-state-${sub}`, needConfig: false, warn: warnTo(io, `state ${sub}`) });
      } catch (err) {
        // README's table: an invalid config is 4, a missing config file or NATS down is 3.
        io.stderr.write(`ferry state ${sub}: ${(err as Error).message}\n`);
        return err instanceof ConfigError ? ExitCode.invalid : ExitCode.unavailable;
      }
      if (sub !== "export") {
        // After a loss of the bus the bucket may be gone too: create it with its real settings.
        const def = bucketDefinitions.find((b) => b.name === CHAINS_BUCKET);
        if (def) await ensureBucket(session.nc, await jetstreamManager(session.nc), def, session.config.nats.replicas);
      }
      const kv = await openChainsKv(session.nc);
      if (sub === "export") {
        const text = await exportChains(kv);
        if (v.out) {
          await writeFile(v.out, text, { mode: 0o600 });
          io.stderr.write(`exported ${text ? text.trim().split("\n").length : 0} chain records to ${v.out}\n`);
        } else {
          io.stdout.write(text);
        }
        return ExitCode.ok;
      }
      let report: StateReport;
      if (sub === "rebuild") {
        const store = openStore({ root: where!.root });
        report = await rebuildChains(store, kv, { force: v.force ?? false, ...(v.vm ? { vms: v.vm } : {}), signal: io.signal });
        if (!v.json) io.stdout.write(`rebuild from the store ${where!.root} into KV ${CHAINS_BUCKET} (${session.servers}):\n`);
      } else {
        try {
          report = await importChains(kv, input!, { force: v.force ?? false });
        } catch (err) {
          io.stderr.write(`ferry state import: ${(err as Error).message}\n`);
          return ExitCode.invalid;
        }
        if (!v.json) io.stdout.write(`import into KV ${CHAINS_BUCKET} (${session.servers}):\n`);
      }
      io.stdout.write(v.json ? `${JSON.stringify(report, null, 2)}\n` : render(report));
      return report.counts.failed || report.counts.differs ? ExitCode.failed : ExitCode.ok;
    } catch (err) {
      const e = err as Error;
      io.stderr.write(`ferry state ${sub}: ${e.message}\n`);
      return err instanceof NatsUnavailableError ? ExitCode.unavailable : ExitCode.failed;
    } finally {
      if (session && !session.nc.isClosed()) await session.nc.close().catch(() => undefined);
    }
  },
};
export default command;
