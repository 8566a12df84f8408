import { parseArgs } from "node:util";
import { ExitCode, type Command } from "../command.ts";
import { CHECK_GROUPS, runDoctor, type CheckGroup, type CheckResult } from "../../config/doctor.ts";

const usage = `Usage: ferry doctor [--config FILE] [--check GROUP,...] [--timeout SECONDS] [--json]

Checks that this machine can run Ferry and says what to do about anything missing:
  node         Node.js ≥ 24
  nats-server  the nats-server binary and its version (≥ 2.10; needed when NATS runs here)
  nats         the configured NATS servers answer, run nats-server 2.10+ and JetStream is enabled
  qemu         qemu-img and qemu-nbd are installed
  nbdkit       nbdkit (optional)
  config       the config file is valid (see ferry config validate)
  engines      each engine answers on https with the CA Ferry trusts for it (caFile, else
               certs/<engine>-ca.pem) and its user logs in (a refused login is a FAIL naming the engine)
  certs        per engine: the trusted CA, the CA the engine serves, the engine's and the imageio hosts'
               certificates (KV ferry-certs), with days left; fails when the engine's certificate does
               not verify with the trusted CA, warns within certs.warnDays (as ferry cert list / check)
  store        the backup store exists and is writable; free space
  workers      every function with a durable consumer on NATS has at least one running worker
               (ferry run; found through NATS service discovery)

Every hint after "->" is a command that works as printed (with --config FILE when given).

--check runs only the named groups (e.g. --check nats,store for a container healthcheck).
The config file is --config, else $FERRY_CONFIG, else ./ferry.json, else /etc/ferry/ferry.json.

Exit codes: 0 every check passed (warnings allowed), 3 at least one check failed, 2 usage error.`;

const LABEL = { ok: "OK  ", warn: "WARN", fail: "FAIL" } as const;

function line(c: CheckResult): string {
  const fix = c.fix && c.status !== "ok" ? `\n      -> ${c.fix}` : "";
  return `${LABEL[c.status]}  ${c.detail}${fix}\n`;
}

const command: Command = {
  name: "doctor",
  summary: "Check this machine: Node, nats-server, NATS + JetStream, qemu, config, engine logins, certificates, store, workers",
  usage,
  async run(args, io) {
    let values: { config?: string; check?: string; timeout?: string; json?: boolean };
    try {
      ({ values } = parseArgs({
        args,
        options: { config: { type: "string" }, check: { type: "string" }, timeout: { type: "string" }, json: { type: "boolean" } },
        strict: true,
      }));
    } catch (err) {
      io.stderr.write(`ferry doctor: ${(err as Error).message}\n`);
      return ExitCode.usage;
    }
    let only: CheckGroup[] | undefined;
    if (values.check) {
      only = values.check.split(",").map((s) => s.trim()).filter(Boolean) as CheckGroup[];
      const unknown = only.filter((g) => !(CHECK_GROUPS as readonly string[]).includes(g));
      if (unknown.length) {
        io.stderr.write(`ferry doctor: unknown check ${unknown.join(", ")} (known: ${CHECK_GROUPS.join(", ")})\n`);
        return ExitCode.usage;
      }
    }
    const timeoutSec = values.timeout === undefined ? 5 : Number(values.timeout);
    if (!Number.isFinite(timeoutSec) || timeoutSec <= 0) {
      io.stderr.write("ferry doctor: --timeout must be a number of seconds\n");
      return ExitCode.usage;
    }
    const report = await runDoctor({
      env: io.env,
      cwd: io.cwd,
      signal: io.signal,
      timeoutMs: timeoutSec * 1000,
      ...(values.config !== undefined ? { configFile: values.config } : {}),
      ...(only ? { only } : {}),
    });
    if (values.json) {
      io.stdout.write(`${JSON.stringify(report)}\n`);
    } else {
      for (const c of report.checks) io.stdout.write(line(c));
      const failed = report.checks.filter((c) => c.status === "fail");
      io.stdout.write(
        failed.length === 0
          ? "\nReady: every check passed.\n"
          : `\n${failed.length} check${failed.length === 1 ? "" : "s"} failed: ${failed.map((c) => c.name).join(", ")}.\n`,
      );
    }
    return report.ok ? ExitCode.ok : ExitCode.unavailable;
  },
};

export default command;
