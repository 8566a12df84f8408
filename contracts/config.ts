/**
 * Ferry's configuration file (one JSON document, usually /etc/ferry/ferry.json).
 *
 * This zod schema is the single source of truth: the TypeScript type comes from it (z.infer),
 * contracts/config.schema.json is generated from it (`npx tsx config/write-schema.ts`), and
 * docs/configuration.md documents every key with the defaults written here.
 *
 * What JSON Schema cannot say (an engine needs exactly one password source, a VM's engine must
 * exist, replication needs a `dr` engine and a `restore` block) lives in `configCrossChecks`, so a
 * loader reports both kinds of problem in one pass. Secrets are resolved by config/load.ts, not here.
 *
 * Schedules have one grammar, owned by domain/schedule (the scheduler's own parser): the weekday
 * mask and time patterns are its DAYS_MASK and TIME_OF_DAY, and a cron expression is checked with
 * its cronProblem, so `ferry config validate` accepts exactly what `ferry schedule` runs.
 */
import { z } from "zod";
import { CRON_SHAPE, cronProblem } from "../domain/schedule/cron.ts";
import { DAYS_MASK, TIME_OF_DAY, type Schedule } from "../domain/schedule/slots.ts";
import { localTimeZone, timeZoneProblem } from "../domain/schedule/zoned.ts";

export { cronProblem, type Schedule };

export const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** oVirt disk interfaces a restored disk may be attached with. */
export const DISK_INTERFACES = ["virtio_scsi", "virtio", "sata", "ide", "spapr_vscsi"] as const;

const LOCAL_NATS = "nats://127.0.0.1:4222";

/**
 * Every built-in default, in one place: the schema below, resolvePolicy, docs/configuration.md
 * (checked by test/config-schema.test.ts) and code that needs a default without a parsed config
 * (the backup composition root, the NATS settings, the store locator) all read it from here.
 * Deeply frozen: share it, never change it.
 */
export const CONFIG_DEFAULTS = Object.freeze({
  /** engines.<name>.user */
  user: "admin@internal",
  /** engines.<name>.insecure */
  insecure: false,
  /** store.path (relative to the config file; to the current directory without one) */
  storePath: "./data/backups",
  /** nats.servers */
  natsServers: Object.freeze([LOCAL_NATS] as const),
  /** The server a command uses when neither --nats, NATS_URL nor a config names one. */
  natsUrl: LOCAL_NATS,
  /** nats.replicas */
  natsReplicas: 1,
  /** vms.<vm>.enabled */
  enabled: true,
  /** vms.<vm>.engine, and the engine of a backup.requested that names none */
  engine: "prd",
  /** vms.<vm>.schedule.days */
  days: "1111111",
  /** vms.<vm>.schedule.time */
  time: "02:00",
  /** vms.<vm>.full.maxChainLength: most layers in one chain, the full one included */
  maxChainLength: 14,
  /** vms.<vm>.retention (replaced as a whole when a VM or `defaults` sets one) */
  retention: Object.freeze({ keepLast: 7 } as const),
  /** vms.<vm>.replicateToDr */
  replicateToDr: false,
  /** restore.nameSuffix */
  nameSuffix: "_restored",
  /** restore.replicaSuffix: name suffix of the standing DR copy of a VM that replicates */
  replicaSuffix: "_dr",
  /** restore.start */
  restoreStart: false,
  /** restore.replaceExisting */
  replaceExisting: false,
  /** restore.timeoutMinutes */
  timeoutMinutes: 60,
  /** concurrency.backupsPerEngine */
  backupsPerEngine: 2,
  /** concurrency.connections: parallel HTTP connections per disk transfer */
  connections: 4,
  /** certs.warnDays: a CA or certificate expiring within this many days gets cert.expiring (ferry cert check) */
  certWarnDays: 30,
  /** hooks.listen: where `ferry hooks serve` listens (loopback unless the operator opens it) */
  hooksListen: "127.0.0.1:8441",
  /** hooks.maxBodyBytes: a larger POST body is refused with 413 */
  hooksMaxBodyBytes: 64 * 1024,
  /** summary.enabled: `ferry schedule --daemon` posts the daily summary to each engine's audit log */
  summaryEnabled: true,
  /** summary.time: local time (in timeZone) of the daily summary */
  summaryTime: "07:00",
  /** console.listen: where `ferry console` serves its pages (plain HTTP only on loopback) */
  consoleListen: "127.0.0.1:8440",
  /** console.usersFile: the console's local users (hashed passwords), relative to the config file */
  consoleUsersFile: "./console-users.json",
  /** console.auditFile: one JSON line per console action, relative to the config file */
  consoleAuditFile: "./data/console-audit.jsonl",
  /** console.sessionMinutes: a console session ends after this long without a request */
  consoleSessionMinutes: 480,
  /** events.poll: `ferry run engine-events` follows each engine's audit log (GET /events?from=) */
  eventsPoll: true,
  /** events.pollSeconds: how often each engine's audit log is read (jittered ±20 %) */
  eventsPollSeconds: 30,
  /** store.orphanGraceHours: a store file no restore point or live run references is removed after this long untouched */
  orphanGraceHours: 24,
  /** store.scrubEveryDays: each VM's newest restore point is verified once per this many days (0 = no scheduled scrub) */
  scrubEveryDays: 7,
  /** Not a config key: how long a VM lease (KV ferry-leases) held by a working step lives without renewal, in ms. */
  leaseTtlMs: 60_000,
  /** Not a config key: how long a VM lease handed from one step of a run to the next waits for it, in ms. */
  handOffTtlMs: 15 * 60_000,
  /** Not a config key: how long a backup step waits out an engine outage (unreachable, 502/503/504) before it gives up, in ms. */
  engineOutageBudgetMs: 15 * 60_000,
} as const);

// Engine names end up in subjects and KV keys: no dots, no spaces.
const ENGINE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
// Same rule as backup.requested's `vm`.
const VM_NAME = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,255}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const engineName = z.string().regex(ENGINE_NAME, "not a valid engine name: use letters, digits, '_' and '-' (at most 64)");
const vmName = z
  .string()
  .regex(VM_NAME, "not a valid VM name: use letters, digits, '.', '_' and '-' (at most 255; not '.' or '..')");
const envName = z.string().regex(ENV_NAME, "must be an environment variable name such as FERRY_PRD_PASSWORD");
const filePath = z.string().min(1, "must be a file path");
const positiveInt = (max = 100_000) => z.int().min(1).max(max);

/** Why an engine URL is unusable, or undefined when it is fine. */
export function engineUrlProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "must be an https URL";
  }
  if (url.protocol !== "https:") return "must be an https URL";
  if (url.username || url.password) return "must not contain a user or password (use user and passwordEnv)";
  if (url.search || url.hash) return "must not have a query or fragment";
  const path = url.pathname.replace(/\/+$/, "");
  if (path !== "" && path !== "/ovirt-engine" && path !== "/ovirt-engine/api") {
    return "must be the engine address (https://engine.example.com) or its API URL (https://engine.example.com/ovirt-engine/api)";
  }
  return undefined;
}

/** `https://host[:port]`, whichever of the accepted forms was written. */
export function normaliseEngineUrl(value: string): string {
  const url = new URL(value);
  return `${url.protocol}//${url.host}`;
}

/** `AB:CD:...` (32 pairs; case and an optional `sha256:` prefix do not matter). */
export const CA_FINGERPRINT = /^(?:sha256:)?[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}$/;

const engineUrl = z
  .string()
  .regex(/^https:\/\//, "must be an https URL")
  .superRefine((value, ctx) => {
    const problem = value.startsWith("https://") ? engineUrlProblem(value) : undefined;
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .transform(normaliseEngineUrl);

export const EngineSchema = z
  .strictObject({
    url: engineUrl.describe("Engine address, https://engine.example.com or .../ovirt-engine/api (normalised to the first)."),
    user: z.string().min(1).default(CONFIG_DEFAULTS.user).describe("Engine user, e.g. admin@internal."),
    passwordEnv: envName.optional().describe("Name of the environment variable holding the password."),
    passwordFile: filePath.optional().describe("File whose content (trimmed) is the password."),
    password: z.string().min(1).optional().describe("Literal password: allowed, but warned about. Prefer passwordEnv."),
    caFile: filePath.optional().describe("PEM file with the engine CA. Without it the system trust store is used."),
    caFingerprint: z
      .string()
      .regex(CA_FINGERPRINT, "must be a SHA-256 fingerprint as ferry cert fetch prints it (32 hex pairs separated by ':')")
      .optional()
      .describe("SHA-256 fingerprint of the engine CA to trust without asking: a CA the engine serves with it is stored on first contact, or when it replaces the trusted one."),
    insecure: z.boolean().default(CONFIG_DEFAULTS.insecure).describe("Skip TLS verification. Only for labs; logged at every start."),
  })
  .describe("One oVirt / OLVM engine.");

const natsServer = z
  .string()
  .regex(/^(nats|tls|ws|wss):\/\/[^\s/]+$/, "must be a NATS URL such as nats://127.0.0.1:4222");

export const NatsSchema = z
  .strictObject({
    servers: z
      .array(natsServer)
      .min(1)
      .default([...CONFIG_DEFAULTS.natsServers])
      .describe("NATS servers to connect to (any one of a cluster is enough)."),
    credsFile: filePath.optional().describe("NATS credentials file (JWT + nkey)."),
    user: z.string().min(1).optional().describe("NATS user name (with passwordEnv)."),
    passwordEnv: envName.optional().describe("Environment variable holding the NATS password."),
    replicas: z
      .int()
      .min(1)
      .max(5)
      .default(CONFIG_DEFAULTS.natsReplicas)
      .describe("Replicas of Ferry's streams and KV buckets: 1 for one server, 3 for a 3-node cluster."),
  })
  .describe("How Ferry reaches NATS JetStream.");

export const StoreSchema = z
  .strictObject({
    path: filePath
      .default(CONFIG_DEFAULTS.storePath)
      .describe("Directory of the backup store. Relative paths are relative to the config file."),
    orphanGraceHours: z
      .number()
      .min(0)
      .max(8760)
      .default(CONFIG_DEFAULTS.orphanGraceHours)
      .describe("The reconciler removes store files no restore point and no live run references (layers, block digests, OVFs and temp files of runs that failed for good) once untouched for this many hours."),
    scrubEveryDays: z
      .int()
      .min(0)
      .max(365)
      .default(CONFIG_DEFAULTS.scrubEveryDays)
      .describe("Scheduled scrub: each VM's newest restore point is verified (as `ferry verify`) once per this many days, VMs spread over the period; a failure makes the next backup full and posts an alert. 0 turns it off."),
  })
  .describe("The backup volume.");

/** Schedule as written: either days + time, or cron. */
const ScheduleInput = z
  .strictObject({
    days: z
      .string()
      .regex(DAYS_MASK, 'must be 7 characters of 0 and 1, Monday first (e.g. "1111100" for Monday to Friday)')
      .optional()
      .meta({ default: CONFIG_DEFAULTS.days })
      .describe('Weekday mask, Monday..Sunday, "1" = back up that day. Default "1111111".'),
    time: z
      .string()
      .regex(TIME_OF_DAY, 'must be a time of day "HH:MM" (24 hours, e.g. "02:00")')
      .optional()
      .meta({ default: CONFIG_DEFAULTS.time })
      .describe('Time of day "HH:MM" (local time of the scheduler). Default "02:00".'),
    cron: z
      .string()
      .superRefine((value, ctx) => {
        const problem = cronProblem(value);
        if (problem) ctx.addIssue({ code: "custom", message: problem });
      })
      // JSON Schema cannot call the parser: it gets the shape (a macro, or five fields of the
      // allowed characters), a superset of what the parser accepts; Ferry checks the rest.
      .meta({ pattern: CRON_SHAPE })
      .optional()
      .describe(
        'Instead of days/time: a cron expression "minute hour day-of-month month day-of-week" (numbers, *, ranges 1-5, lists 1,3, steps */15, names jan..dec and sun..sat) or a macro (@hourly, @daily, @weekly, @monthly, @yearly). Value ranges and names are checked by Ferry (ferry config validate), not by this schema.',
      ),
  })
  .describe("When the VM is backed up: days + time, or cron.");

const FullInput = z
  .strictObject({
    weeklyDay: z.enum(WEEKDAYS).optional().describe("Make the first backup on this weekday a full one."),
    maxChainLength: positiveInt(1000)
      .optional()
      .meta({ default: CONFIG_DEFAULTS.maxChainLength })
      .describe("Most layers in a chain, the full one included; the next backup is full. Default 14. 1 = always full."),
    everyDays: positiveInt(3650).optional().describe("A full backup at least every N days."),
  })
  .describe("When a backup is full instead of incremental (any rule that applies makes it full).");

const RetentionInput = z
  .strictObject({
    keepDays: positiveInt().optional().describe("Keep every restore point younger than N days."),
    keepLast: positiveInt().optional().describe("Keep the newest N restore points."),
    keepDaily: positiveInt().optional().describe("Keep the newest restore point of each of the last N days."),
    keepWeekly: positiveInt().optional().describe("Keep the newest restore point of each of the last N weeks."),
    keepMonthly: positiveInt().optional().describe("Keep the newest restore point of each of the last N months."),
    maxAgeDays: positiveInt().optional().describe("Remove restore points older than N days, whatever else says keep."),
  })
  .describe("Which restore points to keep. A point is kept if any keep rule keeps it. Default { keepLast: 7 }.");

export type Retention = z.infer<typeof RetentionInput>;

export const PolicyInputSchema = z
  .strictObject({
    enabled: z.boolean().optional().meta({ default: CONFIG_DEFAULTS.enabled }).describe("Back this VM up on schedule. Default true."),
    engine: engineName.optional().meta({ default: CONFIG_DEFAULTS.engine }).describe('Engine the VM lives on. Default "prd".'),
    schedule: ScheduleInput.optional(),
    full: FullInput.optional(),
    retention: RetentionInput.optional().meta({ default: CONFIG_DEFAULTS.retention }),
    replicateToDr: z
      .boolean()
      .optional()
      .meta({ default: CONFIG_DEFAULTS.replicateToDr })
      .describe("After each backup, restore it onto the dr engine. Default false."),
  })
  .describe("Backup policy of a VM; missing keys come from `defaults`, then from the built-in defaults.");
export type PolicyInput = z.infer<typeof PolicyInputSchema>;

export const RestoreSchema = z
  .strictObject({
    cluster: z.string().min(1).describe("Target cluster on the DR engine."),
    storageDomain: z.string().min(1).describe("Target storage domain for the restored disks."),
    nameSuffix: z
      .string()
      .regex(/^[A-Za-z0-9._-]*$/, "may contain only letters, digits, '.', '_' and '-'")
      .default(CONFIG_DEFAULTS.nameSuffix)
      .describe('Appended to the VM name of a restored VM. Default "_restored".'),
    replicaSuffix: z
      .string()
      .regex(/^[A-Za-z0-9._-]*$/, "may contain only letters, digits, '.', '_' and '-'")
      .default(CONFIG_DEFAULTS.replicaSuffix)
      .describe('Appended to the VM name of its standing DR copy (replicateToDr). Default "_dr".'),
    start: z.boolean().default(CONFIG_DEFAULTS.restoreStart).describe("Start the VM after restoring it."),
    diskInterface: z.enum(DISK_INTERFACES).optional().describe("Attach restored disks with this interface (else as in the backup)."),
    replaceExisting: z.boolean().default(CONFIG_DEFAULTS.replaceExisting).describe("Remove a VM of the same name on the target first."),
    timeoutMinutes: positiveInt(1440).default(CONFIG_DEFAULTS.timeoutMinutes).describe("Give up a restore after N minutes."),
  })
  .describe("Restore and DR replication settings.");

export const ConcurrencySchema = z
  .strictObject({
    backupsPerEngine: positiveInt(64)
      .default(CONFIG_DEFAULTS.backupsPerEngine)
      .describe("Backups running at once against one engine, across every process (KV ferry-slots); more wait for a free slot."),
    backupsPerHost: positiveInt(64)
      .optional()
      .describe("Backups running at once of VMs on one host (off when unset)."),
    backupsPerStorageDomain: positiveInt(64)
      .optional()
      .describe("Backups running at once with a disk on one storage domain (off when unset)."),
    connections: z
      .int()
      .min(1)
      .max(8)
      .default(CONFIG_DEFAULTS.connections)
      .describe("Parallel HTTP connections per disk transfer (imageio allows 8 per ticket)."),
  })
  .describe("Limits.");

export const CertsSchema = z
  .strictObject({
    warnDays: positiveInt(3650)
      .default(CONFIG_DEFAULTS.certWarnDays)
      .describe("ferry cert check asks for a renewal (cert.expiring) when an engine's CA, its certificate or an imageio host certificate expires within this many days."),
  })
  .describe("Engine certificates.");

export const SummarySchema = z
  .strictObject({
    enabled: z.boolean().default(CONFIG_DEFAULTS.summaryEnabled).describe("Post the daily summary (VMs protected, failed, overdue, bytes stored) to each engine's audit log from `ferry schedule --daemon`."),
    time: z
      .string()
      .regex(TIME_OF_DAY, 'must be a time of day "HH:MM" (24 hours, e.g. "07:00")')
      .default(CONFIG_DEFAULTS.summaryTime)
      .describe('When the daily summary is posted, "HH:MM" in timeZone. Default "07:00".'),
  })
  .describe("The daily summary in the engines' audit logs (ferry summary).");

/**
 * An IANA zone Intl knows, written back in its canonical spelling ("europe/berlin" →
 * "Europe/Berlin") so every reader of the parsed config compares the same name.
 */
const timeZoneName = z
  .string()
  .superRefine((value, ctx) => {
    const problem = timeZoneProblem(value);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .transform((value) => new Intl.DateTimeFormat("en-US", { timeZone: value }).resolvedOptions().timeZone);

export const EventsSchema = z
  .strictObject({
    poll: z
      .boolean()
      .default(CONFIG_DEFAULTS.eventsPoll)
      .describe("Follow every engine's audit log (GET /events?from=<last index>) in `ferry run engine-events`, so a snapshot restored, a disk changed or a VM removed on the engine makes the next backup a full (or stops scheduling the VM). false: only the hook endpoint reports such events."),
    pollSeconds: z
      .int()
      .min(5)
      .max(3600)
      .default(CONFIG_DEFAULTS.eventsPollSeconds)
      .describe("How often each engine's audit log is read, in seconds (jittered by ±20 %)."),
  })
  .describe("The chain guard's engine-event poller (functions/engine-events).");

/** `host:port` (an IPv6 host in brackets); port 0 = any free port (the URL is logged). */
export const LISTEN_ADDRESS = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

export const MetricsSchema = z
  .strictObject({
    listen: z
      .string()
      .regex(LISTEN_ADDRESS, 'must be host:port, e.g. "127.0.0.1:9464" or "[::1]:9464"')
      .refine((v) => Number(LISTEN_ADDRESS.exec(v)?.[2]) <= 65535, "the port must be 0..65535")
      .describe('Where `ferry run` serves GET /metrics (Prometheus text format): host:port, e.g. "127.0.0.1:9464" (port 0 = any free port).'),
  })
  .describe("Prometheus metrics of `ferry run`. Without this section no metrics are served.");

export const HooksSchema = z
  .strictObject({
    listen: z
      .string()
      .regex(LISTEN_ADDRESS, 'must be host:port, e.g. "127.0.0.1:8441" or "[::1]:8441"')
      .refine((v) => Number(LISTEN_ADDRESS.exec(v)?.[2]) <= 65535, "the port must be 0..65535")
      .default(CONFIG_DEFAULTS.hooksListen)
      .describe("Where `ferry hooks serve` listens: host:port (port 0 = any free port). --listen wins."),
    tokenFile: filePath
      .optional()
      .describe("File whose content (trimmed) is the bearer token posts must carry. $FERRY_HOOKS_TOKEN wins over it. One of the two is required."),
    tlsCertFile: filePath.optional().describe("PEM certificate (chain) to serve HTTPS with; needs tlsKeyFile. Without both: plain HTTP."),
    tlsKeyFile: filePath.optional().describe("PEM private key of tlsCertFile."),
    maxBodyBytes: z
      .int()
      .min(256)
      .max(1024 * 1024)
      .default(CONFIG_DEFAULTS.hooksMaxBodyBytes)
      .describe("Largest POST body accepted; a larger one is answered 413."),
  })
  .describe("The hook endpoint `ferry hooks serve` (oVirt/VDSM hook scripts post backup, restore and engine events to it).");

export const ConsoleSchema = z
  .strictObject({
    listen: z
      .string()
      .regex(LISTEN_ADDRESS, 'must be host:port, e.g. "127.0.0.1:8440" or "[::1]:8440"')
      .refine((v) => Number(LISTEN_ADDRESS.exec(v)?.[2]) <= 65535, "the port must be 0..65535")
      .default(CONFIG_DEFAULTS.consoleListen)
      .describe("Where `ferry console` listens: host:port (port 0 = any free port). Plain HTTP only on a loopback address; anything else needs tlsCertFile and tlsKeyFile. --listen wins."),
    tlsCertFile: filePath.optional().describe("PEM certificate (chain) to serve HTTPS with; needs tlsKeyFile."),
    tlsKeyFile: filePath.optional().describe("PEM private key of tlsCertFile."),
    usersFile: filePath
      .default(CONFIG_DEFAULTS.consoleUsersFile)
      .describe("The console's local users with scrypt-hashed passwords and roles (written by `ferry console adduser`)."),
    auditFile: filePath.default(CONFIG_DEFAULTS.consoleAuditFile).describe("Every console action, one JSON line with the user."),
    ssoEngine: engineName
      .optional()
      .describe("Engine whose SSO checks the passwords of users named like admin@internal (listed in usersFile with a role, without a password)."),
    sessionMinutes: positiveInt(10_080)
      .default(CONFIG_DEFAULTS.consoleSessionMinutes)
      .describe("A session ends after this many minutes without a request."),
  })
  .describe("The web console `ferry console`.");

export interface Policy {
  enabled: boolean;
  engine: string;
  schedule: Schedule;
  full: { weeklyDay?: Weekday; maxChainLength: number; everyDays?: number };
  retention: Retention;
  replicateToDr: boolean;
}

function resolveSchedule(input: z.infer<typeof ScheduleInput> | undefined): Schedule {
  if (input?.cron !== undefined) return { cron: input.cron };
  return { days: input?.days ?? CONFIG_DEFAULTS.days, time: input?.time ?? CONFIG_DEFAULTS.time };
}

function definedOnly<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * A VM's effective policy. `schedule` and `retention` are replaced as a whole (a VM that says
 * `retention: {keepDays: 30}` does not also inherit `keepLast` from the defaults); `full` and the
 * scalar keys are merged key by key.
 */
export function resolvePolicy(vm: PolicyInput, defaults: PolicyInput = {}): Policy {
  return {
    enabled: vm.enabled ?? defaults.enabled ?? CONFIG_DEFAULTS.enabled,
    engine: vm.engine ?? defaults.engine ?? CONFIG_DEFAULTS.engine,
    schedule: resolveSchedule(vm.schedule ?? defaults.schedule),
    full: { maxChainLength: CONFIG_DEFAULTS.maxChainLength, ...definedOnly(defaults.full), ...definedOnly(vm.full) },
    retention: { ...(vm.retention ?? defaults.retention ?? CONFIG_DEFAULTS.retention) },
    replicateToDr: vm.replicateToDr ?? defaults.replicateToDr ?? CONFIG_DEFAULTS.replicateToDr,
  };
}

const ConfigObject = z.strictObject({
  $schema: z.string().optional().describe("Path or URL of contracts/config.schema.json, for editors."),
  timeZone: timeZoneName
    .optional()
    .describe(
      'IANA time zone (e.g. "Europe/Berlin", "UTC") of everything calendar-based: schedules, the weekly full day, retention\'s days/weeks/months and the daily summary. Default: the machine\'s zone ($TZ, else /etc/localtime).',
    ),
  engines: z
    .record(engineName, EngineSchema)
    .default({})
    .describe('Engines by name. Conventional names: "prd" (backed up) and "dr" (restored to).'),
  store: StoreSchema.prefault({}),
  nats: NatsSchema.prefault({}),
  defaults: PolicyInputSchema.optional().describe("Policy keys every VM gets unless it sets them itself."),
  vms: z.record(vmName, PolicyInputSchema).default({}).describe("VMs to back up, by VM name, each with its policy."),
  restore: RestoreSchema.optional(),
  concurrency: ConcurrencySchema.prefault({}),
  certs: CertsSchema.prefault({}),
  metrics: MetricsSchema.optional(),
  events: EventsSchema.prefault({}),
  hooks: HooksSchema.optional(),
  console: ConsoleSchema.optional(),
  summary: SummarySchema.prefault({}),
});

/** The config file schema: parses the JSON, fills defaults, resolves each VM's policy. */
export const FerryConfigSchema = ConfigObject.transform(({ defaults, vms, $schema: _schema, timeZone, ...rest }) => ({
  ...rest,
  // Resolved here, once: every reader of the parsed config uses the same zone.
  timeZone: timeZone ?? localTimeZone(),
  vms: Object.fromEntries(Object.entries(vms).map(([name, p]) => [name, resolvePolicy(p, defaults)])) as Record<
    string,
    Policy
  >,
})).describe("Ferry configuration file");

/** The config file as written (what contracts/config.schema.json describes). */
export type FerryConfigInput = z.input<typeof FerryConfigSchema>;
/** The parsed config: defaults filled, URLs normalised, policies resolved. Secrets not yet resolved. */
export type FerryConfig = z.infer<typeof FerryConfigSchema>;
export type EngineConfig = FerryConfig["engines"][string];
export type NatsConfig = FerryConfig["nats"];
export type RestoreConfig = NonNullable<FerryConfig["restore"]>;
export type MetricsConfig = NonNullable<FerryConfig["metrics"]>;
export type ConsoleConfig = NonNullable<FerryConfig["console"]>;
export type HooksConfig = NonNullable<FerryConfig["hooks"]>;

export interface ConfigIssue {
  /** Path in the JSON document, e.g. ["engines", "prd", "url"]. */
  path: (string | number)[];
  message: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Rules across keys, checked on the raw document so they are reported together with the
 * schema's own problems (each check skips values the schema already rejects).
 */
export function configCrossChecks(raw: unknown): ConfigIssue[] {
  if (!isRecord(raw)) return [];
  const issues: ConfigIssue[] = [];
  const engines = isRecord(raw.engines) ? raw.engines : {};
  for (const [name, engine] of Object.entries(engines)) {
    if (!isRecord(engine) || !ENGINE_NAME.test(name)) continue;
    const sources = (["passwordEnv", "passwordFile", "password"] as const).filter((k) => engine[k] !== undefined);
    if (sources.length === 0) {
      issues.push({ path: ["engines", name], message: "needs a password source: set passwordEnv (or passwordFile)" });
    } else if (sources.length > 1) {
      issues.push({ path: ["engines", name], message: `set only one of ${sources.join(", ")}` });
    }
  }
  const nats = isRecord(raw.nats) ? raw.nats : {};
  if (nats.user !== undefined && nats.passwordEnv === undefined) {
    issues.push({ path: ["nats", "passwordEnv"], message: "required when nats.user is set" });
  }
  if (nats.passwordEnv !== undefined && nats.user === undefined) {
    issues.push({ path: ["nats", "user"], message: "required when nats.passwordEnv is set" });
  }
  if (nats.credsFile !== undefined && nats.user !== undefined) {
    issues.push({ path: ["nats"], message: "use either credsFile or user/passwordEnv, not both" });
  }

  const hooks = isRecord(raw.hooks) ? raw.hooks : {};
  if ((hooks.tlsCertFile === undefined) !== (hooks.tlsKeyFile === undefined)) {
    issues.push({ path: ["hooks", hooks.tlsCertFile === undefined ? "tlsCertFile" : "tlsKeyFile"], message: "set both tlsCertFile and tlsKeyFile, or neither" });
  }

  const defaults = isRecord(raw.defaults) ? raw.defaults : {};
  const vms = isRecord(raw.vms) ? raw.vms : {};
  const scopes: [(string | number)[], Record<string, unknown>][] = [[["defaults"], defaults]];
  for (const [name, vm] of Object.entries(vms)) if (isRecord(vm)) scopes.push([["vms", name], vm]);
  for (const [path, policy] of scopes) {
    const schedule = policy.schedule;
    if (isRecord(schedule) && schedule.cron !== undefined && (schedule.days !== undefined || schedule.time !== undefined)) {
      issues.push({ path: [...path, "schedule"], message: "use either cron or days/time, not both" });
    }
    const retention = policy.retention;
    if (isRecord(retention)) {
      const keeps = ["keepDays", "keepLast", "keepDaily", "keepWeekly", "keepMonthly"].filter((k) => retention[k] !== undefined);
      if (keeps.length === 0) {
        issues.push({
          path: [...path, "retention"],
          message: "needs at least one of keepDays, keepLast, keepDaily, keepWeekly, keepMonthly",
        });
      }
      if (typeof retention.maxAgeDays === "number" && typeof retention.keepDays === "number" && retention.maxAgeDays < retention.keepDays) {
        issues.push({ path: [...path, "retention", "maxAgeDays"], message: "is smaller than keepDays: the two contradict" });
      }
    }
  }

  const engineNames = new Set(Object.keys(engines));
  let replicates = false;
  for (const [name, vm] of Object.entries(vms)) {
    if (!isRecord(vm)) continue;
    const engine = vm.engine ?? defaults.engine ?? CONFIG_DEFAULTS.engine;
    if (typeof engine === "string" && ENGINE_NAME.test(engine) && !engineNames.has(engine)) {
      const where = vm.engine !== undefined ? ["vms", name, "engine"] : ["vms", name];
      issues.push({ path: where, message: `engine "${engine}" is not defined under engines` });
    }
    const replicate = vm.replicateToDr ?? defaults.replicateToDr;
    if (replicate === true) {
      replicates = true;
      if (!engineNames.has("dr")) {
        issues.push({ path: ["vms", name, "replicateToDr"], message: 'needs an engine named "dr" under engines' });
      }
    }
  }
  if (replicates && raw.restore === undefined) {
    issues.push({ path: ["restore"], message: "required when a VM has replicateToDr: set cluster and storageDomain" });
  }
  return issues;
}

/** The language-neutral JSON Schema of the config file, as checked in at contracts/config.schema.json. */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(FerryConfigSchema, { io: "input", target: "draft-2020-12" }) as Record<string, unknown>;
  const { $schema, ...rest } = schema;
  return {
    $schema,
    title: "Ferry configuration file",
    ...rest,
  };
}
