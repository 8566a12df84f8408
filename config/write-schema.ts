/**
 * Regenerates contracts/config.schema.json from the zod schema (the source of truth).
 * Run after changing contracts/config.ts:  npx tsx config/write-schema.ts
 * test/config-schema.test.ts fails while the checked-in file is out of date.
 */
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { configJsonSchema } from "../contracts/config.ts";

export const SCHEMA_FILE = fileURLToPath(new URL("../contracts/config.schema.json", import.meta.url));

export function renderConfigSchema(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await writeFile(SCHEMA_FILE, renderConfigSchema());
  process.stdout.write(`wrote ${SCHEMA_FILE}\n`);
}
