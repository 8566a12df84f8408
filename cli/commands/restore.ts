import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { openStore, StoreError } from "../../adapters/store/mod.ts";
import { locateStore } from "../../config/store-location.ts";
import { ChainError, isSegment } from "../../domain/chain/mod.ts";
import { EXPORT_FORMATS, ExportError, exportRestorePoint, type ExportFormat, type ExportProgress, type ExportResult } from "../../dataplane/export.ts";
import { OutputExistsError } from "../../dataplane/layer-file.ts";
import { randomUUID } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { restoreRequested, type RestoreRequested } from "../../contracts/restore-requested.ts";
import { CommandInvalidError, publishCommand } from "../../adapters/nats/publish-command.ts";
import { isPermanent } from "../../contracts/errors.ts";
import { createEngineClient } from "../../adapters/ovirt/mod.ts";
import { ConfigError } from "../../config/load.ts";
import { resolveConfig } from "../../config/session.ts";
import { readCaFiles, settingsFromConfig } from "../../pipeline/composition.ts";
import { planRestore, RestorePreflightError } from "../../pipeline/restore-plan.ts";
import { createRestoreEngine } from "../../pipeline/restore-engine.ts";
import { connectForCommand } from "./backup.ts";
import { bytes } from "../format.ts";
import { followRequest, requireWorker } from "../follow.ts";
import { ExitCode, NATS_OPTION_HELP, type Command, type CommandIO, parseCommandLine } from "../command.ts";

const usage = `Usage: ferry restore <vm> [--checkpoint N|latest|<id>] [--target ENGINE] [--name NAME] [--start] [--replace]
                    [--disk ALIAS]... [--map-network NET=PROFILE]... [--storage-domain SD] [--cluster C]
                    [--test] [--dry-run] [--wait] [--json] [--config FILE] [--nats URL]
       ferry restore <vm> --to-dir DIR [--checkpoint N|latest|<id>] [--format qcow2|raw|ova] [--disk ALIAS]... [options]

ONTO AN ENGINE (default): publishes restore.requested; the restore-requested function checks the
target first (cluster, storage domain, a vNIC profile for every NIC's network, free space, the
name), creates the disks, uploads the restore point through imageio, verifies every disk with
imageio's checksum against the backup, and creates the VM from the saved OVF (name: the VM's
plus restore.nameSuffix, default "_restored").

  --target ENGINE   the engine to restore onto (default dr)
  --name NAME       name of the new VM
  --start           start it and wait for 'up'
  --replace         a powered-off VM of that name is removed once the new disks are verified
  --disk ALIAS      only this disk, as a floating disk (repeat for more)
  --map-network N=P the NICs on network N get vNIC profile P on the target (repeat)
  --storage-domain SD, --cluster C   where it goes (default: the config's restore.*)
  --test            a restore test: restore under a temporary name, boot it, record the verdict
                    on the restore point ('ferry checkpoints': boot-tested), remove it again
  --dry-run         run only the preflight here (config: engines + store) and print the plan:
                    what would be created, where, how many bytes; changes nothing
  --wait            follow the restore: per-disk upload progress, then the outcome (exit 3 at
                    once, publishing nothing, when no restore-requested worker is running)
  --json            the outcome (or the request, or the plan) as JSON on stdout
  --timeout MIN     give up waiting after MIN minutes (default 240)
  --nats URL        ${NATS_OPTION_HELP}

TO A DIRECTORY (--to-dir, no engine needed): write a restore point's disks, flattened (the whole
qcow2 chain read into one standalone image per disk), plus the OVF saved with the point, into DIR.
Each disk is then read back and checked against the block checksum recorded at backup time.
Reads the backup store directly: works when NATS and the engines are down.

  qcow2 (default)  DIR/<alias>.qcow2 per disk + DIR/<vm>.ovf; sparse, not compressed
  raw              DIR/<alias>.raw per disk (sparse) + DIR/<vm>.ovf
  ova              one file DIR/<vm>.ova, laid out as oVirt's OVA export: the OVF first (vm.ovf),
                   then each disk as a qcow2 member named by its image id; the OVF's References
                   name those members and their sizes. Needs room for the OVA plus one disk.

Aliases become file names with anything outside A-Z a-z 0-9 . _ - replaced by '_'. Output is
written under hidden temporary names in DIR and renamed only when every file is complete, so an
interrupted (Ctrl-C, SIGTERM) or failed export leaves nothing behind. DIR is created (0700) when
missing; files are 0600. Progress goes to stderr once a second for disks that take that long.

  --to-dir DIR     write the restore point here
  --format F       qcow2 (default), raw or ova
  --force          replace existing output files (default: refuse, exit 1)
  --store DIR      the backup store (default: $BACKUP_DIR, else the config's store.path, else ./data/backups)

Common:
  --checkpoint N   the restore point: its number from 'ferry checkpoints', 'latest' (default), or its id
  --config FILE    config file

Exit: 0 done (restored and verified; or requested, without --wait; or the plan, with --dry-run),
1 the restore failed (--wait), a checksum mismatch, an output file exists (without --force) or the
export failed, 2 usage, 3 NATS, the store or an engine unavailable, 4 bad input or a preflight
refusal (unknown VM, restore point, disk, mapping; nothing changed); 130 / 143 interrupted by
SIGINT / SIGTERM (nothing written).
`;

const options = {
  "to-dir": { type: "string" },
  target: { type: "string" },
  name: { type: "string" },
  start: { type: "boolean" },
  replace: { type: "boolean" },
  "map-network": { type: "string", multiple: true },
  "storage-domain": { type: "string" },
  cluster: { type: "string" },
  test: { type: "boolean" },
  "dry-run": { type: "boolean" },
  wait: { type: "boolean" },
  timeout: { type: "string" },
  nats: { type: "string" },
  checkpoint: { type: "string" },
  format: { type: "string" },
  disk: { type: "string", multiple: true },
  force: { type: "boolean" },
  json: { type: "boolean" },
  store: { type: "string" },
  config: { type: "string" },
} as const;

type Parsed = NonNullable<ReturnType<typeof parseCommandLine<typeof options>>>;

const PHASE: Record<ExportProgress["phase"], string> = { convert: "written", pack: "packed", verify: "checked" };

/** stderr, at most once a second, only once an export has run for a second. */
export function progressPrinter(io: Pick<CommandIO, "stderr">, clock: () => number = () => performance.now()): (p: ExportProgress) => void {
  let last = clock();
  return (p) => {
    const now = clock();
    if (now - last < 1000) return;
    last = now;
    const pct = p.total ? ` (${Math.floor((p.bytes / p.total) * 100)}%)` : "";
    io.stderr.write(`ferry restore: ${p.alias || p.diskId}: ${bytes(p.bytes)} of ${bytes(p.total)} ${PHASE[p.phase]}${pct}\n`);
  };
}

function jsonDoc(r: ExportResult) {
  return {
    vm: r.vm.name,
    vmId: r.vm.id,
    point: r.point,
    format: r.format,
    dir: r.dir,
    ok: r.ok,
    ...(r.ovf ? { ovf: r.ovf } : {}),
    files: r.files.map((f) => ({
      disk: f.diskId,
      alias: f.alias,
      path: f.path,
      ...(f.member ? { member: f.member } : {}),
      bytes: f.bytes,
      virtualSize: f.virtualSize,
      checksum: f.checksum,
      ok: f.ok,
      ...(f.badBlocks !== undefined ? { badBlocks: f.badBlocks } : {}),
      ...(f.problem ? { problem: f.problem } : {}),
    })),
    ...(r.ova ? { ova: r.ova } : {}),
    warnings: r.warnings,
  };
}

function render(r: ExportResult): string {
  const when = r.point.time.slice(0, 19).replace("T", " ");
  const lines = [`restore point #${r.point.number} of ${r.vm.name} (${when} UTC, ${r.point.kind}) → ${r.dir} as ${r.format}`];
  for (const f of r.files) {
    const where = f.member ? `${f.path} [${f.member}]` : f.path;
    const verdict = f.ok ? `checksum ok (sha256 ${f.checksum.actual?.slice(0, 16)}…)` : `CHECKSUM MISMATCH: ${f.problem ?? "differs"}`;
    lines.push(`  ${f.alias || f.diskId}: ${where}  ${bytes(f.bytes)}  ${verdict}`);
  }
  if (r.ovf) lines.push(`  OVF: ${r.ovf}`);
  if (r.ova) lines.push(`  OVA: ${r.ova.path}  ${bytes(r.ova.bytes)}  (${r.ova.members.map((m) => m.name).join(", ")})`);
  for (const w of r.warnings) lines.push(`  note: ${w}`);
  const n = r.files.length;
  lines.push(r.ok ? `done: ${n} disk${n === 1 ? "" : "s"} written and verified` : `VERIFICATION FAILED: ${r.files.filter((f) => !f.ok).length} of ${n} disks differ from the backup`);
  return `${lines.join("\n")}\n`;
}

/**
 * Ctrl-C and SIGTERM end the export cleanly: the controller aborts qemu-img / qemu-nbd, the
 * export removes its temporary files, and the command answers 130 / 143.
 */
function interruptible(io: CommandIO) {
  const controller = new AbortController();
  let signal: "SIGINT" | "SIGTERM" | undefined;
  const on = (name: "SIGINT" | "SIGTERM") => () => {
    signal ??= name;
    controller.abort(new Error("interrupted"));
  };
  const onInt = on("SIGINT");
  const onTerm = on("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  const onParent = onInt; // main() aborts io.signal on SIGINT
  if (io.signal.aborted) onParent();
  else io.signal.addEventListener("abort", onParent, { once: true });
  return {
    signal: controller.signal,
    exitCode: () => (signal === "SIGTERM" ? 143 : 130),
    dispose() {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      io.signal.removeEventListener("abort", onParent);
    },
  };
}

/** `ferry restore <vm> --to-dir DIR`: the offline path. Reads only the store. */
async function restoreToDir(vm: string, parsed: Parsed, io: CommandIO): Promise<number> {
  const v = parsed.values;
  const format = (v.format ?? "qcow2") as ExportFormat;
  if (!EXPORT_FORMATS.includes(format)) {
    io.stderr.write(`ferry restore: --format must be one of ${EXPORT_FORMATS.join(", ")}, not '${String(v.format).slice(0, 40)}'\n`);
    return ExitCode.usage;
  }
  for (const d of v.disk ?? []) {
    if (!d || d.includes("/") || d.includes("\0") || d === "." || d === "..") {
      io.stderr.write(`ferry restore: --disk '${d.slice(0, 80)}' is not a disk alias (no '/', not '.' or '..')\n`);
      return ExitCode.invalid;
    }
  }
  const dir = resolve(io.cwd, v["to-dir"]!);
  let store;
  try {
    const where = await locateStore({ flag: v.store, configFlag: v.config, env: io.env, cwd: io.cwd });
    const st = await stat(where.root).catch(() => undefined);
    if (!st?.isDirectory()) {
      io.stderr.write(`ferry restore: the store ${where.root} (from ${where.via}) is not a directory\n`);
      return ExitCode.unavailable;
    }
    store = openStore({ root: where.root });
  } catch (err) {
    io.stderr.write(`ferry restore: ${(err as Error).message}\n`);
    return ExitCode.unavailable;
  }

  const stop = interruptible(io);
  try {
    const result = await exportRestorePoint({
      store,
      vm,
      ref: v.checkpoint ?? "latest",
      dir,
      format,
      ...(v.disk?.length ? { disks: v.disk } : {}),
      force: !!v.force,
      signal: stop.signal,
      onProgress: progressPrinter(io),
    });
    io.stdout.write(v.json ? `${JSON.stringify(jsonDoc(result), null, 2)}\n` : render(result));
    return result.ok ? ExitCode.ok : ExitCode.failed;
  } catch (err) {
    if (stop.signal.aborted) {
      io.stderr.write("ferry restore: interrupted; nothing was written\n");
      return stop.exitCode();
    }
    const e = err as Error & { code?: string };
    io.stderr.write(`ferry restore: ${e.message}\n`);
    if (err instanceof OutputExistsError) {
      io.stderr.write("ferry restore: use --force to replace it\n");
      return ExitCode.failed;
    }
    if (err instanceof ExportError) return ExitCode.invalid;
    if (err instanceof ChainError && (e.code === "RESTORE_POINT_NOT_FOUND" || e.code === "STORE_BAD_NAME")) return ExitCode.invalid;
    if (err instanceof StoreError && e.code === "STORE_VM_NOT_FOUND") return ExitCode.invalid;
    return ExitCode.failed;
  } finally {
    stop.dispose();
  }
}

/**
 * `ferry restore <vm>` without --to-dir: restore onto an engine through restore.requested.
 * Not in this build; the engine path replaces this function and leaves restoreToDir alone.
 */
/** The restore.requested this command line asks for; a string is a usage problem. */
function restoreRequest(vm: string, v: Parsed["values"]): Record<string, unknown> | string {
  const mappings: Record<string, Record<string, string>> = {};
  for (const m of v["map-network"] ?? []) {
    const eq = m.indexOf("=");
    if (eq <= 0 || eq === m.length - 1) return `--map-network takes NETWORK=PROFILE (got '${m}')`;
    (mappings.vnicProfiles ??= {})[m.slice(0, eq)] = m.slice(eq + 1);
  }
  if (v["storage-domain"]) mappings.storageDomains = { "*": v["storage-domain"] };
  if (v.cluster) mappings.clusters = { "*": v.cluster };
  const cp = v.checkpoint;
  const id = `cli-${randomUUID()}`;
  return {
    id, time: new Date().toISOString(), correlationId: id, vm,
    ...(cp === undefined || cp === "latest" ? {} : /^\d+$/.test(cp) ? { checkpoint: Number(cp) } : { restorePoint: cp }),
    ...(v.target ? { target: v.target } : {}),
    ...(v.name ? { name: v.name } : {}),
    ...(v.start ? { start: true } : {}),
    ...(v.replace ? { replace: true } : {}),
    ...(v.disk?.length ? { disks: v.disk } : {}),
    ...(Object.keys(mappings).length ? { mappings } : {}),
    ...(v.test ? { mode: "test" } : {}),
  };
}

async function restoreOntoEngine(vm: string, parsed: Parsed, io: CommandIO): Promise<number> {
  const v = parsed.values;
  if (v.format || v.force) {
    io.stderr.write("ferry restore: --format and --force go with --to-dir\n");
    return ExitCode.usage;
  }
  const timeoutMin = v.timeout === undefined ? 240 : Number(v.timeout);
  if (!Number.isFinite(timeoutMin) || timeoutMin <= 0) {
    io.stderr.write("ferry restore: --timeout must be a positive number of minutes\n");
    return ExitCode.usage;
  }
  const request = restoreRequest(vm, v);
  if (typeof request === "string") {
    io.stderr.write(`ferry restore: ${request}\n`);
    return ExitCode.usage;
  }
  // Checked before connecting too: a refused request exits 4 without needing NATS (and --dry-run needs none).
  const valid = restoreRequested.validate(request);
  if (!valid.ok) {
    io.stderr.write(`ferry restore: invalid request: ${valid.reason}\n`);
    return ExitCode.invalid;
  }
  if (v["dry-run"]) return dryRun(valid.value, v, io);

  const connected = await connectForCommand("restore", v, io, { maxReconnectAttempts: -1 });
  if ("exit" in connected) return connected.exit;
  const nc = connected.session.nc;
  const subs: Subscription[] = [];
  try {
    // --wait with nobody to do the work would wait for hours: say so now, publish nothing.
    if (v.wait) {
      const missing = await requireWorker(nc, "restore-requested", "restore", io);
      if (missing !== undefined) return missing;
    }
    const outcome = v.wait ? followRestore(nc, subs, request as { id: string; vm: string }, io, !!v.json, timeoutMin * 60_000) : undefined;
    // The console publishes through the same call: validated, msgID = the command's id.
    await publishCommand(nc, restoreRequested, request as RestoreRequested & { id: string });
    if (!v.wait) {
      if (v.json) io.stdout.write(`${JSON.stringify(request)}\n`);
      else io.stdout.write(`restore of ${vm} requested (id ${String(request.id)}); follow it with: ferry events 'restore.>'\n`);
      return ExitCode.ok;
    }
    return await outcome!;
  } catch (err) {
    io.stderr.write(`ferry restore: ${(err as Error).message}\n`);
    return err instanceof CommandInvalidError ? ExitCode.invalid : ExitCode.unavailable;
  } finally {
    for (const sub of subs) sub.unsubscribe();
    await nc.drain().catch(() => undefined);
  }
}

/** The preflight, run here against the target engine and the store: prints the plan, changes nothing. */
async function dryRun(req: RestoreRequested, v: Parsed["values"], io: CommandIO): Promise<number> {
  let config;
  try {
    config = await resolveConfig({ configFlag: v.config, env: io.env, cwd: io.cwd });
  } catch (err) {
    io.stderr.write(`ferry restore: ${(err as Error).message}\n`);
    return err instanceof ConfigError ? ExitCode.invalid : ExitCode.unavailable;
  }
  const target = req.target ?? "dr";
  const engine = config.engines[target];
  if (!engine) {
    io.stderr.write(`ferry restore: engine '${target}' is not in the config (engines: ${Object.keys(config.engines).join(", ") || "none"})\n`);
    return ExitCode.invalid;
  }
  const caPems = await readCaFiles(config.engines);
  const settings = settingsFromConfig(config, caPems).restore!;
  const where = await locateStore({ flag: v.store, configFlag: v.config, env: io.env, cwd: io.cwd });
  const client = createEngineClient({ url: engine.url, user: engine.user, password: engine.password, caPem: caPems[target], insecure: engine.insecure ?? false, correlationId: "ferry-restore-dry-run" });
  try {
    const plan = await planRestore(
      { store: openStore({ root: where.root }), engine: createRestoreEngine(client, { name: target, caPem: caPems[target], insecure: engine.insecure }) },
      {
        vm: req.vm, point: req.restorePoint ?? req.checkpoint ?? "latest", target,
        name: req.mode === "test" ? `${req.vm}-restoretest-…` : (req.name ?? `${req.vm}${settings.nameSuffix}`),
        replace: req.replace ?? settings.replaceExisting, disks: req.disks, mappings: req.mappings, cluster: settings.cluster, storageDomain: settings.storageDomain,
      },
    );
    const doc = {
      vm: plan.vm.name, point: plan.point, target, name: plan.name, cluster: plan.cluster.name, storageDomain: plan.storageDomain.name,
      disks: plan.disks.map((d) => ({ alias: d.alias, virtualSize: d.virtualSize, requiredBytes: d.requiredBytes, interface: d.interface, bootable: d.bootable })),
      nics: plan.nics.map((n) => ({ name: n.name, network: n.network, vnicProfile: n.vnicProfile?.name ?? null })),
      requiredBytes: plan.requiredBytes, ...(plan.storageDomain.available !== undefined ? { available: plan.storageDomain.available } : {}),
      ...(plan.replaces ? { replaces: plan.replaces.id } : {}),
    };
    if (v.json) io.stdout.write(`${JSON.stringify(doc)}\n`);
    else {
      io.stdout.write(`restore plan (nothing was changed): restore point #${plan.point.number} of ${plan.vm.name} (${plan.point.time.slice(0, 19).replace("T", " ")} UTC, ${plan.point.kind})\n`);
      io.stdout.write(`  onto ${target} as VM ${plan.name}${plan.replaces ? ` (replacing the powered-off VM ${plan.replaces.id})` : ""} in cluster ${plan.cluster.name}\n`);
      io.stdout.write(`  storage domain ${plan.storageDomain.name}: ${bytes(plan.requiredBytes)} needed${plan.storageDomain.available !== undefined ? `, ${bytes(plan.storageDomain.available)} free` : ""}\n`);
      for (const d of doc.disks) io.stdout.write(`  disk ${d.alias}: ${bytes(d.virtualSize)} virtual, ${bytes(d.requiredBytes)} to allocate, ${d.interface}${d.bootable ? ", bootable" : ""}\n`);
      for (const n of doc.nics) io.stdout.write(`  NIC ${n.name}: network ${n.network || "(none)"} → vNIC profile ${n.vnicProfile ?? "(none)"}\n`);
    }
    return ExitCode.ok;
  } catch (err) {
    if (err instanceof RestorePreflightError) {
      io.stderr.write(`ferry restore: the restore would be refused:\n${err.problems.map((p) => `  - ${p}`).join("\n")}\n`);
      return ExitCode.invalid;
    }
    if (err instanceof StoreError || err instanceof ChainError) {
      io.stderr.write(`ferry restore: ${err.message}\n`);
      return err.code === "STORE_UNAVAILABLE" ? ExitCode.unavailable : ExitCode.invalid;
    }
    io.stderr.write(`ferry restore: ${(err as Error).message}\n`);
    return isPermanent(err) ? ExitCode.failed : ExitCode.unavailable;
  } finally {
    await client.close().catch(() => undefined);
  }
}

function followRestore(nc: NatsConnection, subs: Subscription[], request: { id: string; vm: string }, io: CommandIO, json: boolean, timeoutMs: number): Promise<number> {
  return followRequest(nc, subs, io, {
    id: request.id,
    what: "restore",
    timeoutMs,
    progressOf: json ? undefined : request.vm,
    success: ["restore.completed"],
    outcomes: {
      "restore.completed": (e) => {
        if (json) io.stdout.write(`${JSON.stringify(e)}\n`);
        else {
          const ds = (e.disks as { alias: string; checksum: string }[] | undefined) ?? [];
          const boot = e.bootTest as { ok: boolean; seconds: number } | undefined;
          io.stdout.write(
            `restore of ${request.vm} completed on ${String(e.target)}: ${e.mode === "test" ? `restore test booted in ${boot?.seconds.toFixed(1)} s, removed again` : `VM ${String(e.name)}${e.vmId ? ` (${String(e.vmId)})` : ""}${e.started ? ", started" : ""}`}; ` +
              `${bytes(Number(e.bytes))} uploaded in ${Number(e.seconds).toFixed(1)} s; ${ds.length} disk(s) verified with imageio's checksum\n`,
          );
        }
        return ExitCode.ok;
      },
      "restore.failed": (e) => {
        if (json) io.stdout.write(`${JSON.stringify(e)}\n`);
        else io.stderr.write(`restore of ${request.vm} failed (${String(e.code)}): ${String(e.message)}\n`);
        return e.code === "RESTORE_PREFLIGHT" ? ExitCode.invalid : ExitCode.failed;
      },
      "restore.requested.rejected": (e) => {
        io.stderr.write(`restore request rejected: ${String(e.reason)}\n`);
        return ExitCode.invalid;
      },
    },
  });
}

const command: Command = {
  name: "restore",
  summary: "restore a restore point as a VM on an engine (restore.requested), or its disks to a directory (--to-dir)",
  usage,
  async run(args: string[], io: CommandIO): Promise<number> {
    const parsed = parseCommandLine("restore", args, options, io);
    if (!parsed) return ExitCode.usage;
    const [vm, ...extra] = parsed.positionals;
    if (!vm || extra.length) {
      io.stderr.write(`ferry restore: expected one VM name\n\n${usage}`);
      return ExitCode.usage;
    }
    if (!isSegment(vm)) {
      io.stderr.write(`ferry restore: '${vm.slice(0, 80)}' is not a valid VM name (A-Z a-z 0-9 . _ -, not '.' or '..')\n`);
      return ExitCode.invalid;
    }
    return parsed.values["to-dir"] !== undefined ? restoreToDir(vm, parsed, io) : restoreOntoEngine(vm, parsed, io);
  },
};
export default command;
