import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { openStore, StoreError } from "../../adapters/store/mod.ts";
import { locateStore } from "../../config/store-location.ts";
import { ChainError, isSegment } from "../../domain/chain/mod.ts";
import { EXPORT_FORMATS, ExportError, exportRestorePoint, type ExportFormat, type ExportProgress, type ExportResult } from "../../dataplane/export.ts";
import { OutputExistsError } from "../../dataplane/layer-file.ts";
import { ExitCode, type Command, type CommandIO, parseCommandLine } from "../command.ts";

const usage = `Usage: ferry restore <vm> --to-dir DIR [--checkpoint N|latest|<id>] [--format qcow2|raw|ova] [--disk ALIAS]... [options]

Restore without an engine: write a restore point's disks, flattened (the whole qcow2 chain read
into one standalone image per disk), plus the OVF saved with the point, into DIR. Each disk is then
read back and checked against the block checksum recorded at backup time.

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

Without --to-dir, 'ferry restore' will restore onto an engine (restore.requested); that path is
not in this build yet.

Options:
  --to-dir DIR     write the restore point here
  --checkpoint N   the restore point: its number from 'ferry checkpoints', 'latest' (default), or its id
  --format F       qcow2 (default), raw or ova
  --disk ALIAS     only this disk (by alias, or disk id); repeat for more. Default: every disk
  --force          replace existing output files (default: refuse, exit 1)
  --json           one JSON document: {vm, point: {number, id, time, kind}, format, dir,
                   files: [{disk, alias, path, bytes, checksum, ok}], ova?}
  --store DIR      the backup store (default: $BACKUP_DIR, else the config's store.path, else ./data/backups)
  --config FILE    config file (for store.path)

Exit: 0 written and verified, 1 a checksum mismatch, an output file exists (without --force) or
the export failed, 2 usage (also: no --to-dir), 3 store unavailable, 4 unknown VM, restore point or
disk, or a bad name (nothing written); 130 / 143 interrupted by SIGINT / SIGTERM (nothing written).
`;

const options = {
  "to-dir": { type: "string" },
  checkpoint: { type: "string" },
  format: { type: "string" },
  disk: { type: "string", multiple: true },
  force: { type: "boolean" },
  json: { type: "boolean" },
  store: { type: "string" },
  config: { type: "string" },
} as const;

type Parsed = NonNullable<ReturnType<typeof parseCommandLine<typeof options>>>;

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

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
async function restoreOntoEngine(vm: string, _parsed: Parsed, io: CommandIO): Promise<number> {
  io.stderr.write(
    `ferry restore: restoring ${vm} onto an engine (restore.requested) is not available in this build; ` +
      "use --to-dir DIR to write the restore point's disks and OVF to a directory ('ferry restore --help')\n",
  );
  return ExitCode.usage;
}

const command: Command = {
  name: "restore",
  summary: "write a restore point's disks (qcow2, raw or one OVA) and OVF to a directory, checked against the backup",
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
