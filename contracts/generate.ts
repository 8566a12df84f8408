/**
 * Writes contracts/schemas/<subject>.json from the zod sources. Run after changing a contract:
 *   npx tsx contracts/generate.ts          (write)
 *   npx tsx contracts/generate.ts --check  (exit 1 if a committed file is stale)
 */
import { readFile, readdir, writeFile, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { allContracts, schemaFileName } from "./mod.ts";

export const schemasDir = fileURLToPath(new URL("./schemas/", import.meta.url));

/** File name → exact file content, for every contract. */
export function renderSchemas(): Map<string, string> {
  return new Map(allContracts.map((c) => [schemaFileName(c.subject), `${JSON.stringify(c.jsonSchema, null, 2)}\n`]));
}

/** Names of committed files that differ from the sources (missing, changed or extra). */
export async function staleSchemas(): Promise<string[]> {
  const want = renderSchemas();
  const have = new Set((await readdir(schemasDir)).filter((f) => f.endsWith(".json")));
  const stale: string[] = [];
  for (const [name, text] of want) {
    const current = have.has(name) ? await readFile(`${schemasDir}${name}`, "utf8") : undefined;
    if (current !== text) stale.push(name);
  }
  for (const name of have) if (!want.has(name)) stale.push(name);
  return stale.sort();
}

async function main(): Promise<void> {
  if (process.argv.includes("--check")) {
    const stale = await staleSchemas();
    if (stale.length) {
      process.stderr.write(`stale JSON Schema files: ${stale.join(", ")}; run: npx tsx contracts/generate.ts\n`);
      process.exitCode = 1;
    }
    return;
  }
  const want = renderSchemas();
  for (const name of await readdir(schemasDir)) if (name.endsWith(".json") && !want.has(name)) await rm(`${schemasDir}${name}`);
  for (const [name, text] of want) await writeFile(`${schemasDir}${name}`, text);
  process.stdout.write(`wrote ${want.size} schemas to contracts/schemas/\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
