import { parseArgs } from "node:util";
import { ExitCode, type Command, type CommandIO } from "../command.ts";
import { locateConfig } from "../../config/locate.ts";
import { ConfigError, ConfigNotFoundError, loadConfig, redactedConfig, type ConfigWarning } from "../../config/load.ts";
import { formatPath } from "../../config/issues.ts";
import { ImportInputError, ImportInvalidError, ImportOutputExistsError, runImport } from "../../config/import-files.ts";

const usage = `Usage:
  ferry config validate [--config FILE] [--env-file FILE] [--json]
  ferry config show     [--config FILE] [--env-file FILE]
  ferry config import   VARIABLES.json [--out FILE] [--env-out FILE] [--force] [--json]

validate  Check a config file; every problem is printed with its JSON path.
show      Print the effective config: every default filled in, passwords as "***".
import    Convert an Airflow-era variables.json into a Ferry config (default ./ferry.json)
          and a ferry.env (mode 0600) holding the passwords, which are never printed.
          Fields that cannot be mapped are listed on stderr with the reason.

The config file is --config, else $FERRY_CONFIG, else ./ferry.json, else /etc/ferry/ferry.json.
Variables in ferry.env beside it are used (the environment wins); --env-file names another file.
Keys and defaults: docs/configuration.md.

Exit codes: 0 ok, 2 usage error, 3 config file (or input file) not found,
4 config invalid (or the import result does not validate), 1 refused to overwrite / write failed.`;

function printWarnings(io: CommandIO, warnings: ConfigWarning[]): void {
  for (const w of warnings) io.stderr.write(`warning: ${formatPath(w.path)}: ${w.message}\n`);
}

async function load(io: CommandIO, args: string[]) {
  const { values } = parseArgs({
    args,
    options: { config: { type: "string" }, "env-file": { type: "string" }, json: { type: "boolean" } },
    strict: true,
  });
  const where = locateConfig(values.config, io.env, io.cwd);
  const warnings: ConfigWarning[] = [];
  if (!where.file) {
    return {
      values,
      warnings,
      error: new ConfigNotFoundError("ferry.json", "no config file: use --config FILE, set FERRY_CONFIG, or run ferry config import"),
    };
  }
  try {
    const config = await loadConfig(where.file, io.env, {
      envFile: values["env-file"] ?? true,
      onWarning: (w) => warnings.push(w),
    });
    return { values, warnings, config };
  } catch (error) {
    return { values, warnings, error };
  }
}

function reportLoadError(io: CommandIO, error: unknown, json: boolean | undefined): number {
  if (error instanceof ConfigNotFoundError) {
    if (json) io.stdout.write(`${JSON.stringify({ ok: false, code: error.code, message: error.message })}\n`);
    io.stderr.write(`ferry config: ${error.message}\n`);
    return ExitCode.unavailable;
  }
  if (error instanceof ConfigError) {
    if (json) {
      io.stdout.write(`${JSON.stringify({ ok: false, code: error.code, file: error.fields.source, issues: error.fields.issues })}\n`);
    }
    io.stderr.write(`${error.message}\n`);
    return ExitCode.invalid;
  }
  throw error;
}

async function validate(io: CommandIO, args: string[]): Promise<number> {
  const r = await load(io, args);
  printWarnings(io, r.warnings);
  if (!r.config) return reportLoadError(io, r.error, r.values.json);
  const c = r.config;
  if (r.values.json) {
    io.stdout.write(
      `${JSON.stringify({
        ok: true,
        file: c.file,
        engines: Object.keys(c.engines),
        vms: Object.keys(c.vms),
        warnings: r.warnings.map((w) => ({ path: formatPath(w.path), message: w.message })),
      })}\n`,
    );
  } else {
    const n = (k: number, what: string) => `${k} ${what}${k === 1 ? "" : "s"}`;
    io.stdout.write(
      `${c.file} is valid: ${n(Object.keys(c.engines).length, "engine")}, ${n(Object.keys(c.vms).length, "VM")}, store ${c.store.path}\n`,
    );
  }
  return ExitCode.ok;
}

async function show(io: CommandIO, args: string[]): Promise<number> {
  const r = await load(io, args);
  printWarnings(io, r.warnings);
  if (!r.config) return reportLoadError(io, r.error, false);
  io.stdout.write(`${JSON.stringify(redactedConfig(r.config), null, 2)}\n`);
  return ExitCode.ok;
}

async function importCommand(io: CommandIO, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      out: { type: "string" },
      "env-out": { type: "string" },
      force: { type: "boolean" },
      json: { type: "boolean" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) {
    io.stderr.write("ferry config import: give exactly one variables.json file\n");
    return ExitCode.usage;
  }
  try {
    const result = await runImport({
      input: positionals[0]!,
      cwd: io.cwd,
      ...(values.out !== undefined ? { out: values.out } : {}),
      ...(values["env-out"] !== undefined ? { envOut: values["env-out"] } : {}),
      force: values.force ?? false,
    });
    for (const u of result.unmapped) io.stderr.write(`not mapped: ${u.field}: ${u.reason}\n`);
    if (values.json) {
      io.stdout.write(`${JSON.stringify({ ok: true, ...result })}\n`);
    } else {
      io.stdout.write(`wrote ${result.configFile}: ${result.engines.length} engines, ${result.vms.length} VMs\n`);
      if (result.envFile) {
        io.stdout.write(`wrote ${result.envFile} (mode 0600) with ${result.secretNames.join(", ")}; keep it secret\n`);
      }
      for (const note of result.notes) io.stdout.write(`note: ${note}\n`);
      io.stdout.write(`check it: ferry config validate --config ${result.configFile}\n`);
    }
    return ExitCode.ok;
  } catch (error) {
    if (error instanceof ImportInputError) {
      io.stderr.write(`ferry config import: ${error.message}\n`);
      return error.code === "IMPORT_INPUT_NOT_FOUND" ? ExitCode.unavailable : ExitCode.invalid;
    }
    if (error instanceof ImportOutputExistsError) {
      io.stderr.write(`ferry config import: ${error.message}\n`);
      return ExitCode.failed;
    }
    if (error instanceof ImportInvalidError) {
      for (const u of error.unmapped) io.stderr.write(`not mapped: ${u.field}: ${u.reason}\n`);
      if (values.json) {
        io.stdout.write(
          `${JSON.stringify({ ok: false, code: error.code, issues: error.fields.issues, unmapped: error.unmapped, notes: error.notes })}\n`,
        );
      }
      io.stderr.write(`ferry config import: the converted config does not validate; nothing written.\n${error.message}\n`);
      return ExitCode.invalid;
    }
    throw error;
  }
}

const command: Command = {
  name: "config",
  summary: "Validate, show, or import (from Airflow variables.json) the Ferry config file",
  usage,
  async run(args, io) {
    const [sub, ...rest] = args;
    try {
      switch (sub) {
        case "validate":
          return await validate(io, rest);
        case "show":
          return await show(io, rest);
        case "import":
          return await importCommand(io, rest);
        default:
          io.stderr.write(`${sub ? `ferry config: unknown subcommand '${sub}'` : "ferry config: missing subcommand"}\n${usage}\n`);
          return ExitCode.usage;
      }
    } catch (error) {
      if ((error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
        io.stderr.write(`ferry config ${sub}: ${(error as Error).message}\n`);
        return ExitCode.usage;
      }
      throw error;
    }
  },
};

export default command;
