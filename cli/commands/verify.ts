import { stat } from "node:fs/promises";
import { openStore, type VerifyReport } from "../../adapters/store/mod.ts";
import { locateStore } from "../../config/store-location.ts";
import { isSegment, numberedPoints } from "../../domain/chain/mod.ts";
import { ExitCode, type Command, type CommandIO, parseCommandLine } from "../command.ts";

const usage = `Usage: ferry verify <vm> [--checkpoint N|latest|all] [options]

Re-read stored restore points through their qcow2 chains (qemu-nbd + nbdcopy), check every layer
with qemu-img check, and compare each block with the digests recorded at backup time. Finds bit
rot, truncated layers and broken merges. The result is recorded on the restore point ('verified'
in 'ferry checkpoints').

Reads the backup store directly: works when NATS is down.

Options:
  --checkpoint N   one restore point: its number from 'ferry checkpoints', 'latest', or its id.
                   Default: all restore points of the VM.
  --json           JSON: {vm, ok, results: [{point, ok, disks: [{diskId, ok, checksum, badBlocks, problems}]}]}
  --no-record      do not record the result in restore-points.json
  --store DIR      the backup store (default: $BACKUP_DIR, else the config's store.path, else ./data/backups)
  --config FILE    config file (for store.path)

Exit: 0 all verified, 1 a mismatch or an unreadable chain, 2 usage, 3 store unavailable, 4 bad input.
`;

function line(r: VerifyReport): string {
  const head = `#${r.point.number} ${r.point.time.slice(0, 19).replace("T", " ")} ${r.point.kind}: ${r.ok ? "ok" : "FAILED"}`;
  const disks = r.disks.map((d) => {
    const what = d.ok ? `ok (${d.blocks} blocks, ${d.layers} layers, sha256 ${d.checksum.actual?.slice(0, 16)}…)` : `FAILED: ${d.problems.join("; ")}`;
    const blocks = d.badBlocks.length ? `\n      differing blocks: ${d.badBlocks.map((b) => `#${b.index} @${b.offset}`).join(", ")}${d.badBlockCount > d.badBlocks.length ? ", ..." : ""}` : "";
    return `    ${d.alias || d.diskId}: ${what}${blocks}`;
  });
  return [head, ...disks].join("\n");
}

const command: Command = {
  name: "verify",
  summary: "re-read stored restore points and check them against their block digests",
  usage,
  async run(args: string[], io: CommandIO): Promise<number> {
    const parsed = parseCommandLine("verify", args, {
          checkpoint: { type: "string" },
          json: { type: "boolean" },
          "no-record": { type: "boolean" },
          store: { type: "string" },
          config: { type: "string" },
        }, io);
    if (!parsed) return ExitCode.usage;
    const [vm, ...extra] = parsed.positionals;
    if (!vm || extra.length) {
      io.stderr.write(`ferry verify: expected one VM name\n\n${usage}`);
      return ExitCode.usage;
    }
    if (!isSegment(vm)) {
      io.stderr.write(`ferry verify: '${vm.slice(0, 80)}' is not a valid VM name\n`);
      return ExitCode.invalid;
    }
    let store;
    let refs: string[];
    try {
      const where = await locateStore({ flag: parsed.values.store, configFlag: parsed.values.config, env: io.env, cwd: io.cwd });
      // A store that is not there (unmounted volume, wrong --store) is unavailable, not a VM without points.
      const st = await stat(where.root).catch(() => undefined);
      if (!st?.isDirectory()) {
        io.stderr.write(`ferry verify: the store ${where.root} (from ${where.via}) is not a directory: mount the backup volume or fix --store / store.path\n`);
        return ExitCode.unavailable;
      }
      store = openStore({ root: where.root });
      const record = await store.readManifest(vm);
      if (!record) {
        io.stderr.write(`ferry verify: no restore points for VM ${vm} in the store ${where.root}\n`);
        return ExitCode.failed;
      }
      const want = parsed.values.checkpoint ?? "all";
      refs = want === "all" ? numberedPoints(record).map((n) => n.point.id) : [want];
    } catch (err) {
      io.stderr.write(`ferry verify: ${(err as Error).message}\n`);
      return ExitCode.unavailable;
    }
    const reports: VerifyReport[] = [];
    for (const ref of refs) {
      try {
        const report = await store.verify(vm, ref, { signal: io.signal, record: !parsed.values["no-record"] });
        reports.push(report);
        if (!parsed.values.json) io.stdout.write(`${line(report)}\n`);
      } catch (err) {
        const e = err as Error & { code?: string };
        if (io.signal.aborted) throw err;
        if (e.code === "RESTORE_POINT_NOT_FOUND") {
          io.stderr.write(`ferry verify: ${e.message}\n`);
          return ExitCode.invalid;
        }
        // A chain that cannot even be opened (missing or hostile layer) is a failed verification.
        const failed: VerifyReport = {
          vm: { id: "", name: vm },
          point: { id: ref, number: 0, time: "", kind: "full" },
          ok: false,
          time: new Date().toISOString(),
          disks: [{ diskId: "", alias: "", ok: false, layers: 0, checksum: { expected: "" }, blocks: 0, badBlocks: [], badBlockCount: 0, problems: [e.message] }],
        };
        reports.push(failed);
        if (!parsed.values.json) io.stdout.write(`${ref}: FAILED: ${e.message}\n`);
      }
    }
    const ok = reports.every((r) => r.ok);
    if (parsed.values.json) {
      io.stdout.write(`${JSON.stringify({ vm, ok, source: "store", results: reports }, null, 2)}\n`);
    } else {
      io.stdout.write(`${ok ? "all verified" : "VERIFICATION FAILED"} (${reports.length} restore point${reports.length === 1 ? "" : "s"}, read from the store directly)\n`);
    }
    return ok ? ExitCode.ok : ExitCode.failed;
  },
};
export default command;
