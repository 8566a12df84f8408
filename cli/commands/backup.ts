import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { backupRequested } from "../../contracts/backup-requested.ts";
import { CommandInvalidError, publishCommand } from "../../adapters/nats/publish-command.ts";
import { ConfigError } from "../../config/load.ts";
import { openSession, type Session } from "../../config/session.ts";
import { followRequest, requireWorker } from "../follow.ts";
import { bytes } from "../format.ts";
import { ExitCode, NATS_OPTION_HELP, type Command, type CommandIO, parseCommandLine, warnTo } from "../command.ts";

const usage = `Usage: ferry backup <vm> [--full] [--wait] [--json] [--engine NAME] [--timeout MIN] [--config FILE] [--nats URL]

Asks Ferry to back up one VM now: publishes backup.requested {vm, mode}. The backup-requested
function does the work (full or incremental by the VM's policy; --full forces a full).

Options:
  --full          take a full backup even if an incremental is possible
  --wait          follow the run: per-disk progress, then the outcome
                  (exit 0 on backup.completed, 1 on backup.failed; 3 at once, publishing
                  nothing, when no backup-requested worker is running)
  --json          print the outcome event (or the request) as JSON on stdout
  --engine NAME   engine the VM lives on (default prd)
  --timeout MIN   give up waiting after MIN minutes (default 240; exit 1)
  --config FILE   Ferry config (for the NATS settings); default $FERRY_CONFIG, ./ferry.json, /etc/ferry/ferry.json
  --nats URL      ${NATS_OPTION_HELP}
`;

/**
 * Connect the way every bus command does (config/session.ts: --nats, $NATS_URL, the config, the
 * default). undefined after printing why not, with the exit code to return.
 */
export async function connectForCommand(
  command: string,
  flags: { nats?: string | undefined; config?: string | undefined },
  io: CommandIO,
  o: { maxReconnectAttempts?: number } = {},
): Promise<{ session: Session } | { exit: number }> {
  try {
    const session = await openSession({
      configFlag: flags.config,
      natsFlag: flags.nats,
      env: io.env,
      cwd: io.cwd,
      name: `ferry-${command}`,
      needConfig: false,
      warn: warnTo(io, command),
      ...(o.maxReconnectAttempts !== undefined ? { maxReconnectAttempts: o.maxReconnectAttempts } : {}),
    });
    return { session };
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr.write(`ferry ${command}: ${err.message}\n(use --nats URL to skip the config file)\n`);
      return { exit: ExitCode.invalid };
    }
    io.stderr.write(`ferry ${command}: ${(err as Error).message}\n`);
    return { exit: ExitCode.unavailable };
  }
}

const command: Command = {
  name: "backup",
  summary: "Back up a VM now (publishes backup.requested; --wait follows it)",
  usage,
  async run(args, io) {
    const parsed = parseCommandLine("backup", args, {
          full: { type: "boolean" },
          wait: { type: "boolean" },
          json: { type: "boolean" },
          engine: { type: "string" },
          timeout: { type: "string" },
          config: { type: "string" },
          nats: { type: "string" },
        }, io, usage);
    if (!parsed) return ExitCode.usage;
    const { values: o, positionals } = parsed;
    if (positionals.length !== 1) {
      io.stderr.write(`ferry backup: name exactly one VM\n${usage}`);
      return ExitCode.usage;
    }
    const timeoutMin = o.timeout === undefined ? 240 : Number(o.timeout);
    if (!Number.isFinite(timeoutMin) || timeoutMin <= 0) {
      io.stderr.write("ferry backup: --timeout must be a positive number of minutes\n");
      return ExitCode.usage;
    }
    const id = `cli-${randomUUID()}`;
    const request = { id, time: new Date().toISOString(), correlationId: id, vm: positionals[0]!, mode: o.full ? ("full" as const) : ("auto" as const), ...(o.engine ? { engine: o.engine } : {}) };
    // Checked before connecting too: a refused request exits 4 without needing NATS.
    const v = backupRequested.validate(request);
    if (!v.ok) {
      io.stderr.write(`ferry backup: invalid request: ${v.reason}\n`);
      return ExitCode.invalid;
    }

    // --wait may follow a backup for hours: ride out a NATS restart meanwhile.
    const connected = await connectForCommand("backup", o, io, { maxReconnectAttempts: -1 });
    if ("exit" in connected) return connected.exit;
    const nc: NatsConnection = connected.session.nc;
    const subs: Subscription[] = [];
    try {
      // --wait with nobody to do the work would wait for hours: say so now, publish nothing.
      if (o.wait) {
        const missing = await requireWorker(nc, "backup-requested", "backup", io);
        if (missing !== undefined) return missing;
      }
      // Subscribe before publishing, so no outcome can be missed.
      const outcome = o.wait ? waitForOutcome(nc, subs, request, io, !!o.json, timeoutMin * 60_000) : undefined;
      // The console publishes through the same call: validated, msgID = the command's id.
      await publishCommand(nc, backupRequested, request);
      if (!o.wait) {
        if (o.json) io.stdout.write(`${JSON.stringify(request)}\n`);
        else io.stdout.write(`backup of ${request.vm} requested (id ${id}); follow it with: ferry events --json | grep ${id}\n`);
        return ExitCode.ok;
      }
      return await outcome!;
    } catch (err) {
      io.stderr.write(`ferry backup: ${(err as Error).message}\n`);
      return err instanceof CommandInvalidError ? ExitCode.invalid : ExitCode.unavailable;
    } finally {
      for (const s of subs) s.unsubscribe();
      await nc.drain().catch(() => undefined);
    }
  },
};

function waitForOutcome(nc: NatsConnection, subs: Subscription[], request: { id: string; vm: string }, io: CommandIO, json: boolean, timeoutMs: number): Promise<number> {
  return followRequest(nc, subs, io, {
    id: request.id,
    what: "backup",
    timeoutMs,
    progressOf: json ? undefined : request.vm,
    diskDone: {
      subject: "disk.transferred",
      read: (e) => {
        const disk = e.disk as { id?: unknown; alias?: unknown } | undefined;
        const moved = (e.transfer as { bytes?: unknown } | undefined)?.bytes ?? (e.layer as { size?: unknown } | undefined)?.size;
        if (typeof disk?.id !== "string" || typeof moved !== "number") return undefined;
        return { id: disk.id, alias: typeof disk.alias === "string" ? disk.alias : undefined, bytes: moved };
      },
    },
    success: ["backup.completed"],
    outcomes: {
      "backup.completed": (e) => {
        if (json) io.stdout.write(`${JSON.stringify(e)}\n`);
        else {
          const removed = (e.retention as { removed?: string[] } | undefined)?.removed ?? [];
          io.stdout.write(
            `backup of ${request.vm} completed: restore point ${String(e.restorePoint)} (${String(e.kind)}), ${bytes(Number(e.bytes))} written in ${Number(e.seconds).toFixed(1)} s` +
              `${removed.length ? `, retention removed ${removed.length}` : ""}\n`,
          );
        }
        return ExitCode.ok;
      },
      "backup.failed": (e) => {
        if (json) io.stdout.write(`${JSON.stringify(e)}\n`);
        else io.stderr.write(`backup of ${request.vm} failed (${String(e.code)}): ${String(e.message)}\n`);
        return ExitCode.failed;
      },
      "backup.requested.rejected": (e) => {
        io.stderr.write(`backup request rejected: ${String(e.reason)}\n`);
        return ExitCode.invalid;
      },
    },
  });
}

export default command;
