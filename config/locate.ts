/**
 * Which config file a command uses: `--config FILE`, else $FERRY_CONFIG, else ./ferry.json,
 * else /etc/ferry/ferry.json. The first two are used even when the file is missing (so the
 * error names the file the operator asked for); the last two only when they exist.
 */
import { existsSync } from "node:fs";
import path from "node:path";

export const SYSTEM_CONFIG = "/etc/ferry/ferry.json";

export interface ConfigLocation {
  /** Absolute path, or undefined when no config file was named and none was found. */
  file: string | undefined;
  /** How it was chosen, for messages: "--config", "FERRY_CONFIG", "./ferry.json", "/etc/ferry/ferry.json". */
  via: string;
}

export function locateConfig(
  flag: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
  cwd: string,
  exists: (file: string) => boolean = existsSync,
): ConfigLocation {
  if (flag) return { file: path.resolve(cwd, flag), via: "--config" };
  if (env.FERRY_CONFIG) return { file: path.resolve(cwd, env.FERRY_CONFIG), via: "FERRY_CONFIG" };
  const local = path.resolve(cwd, "ferry.json");
  if (exists(local)) return { file: local, via: "./ferry.json" };
  if (exists(SYSTEM_CONFIG)) return { file: SYSTEM_CONFIG, via: SYSTEM_CONFIG };
  return { file: undefined, via: "none" };
}
