/** Command line and environment of `npm run demo`, and the size profiles. */
import { resolve } from "node:path";
import { parseArgs } from "node:util";

const MiB = 1024 * 1024;

export interface DiskPlan {
  readonly alias: string;
  readonly size: number;
  /** Guest data written before the first backup (seeded random, in 1 MiB..4 MiB chunks spread over the disk). */
  readonly initialData: number;
}

export interface VmPlan {
  readonly name: string;
  readonly disks: readonly DiskPlan[];
}

export interface SizeProfile {
  readonly name: "normal" | "small";
  readonly vms: readonly VmPlan[];
  /** Guest data written between the full and the incremental backup, on web01's first disk. */
  readonly changedData: number;
  /** Per-step timeout of a backup (publish → backup.completed). */
  readonly backupTimeoutMs: number;
}

export const profiles: Record<SizeProfile["name"], SizeProfile> = {
  normal: {
    name: "normal",
    vms: [
      {
        name: "web01",
        disks: [
          { alias: "web01_os", size: 256 * MiB, initialData: 32 * MiB },
          { alias: "web01_data", size: 128 * MiB, initialData: 8 * MiB },
        ],
      },
      { name: "db01", disks: [{ alias: "db01_os", size: 128 * MiB, initialData: 8 * MiB }] },
    ],
    changedData: 4 * MiB,
    backupTimeoutMs: 180_000,
  },
  // For the test (test/demo.test.ts) and slow machines.
  small: {
    name: "small",
    vms: [
      {
        name: "web01",
        disks: [
          { alias: "web01_os", size: 32 * MiB, initialData: 4 * MiB },
          { alias: "web01_data", size: 16 * MiB, initialData: 1 * MiB },
        ],
      },
      { name: "db01", disks: [{ alias: "db01_os", size: 16 * MiB, initialData: 1 * MiB }] },
    ],
    changedData: 1 * MiB,
    backupTimeoutMs: 120_000,
  },
};

export interface DemoOptions {
  readonly keep: boolean;
  readonly profile: SizeProfile;
  /** Everything the demo writes: nats/, lab/, backups/, ferry.json, secrets/, logs/. */
  readonly dataDir: string;
  /** 4222 when free unless set; 0 = any free port. */
  readonly natsPort: number | undefined;
  readonly help: boolean;
}

export const usage = `Usage: npm run demo [-- --keep] [--small] [--data DIR] [--nats-port N]

Starts a NATS server (JetStream), the simulated PRD and DR engines (the lab) with two VMs, writes a
Ferry config for them, starts Ferry's functions ('ferry run all'), takes a full and an incremental
backup of web01 through the bus, lists and verifies the restore points, and shows that plain
qemu-img reads the stored chain. Then it stops everything (or, with --keep, runs until Ctrl-C).

Options:
  --keep          keep NATS, the lab and the functions running until Ctrl-C, to drive by hand
  --small         small disks (tens of MiB instead of hundreds; also FERRY_DEMO_SIZE=small)
  --data DIR      where everything goes (default ./data/demo; also FERRY_DEMO_DATA). Cleaned at start.
  --nats-port N   NATS client port (default 4222 when free, else a free port; 0 = any free port)

Environment: FERRY_DEMO_SIZE=small|normal, FERRY_DEMO_DATA=DIR, FERRY_DEMO_NATS_PORT=N,
FERRY_DEMO_BACKUP_TIMEOUT=SECONDS (per backup; default 180, small 120), FERRY_LOG_LEVEL for the functions.
Exit: 0 done, 1 a step failed (the reason is printed), 2 usage, 130 interrupted.
`;

export function parseDemoOptions(argv: string[], env: NodeJS.ProcessEnv, cwd: string): DemoOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      keep: { type: "boolean", default: false },
      small: { type: "boolean", default: false },
      data: { type: "string" },
      "nats-port": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    allowPositionals: false,
  });
  const sizeName = values.small ? "small" : (env.FERRY_DEMO_SIZE ?? "normal");
  if (sizeName !== "small" && sizeName !== "normal") throw new Error(`FERRY_DEMO_SIZE must be 'small' or 'normal', not '${sizeName}'`);
  const portText = values["nats-port"] ?? env.FERRY_DEMO_NATS_PORT;
  let natsPort: number | undefined;
  if (portText !== undefined) {
    natsPort = Number(portText);
    if (!Number.isInteger(natsPort) || natsPort < 0 || natsPort > 65535) throw new Error(`--nats-port must be 0..65535, not '${portText}'`);
  }
  let profile = profiles[sizeName];
  if (env.FERRY_DEMO_BACKUP_TIMEOUT !== undefined) {
    const s = Number(env.FERRY_DEMO_BACKUP_TIMEOUT);
    if (!Number.isFinite(s) || s <= 0) throw new Error(`FERRY_DEMO_BACKUP_TIMEOUT must be a number of seconds, not '${env.FERRY_DEMO_BACKUP_TIMEOUT}'`);
    profile = { ...profile, backupTimeoutMs: s * 1000 };
  }
  return {
    keep: values.keep ?? false,
    profile,
    dataDir: resolve(cwd, values.data ?? env.FERRY_DEMO_DATA ?? "data/demo"),
    natsPort,
    help: values.help ?? false,
  };
}
