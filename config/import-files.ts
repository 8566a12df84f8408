/**
 * `ferry config import` on disk: read variables.json, convert, validate the result exactly as
 * loadConfig would, then write ferry.json and ferry.env (mode 0600). Nothing is written unless
 * the result validates and (without `force`) neither output file exists yet.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { PermanentError } from "../contracts/errors.ts";
import { renderEnvFile } from "./env-file.ts";
import { importAirflowVariables, type UnmappedField } from "./import-airflow.ts";
import { ConfigError, ENV_FILE_NAME, parseConfig } from "./load.ts";

export class ImportInputError extends PermanentError {}

export class ImportOutputExistsError extends PermanentError {
  constructor(file: string) {
    super("IMPORT_OUTPUT_EXISTS", `${file} already exists: use --force to replace it, or --out/--env-out`, { file });
  }
}

/** The converted config does not validate; carries what the import could report anyway. */
export class ImportInvalidError extends ConfigError {
  readonly unmapped: readonly UnmappedField[];
  readonly notes: readonly string[];
  constructor(cause: ConfigError, unmapped: UnmappedField[], notes: string[]) {
    super(String(cause.fields.source), [...cause.issues]);
    this.unmapped = unmapped;
    this.notes = notes;
  }
}

export interface ImportReport {
  configFile: string;
  /** Undefined when variables.json held no passwords. */
  envFile: string | undefined;
  /** Names of the variables written to envFile (never their values). */
  secretNames: string[];
  engines: string[];
  vms: string[];
  unmapped: UnmappedField[];
  notes: string[];
}

async function writeAtomically(file: string, content: string, mode: number): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    // The mode is set at creation, so a secret is never readable by others, even briefly.
    await writeFile(tmp, content, { mode, flag: "wx" });
    await chmod(tmp, mode);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export async function runImport(o: {
  input: string;
  cwd: string;
  out?: string;
  envOut?: string;
  force: boolean;
}): Promise<ImportReport> {
  const input = path.resolve(o.cwd, o.input);
  let text: string;
  try {
    text = await readFile(input, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ImportInputError("IMPORT_INPUT_NOT_FOUND", `${input}: ${code === "ENOENT" ? "no such file" : `cannot be read (${code})`}`);
  }
  let vars: unknown;
  try {
    vars = JSON.parse(text);
  } catch (err) {
    throw new ImportInputError("IMPORT_INPUT_INVALID", `${input}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof vars !== "object" || vars === null || Array.isArray(vars)) {
    throw new ImportInputError("IMPORT_INPUT_INVALID", `${input}: must hold a JSON object like Airflow's variables.json`);
  }
  const result = importAirflowVariables(vars);

  const configFile = path.resolve(o.cwd, o.out ?? "ferry.json");
  const hasSecrets = Object.keys(result.secrets).length > 0;
  const envFile = hasSecrets ? path.resolve(o.cwd, o.envOut ?? path.join(path.dirname(configFile), ENV_FILE_NAME)) : undefined;

  if (!o.force) {
    for (const f of [configFile, envFile]) if (f && existsSync(f)) throw new ImportOutputExistsError(f);
  }
  let engines: string[];
  let vms: string[];
  try {
    // Validate with the secrets as the only environment: the file must stand on its own.
    const loaded = await parseConfig(result.config, { baseDir: path.dirname(configFile), env: result.secrets, source: configFile });
    engines = Object.keys(loaded.engines);
    vms = Object.keys(loaded.vms);
  } catch (err) {
    if (err instanceof ConfigError) throw new ImportInvalidError(err, result.unmapped, result.notes);
    throw err;
  }

  if (envFile) {
    await writeAtomically(
      envFile,
      renderEnvFile(result.secrets, [
        "Ferry secrets, written by `ferry config import`. Keep this file mode 0600.",
        "Used by systemd (EnvironmentFile=), docker compose (env_file:) and ferry itself.",
      ]),
      0o600,
    );
  }
  await writeAtomically(configFile, `${JSON.stringify(result.config, null, 2)}\n`, 0o644);
  return {
    configFile,
    envFile,
    secretNames: Object.keys(result.secrets),
    engines,
    vms,
    unmapped: result.unmapped,
    notes: result.notes,
  };
}
