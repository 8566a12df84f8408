/**
 * The README's exit-code table, walked command by command with the real CLI (`node
 * cli/ferry.mjs ...` as a child process): 2 the command line is wrong, 3 something needed is
 * missing or unreachable, 4 input understood but rejected, 1 attempted and failed. One table;
 * every command in cli/commands/ has at least its usage row (found from the folder, so a new
 * command is walked without editing this file).
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";

const repo = fileURLToPath(new URL("../", import.meta.url));
const ferryBin = path.join(repo, "cli/ferry.mjs");

type Class = "failed" | "usage" | "unavailable" | "invalid";
const CODE: Record<Class, number> = { failed: 1, usage: 2, unavailable: 3, invalid: 4 };

interface Row {
  readonly command: string;
  readonly class: Class;
  /** What makes it fail, for the test name. */
  readonly why: string;
  /** Arguments after the command name; `$NATS_DOWN`, `$NATS` are replaced. */
  readonly args: readonly string[];
  /** A piece of stderr (or stdout) that says what is wrong. */
  readonly says: string;
}

const ROWS: readonly Row[] = [
  // usage (2) beyond an unknown option: missing or malformed arguments
  { command: "publish", class: "usage", why: "the event is not JSON", args: ["backup.requested", "{bad", "--nats", "$NATS_DOWN"], says: "not valid JSON" },
  { command: "publish", class: "usage", why: "an unknown subject", args: ["backup.nothing", "{}"], says: "unknown subject 'backup.nothing'" },
  { command: "backup", class: "usage", why: "no VM", args: [], says: "name exactly one VM" },
  { command: "backup", class: "usage", why: "--timeout not a number", args: ["web01", "--timeout", "soon"], says: "--timeout" },
  { command: "restore", class: "usage", why: "no VM", args: [], says: "ferry restore" },
  { command: "verify", class: "usage", why: "no VM", args: [], says: "expected one VM name" },
  { command: "events", class: "usage", why: "--since not a duration", args: ["--since", "soon"], says: "--since wants a duration" },
  { command: "events", class: "usage", why: "two subjects", args: ["a", "b"], says: "at most one subject" },
  { command: "status", class: "usage", why: "an unknown time zone", args: ["--tz", "Mars/Olympus"], says: "unknown time zone" },
  { command: "doctor", class: "usage", why: "an unknown check", args: ["--check", "coffee"], says: "unknown check coffee" },
  { command: "cert", class: "usage", why: "no subcommand", args: [], says: "a subcommand is required" },
  { command: "config", class: "usage", why: "an unknown subcommand", args: ["frob"], says: "unknown subcommand" },
  { command: "transfer", class: "usage", why: "no URL", args: ["download"], says: "expected <transfer-url> <out.qcow2>" },
  { command: "lab", class: "usage", why: "an option where the subcommand belongs", args: ["--frob"], says: "expected a subcommand" },

  // unavailable (3): NATS down, config file or store missing, an engine unreachable
  { command: "publish", class: "unavailable", why: "NATS down", args: ["backup.requested", '{"vm":"web01"}', "--nats", "$NATS_DOWN"], says: "cannot connect to NATS" },
  { command: "publish", class: "unavailable", why: "the config file is missing", args: ["backup.requested", '{"vm":"web01"}', "--config", "missing.json"], says: "no such file" },
  { command: "backup", class: "unavailable", why: "NATS down", args: ["web01", "--nats", "$NATS_DOWN"], says: "cannot connect to NATS" },
  { command: "backup", class: "unavailable", why: "the config file is missing", args: ["web01", "--config", "missing.json"], says: "no such file" },
  { command: "backup", class: "unavailable", why: "--wait and no backup-requested worker", args: ["web01", "--wait", "--nats", "$NATS"], says: "no backup-requested worker is running: start `ferry run backup-requested`" },
  { command: "restore", class: "unavailable", why: "NATS down", args: ["web01", "--nats", "$NATS_DOWN"], says: "cannot connect to NATS" },
  { command: "restore", class: "unavailable", why: "--wait and no restore-requested worker", args: ["web01", "--wait", "--nats", "$NATS"], says: "no restore-requested worker is running: start `ferry run restore-requested`" },
  { command: "restore", class: "unavailable", why: "--to-dir and no store", args: ["web01", "--to-dir", "out", "--store", "no-store"], says: "is not a directory" },
  { command: "events", class: "unavailable", why: "NATS down", args: ["--nats", "$NATS_DOWN"], says: "cannot connect to NATS" },
  { command: "events", class: "unavailable", why: "the config file is missing", args: ["--config", "missing.json"], says: "no such file" },
  { command: "status", class: "unavailable", why: "NATS down", args: ["--nats", "$NATS_DOWN"], says: "cannot connect to NATS" },
  { command: "status", class: "unavailable", why: "the config file is missing", args: ["--config", "missing.json"], says: "no such file" },
  { command: "verify", class: "unavailable", why: "the store is not there", args: ["web01", "--store", "no-store"], says: "is not a directory" },
  { command: "checkpoints", class: "unavailable", why: "the store is not there", args: ["web01", "--store", "no-store"], says: "is not a directory" },
  { command: "checkpoints", class: "unavailable", why: "--kv and NATS down", args: ["web01", "--kv", "--nats", "$NATS_DOWN"], says: "cannot connect to NATS" },
  { command: "run", class: "unavailable", why: "NATS down", args: ["all", "--nats", "$NATS_DOWN"], says: "cannot connect to NATS" },
  { command: "run", class: "unavailable", why: "the config file is missing", args: ["all", "--config", "missing.json"], says: "no such file" },
  { command: "schedule", class: "unavailable", why: "the config file is missing", args: ["--config", "missing.json"], says: "cannot read" },
  { command: "schedule", class: "unavailable", why: "no config file at all", args: [], says: "no config file found" },
  { command: "state", class: "unavailable", why: "NATS down", args: ["export", "--nats", "$NATS_DOWN"], says: "cannot connect to NATS" },
  { command: "state", class: "unavailable", why: "the config file is missing", args: ["export", "--config", "missing.json"], says: "no such file" },
  { command: "state", class: "unavailable", why: "the input file is missing", args: ["import", "missing.jsonl", "--nats", "$NATS_DOWN"], says: "cannot read missing.jsonl" },
  { command: "state", class: "invalid", why: "an input line that is not a chain record", args: ["import", "bad-state.jsonl", "--nats", "$NATS"], says: "line 1 is not a valid chain record" },
  { command: "state", class: "unavailable", why: "rebuild and no store", args: ["rebuild", "--store", "no-store", "--nats", "$NATS"], says: "is not a directory" },
  { command: "summary", class: "unavailable", why: "NATS down", args: ["--nats", "$NATS_DOWN"], says: "cannot connect to NATS" },
  { command: "summary", class: "unavailable", why: "the config file is missing", args: ["--config", "missing.json"], says: "cannot read" },
  { command: "console", class: "unavailable", why: "the config file is missing", args: ["--config", "missing.json"], says: "no such file" },
  { command: "config", class: "unavailable", why: "the config file is missing", args: ["validate", "--config", "missing.json"], says: "no such file" },
  { command: "config", class: "unavailable", why: "the Airflow file is missing", args: ["import", "missing-vars.json", "--out", "x.json"], says: "no such file" },
  { command: "cert", class: "unavailable", why: "the config file is missing", args: ["list", "--config", "missing.json"], says: "cannot read" },
  { command: "cert", class: "unavailable", why: "the engine is unreachable", args: ["fetch", "https://127.0.0.1:$PORT_DOWN"], says: "unreachable" },
  { command: "doctor", class: "unavailable", why: "the config file is missing", args: ["--config", "missing.json", "--check", "config"], says: "does not exist" },
  { command: "hooks", class: "unavailable", why: "no token", args: ["serve", "--config", "exists.json", "--nats", "$NATS_DOWN"], says: "no token: set $FERRY_HOOKS_TOKEN or hooks.tokenFile in the config" },
  { command: "hooks", class: "unavailable", why: "the config file is missing", args: ["serve", "--config", "missing.json"], says: "no such file" },
  { command: "transfer", class: "unavailable", why: "the image is missing", args: ["checksum", "missing.qcow2"], says: "image missing.qcow2 does not exist" },
  { command: "transfer", class: "unavailable", why: "the image to upload is missing", args: ["upload", "missing.qcow2", "https://127.0.0.1:$PORT_DOWN/images/t"], says: "image missing.qcow2 does not exist" },
  { command: "transfer", class: "unavailable", why: "the --ca file is missing", args: ["download", "https://127.0.0.1:$PORT_DOWN/images/t", "out.qcow2", "--ca", "missing.pem"], says: "--ca missing.pem does not exist" },

  // invalid (4): the input is understood and refused; nothing changes
  { command: "publish", class: "invalid", why: "the event fails its schema", args: ["backup.requested", "{}", "--nats", "$NATS_DOWN"], says: "vm: required" },
  { command: "publish", class: "invalid", why: "the config is invalid", args: ["backup.requested", '{"vm":"web01"}', "--config", "bad.json"], says: "is not a valid Ferry config" },
  { command: "backup", class: "invalid", why: "a VM name with a slash", args: ["../x", "--nats", "$NATS_DOWN"], says: "invalid request" },
  { command: "backup", class: "invalid", why: "the config is invalid", args: ["web01", "--config", "bad.json"], says: "is not a valid Ferry config" },
  { command: "restore", class: "invalid", why: "a VM name with a slash", args: ["../x", "--nats", "$NATS_DOWN"], says: "is not a valid VM name" },
  { command: "events", class: "invalid", why: "the config is invalid", args: ["--config", "bad.json"], says: "is not a valid Ferry config" },
  { command: "status", class: "invalid", why: "an unknown VM", args: ["nosuchvm", "--nats", "$NATS"], says: "unknown VM 'nosuchvm'" },
  { command: "status", class: "invalid", why: "the config is invalid", args: ["--config", "bad.json"], says: "is not a valid Ferry config" },
  { command: "verify", class: "invalid", why: "a VM name with a slash", args: ["../x", "--store", "empty-store"], says: "is not a valid VM name" },
  { command: "checkpoints", class: "invalid", why: "a VM name with a slash", args: ["../x", "--store", "empty-store"], says: "is not a valid VM name" },
  { command: "run", class: "invalid", why: "the config is invalid", args: ["all", "--config", "bad.json"], says: "is not a valid Ferry config" },
  { command: "schedule", class: "invalid", why: "the config is invalid", args: ["--config", "bad.json"], says: "bad.json" },
  { command: "config", class: "invalid", why: "the config is invalid", args: ["validate", "--config", "bad.json"], says: "is not a valid Ferry config" },
  { command: "cert", class: "invalid", why: "the config is invalid", args: ["list", "--config", "bad.json"], says: "store.path" },
  { command: "state", class: "invalid", why: "the config is invalid", args: ["export", "--config", "bad.json"], says: "is not a valid Ferry config" },
  { command: "summary", class: "invalid", why: "the config is invalid", args: ["--config", "bad.json"], says: "is not a valid Ferry config" },
  { command: "hooks", class: "invalid", why: "the config is invalid (checked before connecting)", args: ["serve", "--config", "hooks-bad.json", "--nats", "$NATS_DOWN"], says: "is not a valid Ferry config" },
  { command: "console", class: "invalid", why: "the config is invalid", args: ["--config", "bad.json"], says: "is not a valid Ferry config" },

  // failed (1): attempted and failed
  { command: "verify", class: "failed", why: "no restore points for the VM", args: ["web01", "--store", "empty-store"], says: "no restore points for VM web01" },
  { command: "checkpoints", class: "failed", why: "no restore points for the VM", args: ["web01", "--store", "empty-store"], says: "no restore points for VM web01" },
  { command: "config", class: "failed", why: "the output exists (no --force)", args: ["import", "vars.json", "--out", "exists.json"], says: "already exists" },
];

let dir: string;
let nats: NatsServer;
let downPort: number;

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function ferry(args: readonly string[]): Promise<{ code: number; out: string }> {
  const expand = (a: string) =>
    a.replace("$NATS_DOWN", `nats://127.0.0.1:${downPort}`).replace("$NATS", nats.url).replace("$PORT_DOWN", String(downPort));
  // A clean environment: no NATS_URL / FERRY_CONFIG / BACKUP_DIR from the shell running the tests.
  const env = { PATH: process.env.PATH ?? "", HOME: dir, TZ: "UTC" };
  return new Promise((resolve) => {
    execFile(process.execPath, [ferryBin, ...args.map(expand)], { cwd: dir, env, timeout: 200_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "ferry-exit-codes-"));
  mkdirSync(path.join(dir, "empty-store"));
  writeFileSync(path.join(dir, "bad.json"), JSON.stringify({ vms: { a: { engine: "zz" } }, store: { path: 5 } }));
  writeFileSync(path.join(dir, "exists.json"), "{}\n");
  writeFileSync(path.join(dir, "hooks-token"), "exit-codes-hooks-token-0123456789\n", { mode: 0o600 });
  writeFileSync(path.join(dir, "hooks-bad.json"), JSON.stringify({ hooks: { tokenFile: "hooks-token" }, store: { path: 5 } }));
  writeFileSync(path.join(dir, "bad-state.jsonl"), '{"vmId":"x","record":{"nope":1}}\n');
  writeFileSync(path.join(dir, "vars.json"), JSON.stringify({ ferry_vms: "web01" }));
  [nats, downPort] = await Promise.all([startNatsServer(), closedPort()]);
  // The status row needs Ferry's buckets and stream: the first publish creates them.
  const provision = await ferry(["publish", "backup.requested", '{"vm":"web01"}', "--nats", "$NATS"]);
  if (provision.code !== 0) throw new Error(`could not provision the streams: ${provision.out}`);
});

afterAll(async () => {
  await nats?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const commands = readdirSync(path.join(repo, "cli/commands"))
  .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
  .map((f) => f.slice(0, -3))
  .sort();

describe("exit codes (README table)", () => {
  it.concurrent.each(commands)("%s - an unknown option is a usage error: exit 2", async (command) => {
    const r = await ferry([command, "--frob-unknown-option"]);
    expect(r.out).toMatch(new RegExp(`ferry ${command}`));
    expect(r.code).toBe(2);
  }, 240_000);

  it("an unknown command is a usage error: exit 2; no command at all prints the overview, exit 2", async () => {
    const r = await ferry(["no-such-command"]);
    expect(r.code).toBe(2);
    expect(r.out).toContain("unknown command 'no-such-command'");
    const none = await ferry([]);
    expect(none.code).toBe(2);
    expect(none.out).toContain("Exit codes: 0 ok, 1 failed, 2 usage error, 3 something needed is unavailable, 4 input rejected.");
  });

  it.concurrent.each(ROWS.map((r) => [r.command, r.class, r.why, r] as const))("%s - %s: %s", async (_c, cls, _why, row) => {
    const r = await ferry([row.command, ...row.args]);
    expect(r.out).toContain(row.says);
    expect(r.code).toBe(CODE[cls]);
  }, 240_000);

  it("every failure class of the table is walked, and every row's command exists", () => {
    for (const cls of Object.keys(CODE) as Class[]) expect(ROWS.some((r) => r.class === cls)).toBe(true);
    for (const r of ROWS) expect(commands).toContain(r.command);
  });
});
