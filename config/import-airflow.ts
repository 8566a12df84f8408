/**
 * Converting the Airflow-era `variables.json` into a Ferry config. Pure: no files, no env.
 * Returns the config document, the secrets (for ferry.env, never for printing), every field that
 * could not be mapped with the reason, and notes on mappings an operator should know about.
 */
import { engineUrlProblem, normaliseEngineUrl, WEEKDAYS, DISK_INTERFACES, type Weekday } from "../contracts/config.ts";

export interface UnmappedField {
  /** Dotted path in variables.json, e.g. "restore_settings.backup_old_vm". */
  field: string;
  reason: string;
}

export interface AirflowImport {
  /** The Ferry config document (JSON-ready). */
  config: Record<string, unknown>;
  /** Environment variables for ferry.env: name → secret value. */
  secrets: Record<string, string>;
  unmapped: UnmappedField[];
  notes: string[];
}

export const ENGINE_PASSWORD_ENV = { prd: "FERRY_PRD_PASSWORD", dr: "FERRY_DR_PASSWORD" } as const;

const CHECKPOINTS_REASON =
  "not needed: Ferry keeps checkpoints in the NATS KV bucket ferry-chains and in each VM's restore-points.json in the store";

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const DAYS_MASK = /^[01]{7}$/;
const TIME_OF_DAY = /^([01]\d|2[0-3]):[0-5]\d$/;

/** "7", 7 → 7; anything else → undefined. */
function positiveInt(v: unknown): number | undefined {
  const n = typeof v === "string" && /^\s*\d+\s*$/.test(v) ? Number(v) : v;
  return typeof n === "number" && Number.isInteger(n) && n >= 1 ? n : undefined;
}

function weekday(v: unknown): Weekday | undefined {
  const s = typeof v === "string" ? v.trim().toLowerCase() : "";
  return (WEEKDAYS as readonly string[]).includes(s) ? (s as Weekday) : undefined;
}

function diskInterface(v: unknown): (typeof DISK_INTERFACES)[number] | undefined {
  if (typeof v !== "string") return undefined;
  const s = v.trim().toLowerCase().replace(/[-\s]/g, "_");
  return (DISK_INTERFACES as readonly string[]).includes(s) ? (s as (typeof DISK_INTERFACES)[number]) : undefined;
}

class Importer {
  readonly unmapped: UnmappedField[] = [];
  readonly notes: string[] = [];
  readonly secrets: Record<string, string> = {};

  skip(field: string, reason: string): void {
    this.unmapped.push({ field, reason });
  }

  /** Marks every key of `obj` not in `handled` as unmapped. */
  rest(prefix: string, obj: Record<string, unknown>, handled: readonly string[], what: string): void {
    for (const key of Object.keys(obj)) {
      if (!handled.includes(key)) this.skip(`${prefix}${key}`, `unknown ${what} field: Ferry has no equivalent`);
    }
  }

  engine(vars: Record<string, unknown>, prefix: "source" | "target", name: "prd" | "dr"): Record<string, unknown> | undefined {
    const keys = ["url", "user", "password", "cert_path"].map((k) => `${prefix}_ovirt_${k}`);
    if (!keys.some((k) => k in vars)) return undefined;
    const [urlKey, userKey, passwordKey, certKey] = keys as [string, string, string, string];
    const engine: Record<string, unknown> = {};
    const url = vars[urlKey];
    if (typeof url === "string") {
      const problem = engineUrlProblem(url);
      if (problem) {
        engine.url = url;
        this.skip(urlKey, `${problem}; copied as it is, fix it in the config`);
      } else {
        engine.url = normaliseEngineUrl(url);
      }
    } else {
      this.skip(urlKey, "missing or not a string: engines." + name + ".url must be set by hand");
    }
    if (typeof vars[userKey] === "string" && vars[userKey]) engine.user = vars[userKey];
    else if (userKey in vars) this.skip(userKey, "not a string; the default admin@internal is used");
    const envName = ENGINE_PASSWORD_ENV[name];
    engine.passwordEnv = envName;
    const password = vars[passwordKey];
    if (typeof password === "string" && password) this.secrets[envName] = password;
    else {
      this.notes.push(`${passwordKey} is missing: put ${envName}=... into ferry.env before starting Ferry.`);
      if (passwordKey in vars) this.skip(passwordKey, "empty or not a string");
    }
    const cert = vars[certKey];
    if (typeof cert === "string" && cert) {
      engine.caFile = cert;
      this.notes.push(`engines.${name}.caFile is ${cert}: make sure that file exists on this machine (or run ferry cert fetch).`);
    } else if (certKey in vars) this.skip(certKey, "empty or not a string; the system trust store is used");
    return engine;
  }

  /** backup_settings → defaults (full rules, schedule time). */
  backupSettings(settings: unknown): { defaults: Record<string, unknown>; time?: string } {
    const defaults: Record<string, unknown> = {};
    if (settings === undefined) return { defaults };
    if (!isRecord(settings)) {
      this.skip("backup_settings", "not an object");
      return { defaults };
    }
    const p = "backup_settings.";
    const full: Record<string, unknown> = {};
    let time: string | undefined;
    const incremental = settings.incremental_enabled;
    if (incremental === false) {
      full.maxChainLength = 1;
      this.notes.push("backup_settings.incremental_enabled is false: defaults.full.maxChainLength = 1 (every backup is full).");
    } else if (incremental !== undefined && incremental !== true) {
      this.skip(`${p}incremental_enabled`, "not true or false");
    }
    if ("max_incremental_chain_length" in settings) {
      const n = positiveInt(settings.max_incremental_chain_length);
      if (n === undefined) this.skip(`${p}max_incremental_chain_length`, "not a positive whole number");
      else if (incremental === false) this.skip(`${p}max_incremental_chain_length`, "ignored: incremental_enabled is false");
      else {
        full.maxChainLength = n + 1;
        this.notes.push(
          `backup_settings.max_incremental_chain_length ${n} → defaults.full.maxChainLength ${n + 1} (Ferry counts the full layer too).`,
        );
      }
    }
    if ("force_full_backup_days" in settings) {
      const n = positiveInt(settings.force_full_backup_days);
      if (n === undefined) this.skip(`${p}force_full_backup_days`, "not a positive whole number");
      else full.everyDays = n;
    }
    if ("default_backup_time" in settings) {
      const t = settings.default_backup_time;
      if (typeof t === "string" && TIME_OF_DAY.test(t)) {
        time = t;
        defaults.schedule = { time: t };
      } else this.skip(`${p}default_backup_time`, 'not a time of day "HH:MM"; the default 02:00 is used');
    }
    this.rest(p, settings, ["incremental_enabled", "max_incremental_chain_length", "force_full_backup_days", "default_backup_time"], "backup_settings");
    if (Object.keys(full).length > 0) defaults.full = full;
    return time === undefined ? { defaults } : { defaults, time };
  }

  restoreSettings(settings: unknown): Record<string, unknown> | undefined {
    if (settings === undefined) return undefined;
    if (!isRecord(settings)) {
      this.skip("restore_settings", "not an object");
      return undefined;
    }
    const p = "restore_settings.";
    const restore: Record<string, unknown> = {};
    const str = (key: string, to: string) => {
      if (!(key in settings)) return;
      if (typeof settings[key] === "string" && settings[key]) restore[to] = settings[key];
      else this.skip(p + key, "empty or not a string");
    };
    const bool = (key: string, to: string) => {
      if (!(key in settings)) return;
      if (typeof settings[key] === "boolean") restore[to] = settings[key];
      else this.skip(p + key, "not true or false");
    };
    str("target_cluster_name", "cluster");
    str("target_storage_domain_name", "storageDomain");
    if ("vm_name_suffix" in settings) {
      const s = settings.vm_name_suffix;
      if (typeof s === "string" && /^[A-Za-z0-9._-]*$/.test(s)) restore.nameSuffix = s;
      else this.skip(`${p}vm_name_suffix`, "only letters, digits, '.', '_' and '-' can be used in VM names");
    }
    bool("auto_start_restored_vm", "start");
    bool("replace_existing_vm", "replaceExisting");
    if ("disk_interface" in settings) {
      const di = diskInterface(settings.disk_interface);
      if (di) restore.diskInterface = di;
      else this.skip(`${p}disk_interface`, `not one of ${DISK_INTERFACES.join(", ")}; disks keep the interface of the backup`);
    }
    if ("timeout_minutes" in settings) {
      const n = positiveInt(settings.timeout_minutes);
      if (n !== undefined && n <= 1440) restore.timeoutMinutes = n;
      else this.skip(`${p}timeout_minutes`, "not a whole number of minutes between 1 and 1440; the default 60 is used");
    }
    if ("backup_old_vm" in settings) {
      this.skip(
        `${p}backup_old_vm`,
        "not supported: Ferry does not export the VM it replaces on the DR engine; back that VM up first if you need it",
      );
    }
    this.rest(
      p,
      settings,
      [
        "target_cluster_name",
        "target_storage_domain_name",
        "vm_name_suffix",
        "auto_start_restored_vm",
        "replace_existing_vm",
        "disk_interface",
        "timeout_minutes",
        "backup_old_vm",
      ],
      "restore_settings",
    );
    if (restore.cluster === undefined || restore.storageDomain === undefined) {
      this.notes.push("restore_settings lacks target_cluster_name or target_storage_domain_name: no restore block written.");
      return undefined;
    }
    return restore;
  }

  scheduleBlock(prefix: string, schedule: unknown, defaultTime: string | undefined): Record<string, unknown> | undefined {
    if (!isRecord(schedule)) {
      this.skip(prefix.slice(0, -1), "not an object");
      return undefined;
    }
    const type = typeof schedule.type === "string" ? schedule.type.toLowerCase() : "custom";
    let days: string | undefined;
    switch (type) {
      case "custom":
        if (typeof schedule.pattern === "string" && DAYS_MASK.test(schedule.pattern)) days = schedule.pattern;
        else this.skip(`${prefix}pattern`, "not 7 characters of 0 and 1 (Monday..Sunday); every day is used");
        break;
      case "daily":
        days = "1111111";
        break;
      case "weekdays":
        days = "1111100";
        break;
      case "weekly": {
        const day = weekday(schedule.day ?? schedule.weekday);
        if (day) days = WEEKDAYS.map((d) => (d === day ? "1" : "0")).join("");
        else this.skip(`${prefix}type`, "weekly without a valid day: set schedule.days by hand");
        break;
      }
      default:
        this.skip(`${prefix}type`, `unknown schedule type "${String(schedule.type)}": set schedule.days by hand`);
    }
    if (type !== "custom" && "pattern" in schedule) this.skip(`${prefix}pattern`, `ignored: schedule type is ${type}`);
    let time = defaultTime;
    if ("time" in schedule) {
      if (typeof schedule.time === "string" && TIME_OF_DAY.test(schedule.time)) time = schedule.time;
      else this.skip(`${prefix}time`, 'not a time of day "HH:MM"');
    }
    this.rest(prefix, schedule, ["type", "pattern", "time", "day", "weekday"], "schedule");
    const out: Record<string, unknown> = {};
    if (days !== undefined) out.days = days;
    if (time !== undefined) out.time = time;
    return out;
  }

  backupType(prefix: string, bt: unknown): Record<string, unknown> | undefined {
    if (!isRecord(bt)) {
      this.skip(prefix.slice(0, -1), "not an object");
      return undefined;
    }
    const full: Record<string, unknown> = {};
    if (bt.incremental_enabled === false) full.maxChainLength = 1;
    else if ("incremental_enabled" in bt && bt.incremental_enabled !== true) this.skip(`${prefix}incremental_enabled`, "not true or false");
    const freq = typeof bt.full_backup_frequency === "string" ? bt.full_backup_frequency.toLowerCase() : undefined;
    const dayGiven = "full_backup_day" in bt;
    switch (freq) {
      case undefined:
        if ("full_backup_frequency" in bt) this.skip(`${prefix}full_backup_frequency`, "not a string");
        break;
      case "weekly": {
        const day = weekday(bt.full_backup_day);
        if (day) full.weeklyDay = day;
        else this.skip(`${prefix}full_backup_day`, "weekly full backups need a weekday name (monday..sunday)");
        break;
      }
      case "daily":
        full.maxChainLength = 1;
        break;
      case "monthly":
        full.everyDays = 30;
        this.notes.push(`${prefix}full_backup_frequency monthly → full.everyDays 30 (Ferry counts days, not calendar months).`);
        break;
      case "never":
      case "none":
        break;
      default:
        this.skip(`${prefix}full_backup_frequency`, `unknown value "${freq}" (known: daily, weekly, monthly, never)`);
    }
    if (dayGiven && freq !== "weekly") this.skip(`${prefix}full_backup_day`, "only used with full_backup_frequency weekly");
    this.rest(prefix, bt, ["incremental_enabled", "full_backup_frequency", "full_backup_day"], "backup_type");
    return Object.keys(full).length > 0 ? full : undefined;
  }

  retentionBlock(prefix: string, r: unknown): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    if (!isRecord(r)) {
      this.skip(prefix.slice(0, -1), "not an object");
      return out;
    }
    const map = {
      keep_daily: "keepDaily",
      keep_weekly: "keepWeekly",
      keep_monthly: "keepMonthly",
      keep_last: "keepLast",
      keep_days: "keepDays",
      retention_days: "keepDays",
      max_backup_age_days: "maxAgeDays",
      max_age_days: "maxAgeDays",
    } as const;
    for (const [from, to] of Object.entries(map)) {
      if (!(from in r)) continue;
      const n = positiveInt(r[from]);
      if (n === undefined) this.skip(prefix + from, "not a positive whole number");
      else out[to] = n;
    }
    this.rest(prefix, r, Object.keys(map), "retention");
    return out;
  }

  vm(name: string, cfg: unknown, defaultTime: string | undefined): Record<string, unknown> | undefined {
    const p = `vms_config.${name}.`;
    if (!isRecord(cfg)) {
      this.skip(`vms_config.${name}`, "not an object: VM left out");
      return undefined;
    }
    const policy: Record<string, unknown> = {};
    if ("enabled" in cfg) {
      if (typeof cfg.enabled === "boolean") policy.enabled = cfg.enabled;
      else this.skip(`${p}enabled`, "not true or false");
    }
    if ("schedule" in cfg) {
      const schedule = this.scheduleBlock(`${p}schedule.`, cfg.schedule, defaultTime);
      if (schedule && Object.keys(schedule).length > 0) policy.schedule = schedule;
      if ("backup_policy" in cfg) this.skip(`${p}backup_policy`, "ignored: the schedule block is used instead");
    } else if ("backup_policy" in cfg) {
      const mask = cfg.backup_policy;
      if (typeof mask === "string" && DAYS_MASK.test(mask)) {
        policy.schedule = defaultTime === undefined ? { days: mask } : { days: mask, time: defaultTime };
      } else this.skip(`${p}backup_policy`, "not 7 characters of 0 and 1 (Monday..Sunday); every day is used");
    }
    if ("backup_type" in cfg) {
      const full = this.backupType(`${p}backup_type.`, cfg.backup_type);
      if (full) policy.full = full;
    }
    const retention: Record<string, unknown> = {};
    if ("retention_days" in cfg) {
      const n = positiveInt(cfg.retention_days);
      if (n === undefined) this.skip(`${p}retention_days`, "not a positive whole number of days");
      else retention.keepDays = n;
    }
    if ("retention" in cfg) Object.assign(retention, this.retentionBlock(`${p}retention.`, cfg.retention));
    const keeps = ["keepDays", "keepLast", "keepDaily", "keepWeekly", "keepMonthly"].some((k) => k in retention);
    if (Object.keys(retention).length > 0 && !keeps) {
      retention.keepLast = 7;
      this.notes.push(`vms.${name}.retention had only a maximum age: keepLast 7 added (Ferry needs a keep rule).`);
    }
    if (Object.keys(retention).length > 0) policy.retention = retention;
    if ("auto_restore" in cfg) {
      if (typeof cfg.auto_restore === "boolean") policy.replicateToDr = cfg.auto_restore;
      else this.skip(`${p}auto_restore`, "not true or false");
    }
    this.rest(p, cfg, ["enabled", "schedule", "backup_policy", "backup_type", "retention_days", "retention", "auto_restore"], "VM");
    return policy;
  }
}

const VM_NAME = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,255}$/;

export function importAirflowVariables(vars: unknown): AirflowImport {
  if (!isRecord(vars)) throw new TypeError("variables.json must hold a JSON object");
  const im = new Importer();
  const config: Record<string, unknown> = {};

  const engines: Record<string, unknown> = {};
  const prd = im.engine(vars, "source", "prd");
  if (prd) engines.prd = prd;
  const dr = im.engine(vars, "target", "dr");
  if (dr) engines.dr = dr;
  config.engines = engines;

  if ("backup_directory" in vars) {
    if (typeof vars.backup_directory === "string" && vars.backup_directory) {
      config.store = { path: vars.backup_directory };
      im.notes.push(
        `store.path is ${vars.backup_directory}: Ferry does not read the Airflow-era files there; the first Ferry backup of each VM is a full one.`,
      );
    } else im.skip("backup_directory", "empty or not a string; the default ./data/backups is used");
  }
  if ("checkpoints_file" in vars) im.skip("checkpoints_file", CHECKPOINTS_REASON);

  const { defaults, time } = im.backupSettings(vars.backup_settings);
  if (Object.keys(defaults).length > 0) config.defaults = defaults;

  const restore = im.restoreSettings(vars.restore_settings);
  if (restore) config.restore = restore;

  const vms: Record<string, unknown> = {};
  if ("vms_config" in vars) {
    if (isRecord(vars.vms_config)) {
      for (const [name, cfg] of Object.entries(vars.vms_config)) {
        if (!VM_NAME.test(name)) {
          im.skip(`vms_config.${name}`, "not a VM name Ferry accepts (letters, digits, '.', '_', '-'): VM left out");
          continue;
        }
        const policy = im.vm(name, cfg, time);
        if (policy) vms[name] = policy;
      }
    } else im.skip("vms_config", "not an object");
  }
  config.vms = vms;

  const known = [
    "source_ovirt_url", "source_ovirt_user", "source_ovirt_password", "source_ovirt_cert_path",
    "target_ovirt_url", "target_ovirt_user", "target_ovirt_password", "target_ovirt_cert_path",
    "backup_directory", "checkpoints_file", "backup_settings", "restore_settings", "vms_config",
  ];
  im.rest("", vars, known, "top-level");

  return { config, secrets: im.secrets, unmapped: im.unmapped, notes: im.notes };
}
