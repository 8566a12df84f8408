/**
 * ferry.env: the secrets beside the config file, one `NAME=value` a line. The same file works as
 * a systemd `EnvironmentFile=`, a docker compose `env_file:` and with `set -a; . ferry.env`.
 * Values are single-quoted (taken literally by all three); a value holding a quote or a newline
 * is double-quoted with \" \\ \$ \n escapes instead.
 */
import { readFile } from "node:fs/promises";

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function renderEnvFile(values: Readonly<Record<string, string>>, header: string[] = []): string {
  const lines = header.map((h) => `# ${h}`);
  for (const [name, value] of Object.entries(values)) {
    if (!NAME.test(name)) throw new Error(`not an environment variable name: ${name}`);
    if (!/['\n\r]/.test(value)) lines.push(`${name}='${value}'`);
    else {
      const escaped = value.replace(/[\\"$`]/g, (c) => `\\${c}`).replace(/\n/g, "\\n").replace(/\r/g, "\\r");
      lines.push(`${name}="${escaped}"`);
    }
  }
  return `${lines.join("\n")}\n`;
}

export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    const [, name, rest] = m as unknown as [string, string, string];
    let value = rest;
    if (value.startsWith("'") && value.endsWith("'") && value.length >= 2) value = value.slice(1, -1);
    else if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) {
      value = value
        .slice(1, -1)
        .replace(/\\(.)/g, (_m, c: string) => (c === "n" ? "\n" : c === "r" ? "\r" : c));
    }
    out[name] = value;
  }
  return out;
}

/** The variables of an env file, or {} when it does not exist. */
export async function readEnvFile(file: string): Promise<Record<string, string>> {
  try {
    return parseEnvFile(await readFile(file, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw err;
  }
}
