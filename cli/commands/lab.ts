import { mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  callControl,
  ControlCallError,
  LabNotRunningError,
  parseSize,
  readLabFile,
  labFileFor,
  writeLabFile,
  type LabFile,
} from "../../lab/control-client.ts";
import { seedDemoVms } from "../../lab/demo.ts";
import { startLab } from "../../lab/mod.ts";
import { ExitCode, type Command, type CommandIO } from "../command.ts";

const usage = `Usage:
  ferry lab up [--vms N] [--disk-size SIZE] [--data DIR] [--engines prd,dr] [--keep-copies N] [--json]
  ferry lab status [--engine NAME] [--data DIR] [--json]
  ferry lab write <vm> [--disk N|ALIAS] --offset O --length L [--pattern BYTE | --seed S | --zero]
  ferry lab snapshot <vm> [--description TEXT]
  ferry lab restore <vm> <snapshot-id>
  ferry lab export <disk> <out> [--format raw|qcow2] [--at-backup ID] [--at-snapshot ID]
  ferry lab rotate-ca
  ferry lab add-network <name> [--profiles NAME,NAME]
  ferry lab add-cluster <name>
  ferry lab add-storage-domain <name> --available SIZE [--storage nfs|iscsi]
  ferry lab set-storage-available <storage-domain> <SIZE>
  ferry lab fault fail-next-boot [<vm>]
  ferry lab fault fail-next-transfer <initializing|transferring|finalizing> [--direction upload|download]
  ferry lab fault drop-connection <bytes>
  ferry lab fault delete-bitmap <disk> <checkpoint-id>
  ferry lab fault http-errors <status> <count> [--path REGEX]
  ferry lab fault stall-finalize <ms> [--target backup|transfer]
  ferry lab fault expire-ticket [<transfer-id>]
  ferry lab fault throttle-imageio <bytes-per-second>
  ferry lab fault stall-imageio <ms>
  ferry lab fault clear

A simulated oVirt engine pair (PRD and DR) with imageio and real qcow2 disks, for tests and demos.

up        Start the lab and keep it running until Ctrl-C. Prints each engine's URL, credentials
          and CA file. --vms N creates demo VMs vm01..vmNN on prd (system disk of --disk-size,
          default 1G, plus a data disk of a quarter of it, with some random data). Run again
          with the same --data to restart the lab with its state: same ports, CA, credentials,
          VMs and disks (open backups come back failed, open transfers finished_failure).
          --keep-copies N: keep the point-in-time copies (for export --at-backup) of at most
          the N newest backups (default 32, and at most 4 GiB in all).
status    Show VMs (disks, NICs), networks, storage domains, open backups and transfers of an
          engine (default prd).
others    Call the lab's control API (/ferry-lab/ on the engine) of a running lab.

Options:
  --data DIR      lab state directory (default: $FERRY_LAB_DIR or <tmpdir>/ferry-lab)
  --engine NAME   engine to talk to (default prd)
  --json          machine-readable output
Sizes accept K, M, G, T suffixes (binary). VMs and disks may be named by name/alias or id.
`;

class UsageError extends Error {}

function dataDir(values: { data?: string | undefined }, io: CommandIO): string {
  return resolve(io.cwd, values.data ?? io.env.FERRY_LAB_DIR ?? join(tmpdir(), "ferry-lab"));
}

function int(v: string | undefined, name: string): number {
  if (v === undefined || !/^\d+$/.test(v)) throw new UsageError(`${name} must be a non-negative integer`);
  return Number(v);
}

function print(io: CommandIO, json: boolean, value: unknown, text: string): void {
  io.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

async function up(args: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      vms: { type: "string" },
      "disk-size": { type: "string" },
      data: { type: "string" },
      engines: { type: "string" },
      "keep-copies": { type: "string" },
      json: { type: "boolean", default: false },
    },
    allowPositionals: false,
  });
  const dir = dataDir(values, io);
  const count = values.vms === undefined ? 0 : int(values.vms, "--vms");
  const diskSize = parseSize(values["disk-size"] ?? "1G");
  const engines = (values.engines ?? "prd,dr").split(",").map((s) => s.trim()).filter(Boolean);
  await mkdir(dir, { recursive: true });
  const keep = values["keep-copies"] === undefined ? undefined : int(values["keep-copies"], "--keep-copies");
  const lab = await startLab({ dataDir: dir, engines, ...(keep !== undefined ? { engineOptions: { timings: { keepPointInTimeCount: keep, keepPointInTime: keep > 0 } } } : {}) });
  try {
    const prd = lab.engines[engines[0]!]!;
    if (count > 0) {
      io.stderr.write(`creating ${count} demo VM(s) on ${prd.name}...\n`);
      await seedDemoVms(prd.control, { count, diskSize });
    }
    const file = labFileFor(lab, dir);
    const labFile = await writeLabFile(dir, file);
    if (values.json) {
      io.stdout.write(`${JSON.stringify(file, null, 2)}\n`);
    } else {
      const lines = [`ferry lab running (data: ${dir}, pid ${process.pid}); Ctrl-C to stop.`, ""];
      for (const e of Object.values(file.engines)) {
        lines.push(
          `[${e.name}]`,
          `  engine    ${e.url}/ovirt-engine  (API ${e.apiUrl})`,
          `  user      ${e.user}   password ${e.password}`,
          `  CA        ${e.caFile}  (also ${e.plainUrl}/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA)`,
          `  imageio   ${e.imageioUrl}`,
          `  control   ${e.controlUrl}`,
          "",
        );
      }
      lines.push(`Connection details for scripts: ${labFile}`);
      io.stdout.write(`${lines.join("\n")}\n`);
    }
    await new Promise<void>((r) => {
      if (io.signal.aborted) return r();
      io.signal.addEventListener("abort", () => r(), { once: true });
    });
    io.stderr.write("stopping the lab...\n");
    await rm(labFile, { force: true });
    return ExitCode.ok;
  } finally {
    await lab.stop();
  }
}

async function control(sub: string, args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      data: { type: "string" },
      engine: { type: "string" },
      json: { type: "boolean", default: false },
      disk: { type: "string" },
      offset: { type: "string" },
      length: { type: "string" },
      pattern: { type: "string" },
      seed: { type: "string" },
      zero: { type: "boolean" },
      description: { type: "string" },
      format: { type: "string" },
      "at-backup": { type: "string" },
      "at-snapshot": { type: "string" },
      direction: { type: "string" },
      path: { type: "string" },
      target: { type: "string" },
      profiles: { type: "string" },
      available: { type: "string" },
      storage: { type: "string" },
    },
    allowPositionals: true,
  });
  const lab = await readLabFile(dataDir(values, io));
  const name = values.engine ?? Object.keys(lab.engines)[0]!;
  const engine = lab.engines[name];
  if (!engine) throw new UsageError(`no engine '${name}' in this lab (have: ${Object.keys(lab.engines).join(", ")})`);
  const json = values.json ?? false;
  const need = (n: number, what: string) => {
    if (positionals.length < n) throw new UsageError(`expected ${what}`);
  };

  switch (sub) {
    case "status": {
      const s = (await callControl(engine, "GET", "status")) as {
        engine: string;
        url: string;
        vms: Array<{
          name: string;
          id: string;
          status: string;
          disks: Array<{ alias: string; id: string; format: string; status: string; volumes: number }>;
          nics?: Array<{ name: string; mac: string; network?: string; vnicProfile?: string }>;
        }>;
        networks?: Array<{ name: string; vnicProfiles: string[] }>;
        clusters?: Array<{ name: string }>;
        storageDomains?: Array<{ name: string; storage: string; available: number; availableBytes: number }>;
        openBackups: Array<{ id: string; phase: string }>;
        openTransfers: Array<{ id: string; phase: string; direction: string }>;
      };
      const GiB = 1024 ** 3;
      const lines = [`engine ${s.engine} at ${s.url}`];
      if (s.clusters) lines.push(`clusters: ${s.clusters.map((c) => c.name).join(", ")}`);
      if (s.networks) lines.push(`networks: ${s.networks.map((n) => `${n.name} (profiles ${n.vnicProfiles.join(", ") || "none"})`).join(", ")}`);
      if (s.storageDomains) {
        lines.push(`storage domains: ${s.storageDomains.map((d) => `${d.name} (${d.storage}, ${(d.availableBytes / GiB).toFixed(1)} GiB free)`).join(", ")}`);
      }
      lines.push(`VMs: ${s.vms.length}`);
      for (const vm of s.vms) {
        lines.push(`  ${vm.name} (${vm.id}) ${vm.status}`);
        for (const d of vm.disks) lines.push(`    ${d.alias} (${d.id}) ${d.format} ${d.status}, ${d.volumes} volume(s)`);
        for (const n of vm.nics ?? []) lines.push(`    ${n.name} ${n.mac} on ${n.network ? `${n.network}/${n.vnicProfile}` : "no network"}`);
      }
      lines.push(`open backups: ${s.openBackups.map((b) => `${b.id} ${b.phase}`).join(", ") || "none"}`);
      lines.push(`open transfers: ${s.openTransfers.map((t) => `${t.id} ${t.direction} ${t.phase}`).join(", ") || "none"}`);
      print(io, json, s, lines.join("\n"));
      return ExitCode.ok;
    }
    case "write": {
      need(1, "<vm>");
      const s = (await callControl(engine, "GET", "status")) as { vms: Array<{ name: string; id: string; disks: Array<{ id: string; alias: string }> }> };
      const vm = s.vms.find((v) => v.name === positionals[0] || v.id === positionals[0]);
      if (!vm) throw new UsageError(`no VM '${positionals[0]}'`);
      const sel = values.disk ?? "1";
      const disk = /^\d+$/.test(sel) ? vm.disks[Number(sel) - 1] : vm.disks.find((d) => d.alias === sel || d.id === sel);
      if (!disk) throw new UsageError(`VM ${vm.name} has no disk '${sel}'`);
      const body: Record<string, unknown> = { offset: int(values.offset, "--offset"), length: int(values.length, "--length") };
      if (values.pattern !== undefined) body.pattern = int(values.pattern, "--pattern");
      if (values.seed !== undefined) body.seed = int(values.seed, "--seed");
      if (values.zero) body.zero = true;
      const r = (await callControl(engine, "POST", `disks/${encodeURIComponent(disk.id)}/write`, body)) as { sha256: string };
      print(io, json, r, `wrote ${String(body.length)} bytes at ${String(body.offset)} to ${disk.alias} (sha256 ${r.sha256})`);
      return ExitCode.ok;
    }
    case "snapshot": {
      need(1, "<vm>");
      const r = (await callControl(engine, "POST", `vms/${encodeURIComponent(positionals[0]!)}/snapshots`, values.description ? { description: values.description } : {})) as { id: string };
      print(io, json, r, `snapshot ${r.id}`);
      return ExitCode.ok;
    }
    case "restore": {
      need(2, "<vm> <snapshot-id>");
      await callControl(engine, "POST", `vms/${encodeURIComponent(positionals[0]!)}/snapshots/${encodeURIComponent(positionals[1]!)}/restore`, {});
      print(io, json, { ok: true }, `restored; the VM's checkpoints are now invalid`);
      return ExitCode.ok;
    }
    case "export": {
      need(2, "<disk> <out>");
      const body: Record<string, unknown> = { path: resolve(io.cwd, positionals[1]!), format: values.format ?? "raw" };
      if (values["at-backup"]) body.atBackup = values["at-backup"];
      if (values["at-snapshot"]) body.atSnapshot = values["at-snapshot"];
      const r = (await callControl(engine, "POST", `disks/${encodeURIComponent(positionals[0]!)}/export`, body)) as { path: string; virtualSize: number };
      print(io, json, r, `exported to ${r.path} (${r.virtualSize} bytes virtual)`);
      return ExitCode.ok;
    }
    case "rotate-ca": {
      const r = (await callControl(engine, "POST", "rotate-ca", {})) as { fingerprint256: string; notAfter: string };
      print(io, json, r, `new CA; engine certificate ${r.fingerprint256}, valid until ${r.notAfter}`);
      return ExitCode.ok;
    }
    case "add-network": {
      need(1, "<name>");
      const profiles = values.profiles?.split(",").map((x) => x.trim()).filter(Boolean);
      const r = (await callControl(engine, "POST", "networks", { name: positionals[0], ...(profiles ? { vnicProfiles: profiles } : {}) })) as {
        id: string;
        vnicProfiles: Array<{ name: string }>;
      };
      print(io, json, r, `network ${positionals[0]} (${r.id}), profiles ${r.vnicProfiles.map((p) => p.name).join(", ")}`);
      return ExitCode.ok;
    }
    case "add-cluster": {
      need(1, "<name>");
      const r = (await callControl(engine, "POST", "clusters", { name: positionals[0] })) as { id: string };
      print(io, json, r, `cluster ${positionals[0]} (${r.id})`);
      return ExitCode.ok;
    }
    case "add-storage-domain": {
      need(1, "<name>");
      if (!values.available) throw new UsageError("--available SIZE is required");
      const body = { name: positionals[0], availableBytes: parseSize(values.available), ...(values.storage ? { storage: values.storage } : {}) };
      const r = (await callControl(engine, "POST", "storagedomains", body)) as { id: string };
      print(io, json, r, `storage domain ${positionals[0]} (${r.id})`);
      return ExitCode.ok;
    }
    case "set-storage-available": {
      need(2, "<storage-domain> <SIZE>");
      const bytes = /^0+$/.test(positionals[1]!) ? 0 : parseSize(positionals[1]!);
      const r = await callControl(engine, "POST", `storagedomains/${encodeURIComponent(positionals[0]!)}/available`, { bytes });
      print(io, json, r, `${positionals[0]}: ${bytes} bytes free`);
      return ExitCode.ok;
    }
    case "fault": {
      need(1, "a fault kind");
      const [kind, ...rest] = positionals;
      let body: Record<string, unknown> = {};
      switch (kind) {
        case "fail-next-transfer":
          if (!rest[0]) throw new UsageError("expected a phase");
          body = { phase: rest[0], ...(values.direction ? { direction: values.direction } : {}) };
          break;
        case "drop-connection":
          body = { bytes: int(rest[0], "<bytes>") };
          break;
        case "delete-bitmap":
          if (rest.length < 2) throw new UsageError("expected <disk> <checkpoint-id>");
          body = { disk: rest[0], checkpoint: rest[1] };
          break;
        case "http-errors":
          body = { status: int(rest[0], "<status>"), count: int(rest[1], "<count>"), ...(values.path ? { path: values.path } : {}) };
          break;
        case "stall-finalize":
          body = { ms: int(rest[0], "<ms>"), ...(values.target ? { target: values.target } : {}) };
          break;
        case "expire-ticket":
          body = rest[0] ? { transfer: rest[0] } : {};
          break;
        case "fail-next-boot":
          body = rest[0] ? { vm: rest[0] } : {};
          break;
        case "throttle-imageio":
          body = { bytesPerSecond: int(rest[0], "<bytes-per-second>") };
          break;
        case "stall-imageio":
          body = { ms: int(rest[0], "<ms>") };
          break;
        case "clear":
          break;
        default:
          throw new UsageError(`unknown fault '${kind}'`);
      }
      const r = await callControl(engine, "POST", `faults/${kind}`, body);
      print(io, json, r, `${kind}: ${JSON.stringify(r)}`);
      return ExitCode.ok;
    }
    default:
      throw new UsageError(`unknown subcommand '${sub}'`);
  }
}

const lab: Command = {
  name: "lab",
  summary: "run the simulated oVirt engine pair (PRD/DR) and steer it",
  usage,
  async run(args, io) {
    const [sub, ...rest] = args;
    try {
      if (!sub) throw new UsageError("expected a subcommand");
      if (sub.startsWith("-")) throw new UsageError(`expected a subcommand, not the option '${sub}'`);
      if (sub === "up") return await up(rest, io);
      return await control(sub, rest, io);
    } catch (err) {
      if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
        io.stderr.write(`ferry lab: ${(err as Error).message}\n${usage}`);
        return ExitCode.usage;
      }
      if (err instanceof LabNotRunningError) {
        io.stderr.write(`ferry lab: ${err.message}\n`);
        return ExitCode.unavailable;
      }
      if (err instanceof ControlCallError) {
        io.stderr.write(`ferry lab: ${err.message}\n`);
        return err.status === 400 ? ExitCode.invalid : ExitCode.failed;
      }
      io.stderr.write(`ferry lab: ${(err as Error).message}\n`);
      return ExitCode.failed;
    }
  },
};

export default lab;
