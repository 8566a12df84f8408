/**
 * The Ferry config the demo runs with: the lab's engines with their CA files, passwords outside
 * the config (PRD through `ferry.env` beside it, DR through a 0600 file), the store under the
 * demo directory, the demo's NATS server and a policy per VM. Validated with config/load.ts the
 * way every `ferry` command reads it.
 */
import { writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig, type LoadedConfig } from "../../config/load.ts";
import { renderEnvFile } from "../../config/env-file.ts";
import type { FerryConfigInput } from "../../contracts/config.ts";
import type { LabEngine } from "../../lab/mod.ts";
import type { DemoDirs } from "./data-dir.ts";

export const PRD_PASSWORD_ENV = "FERRY_DEMO_PRD_PASSWORD";
const schemaFile = fileURLToPath(new URL("../../contracts/config.schema.json", import.meta.url));

export interface DemoConfig {
  readonly file: string;
  readonly envFile: string;
  readonly drPasswordFile: string;
  /** console.usersFile: the console's users (scrypt hashes), owner only. */
  readonly consoleUsersFile: string;
  /** console.auditFile: one JSON line per console login and action. */
  readonly consoleAuditFile: string;
  readonly loaded: LoadedConfig;
}

export async function writeDemoConfig(o: {
  dirs: DemoDirs;
  prd: LabEngine;
  dr: LabEngine;
  natsUrl: string;
  vms: readonly string[];
}): Promise<DemoConfig> {
  const drPasswordFile = join(o.dirs.secrets, "dr.password");
  const consoleUsersFile = join(o.dirs.secrets, "console-users.json");
  const consoleAuditFile = join(o.dirs.logs, "console-audit.jsonl");
  await writeFile(drPasswordFile, `${o.dr.password}\n`, { mode: 0o600 });
  const envFile = join(o.dirs.root, "ferry.env");
  await writeFile(envFile, renderEnvFile({ [PRD_PASSWORD_ENV]: o.prd.password }, ["Secrets of the demo config beside this file (read by every ferry command)."]), { mode: 0o600 });

  const config: FerryConfigInput = {
    $schema: relative(o.dirs.root, schemaFile),
    engines: {
      prd: { url: o.prd.url, user: o.prd.user, passwordEnv: PRD_PASSWORD_ENV, caFile: o.prd.caFile },
      dr: { url: o.dr.url, user: o.dr.user, passwordFile: drPasswordFile, caFile: o.dr.caFile },
    },
    store: { path: "./backups" },
    nats: { servers: [o.natsUrl], replicas: 1 },
    // Where restore.requested puts VMs on the DR engine (the lab's default cluster and NFS domain).
    restore: { cluster: "Default", storageDomain: "data" },
    // GET /metrics of `ferry run` (Prometheus text format) on a free loopback port; the demo prints the URL.
    metrics: { listen: "127.0.0.1:0" },
    // `ferry console` on a free loopback port (plain HTTP is loopback only); its users and audit log in the demo directory.
    console: { listen: "127.0.0.1:0", usersFile: `./${relative(o.dirs.root, consoleUsersFile)}`, auditFile: `./${relative(o.dirs.root, consoleAuditFile)}` },
    defaults: {
      schedule: { days: "1111111", time: "02:00" },
      // No weekly full day: the demo's second backup must be incremental whatever the day.
      full: { maxChainLength: 7 },
      retention: { keepLast: 7 },
    },
    vms: Object.fromEntries(o.vms.map((name) => [name, name.startsWith("db") ? { retention: { keepDaily: 7, keepWeekly: 4 } } : {}])),
  };
  await writeFile(o.dirs.config, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  // Exactly what `ferry run` does with it (ferry.env beside the file included); an invalid
  // config fails here with every problem and its path.
  const loaded = await loadConfig(o.dirs.config, {}, { envFile: true });
  return { file: o.dirs.config, envFile, drPasswordFile, consoleUsersFile, consoleAuditFile, loaded };
}
