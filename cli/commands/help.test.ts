import { readdirSync } from "node:fs";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { Command } from "../command.ts";
import { main } from "../main.ts";

const dir = fileURLToPath(new URL("./", import.meta.url));
const names = readdirSync(dir)
  .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
  .map((f) => f.slice(0, -3));

function capture() {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = "";
  let stderr = "";
  out.on("data", (c) => (stdout += c));
  err.on("data", (c) => (stderr += c));
  return { io: { stdout: out, stderr: err }, text: () => ({ stdout, stderr }) };
}

describe("ferry <command> --help", () => {
  it.each(names)("cli %s - --help exits 0 and prints its own usage; the file name is the command name", async (name) => {
    const mod = (await import(new URL(`./${name}.ts`, import.meta.url).href)) as { default?: Command };
    expect(mod.default?.name).toBe(name);
    expect(mod.default?.summary.length).toBeGreaterThan(0);
    const c = capture();
    expect(await main([name, "--help"], c.io)).toBe(0);
    expect(c.text().stdout).toContain(`ferry ${name}`);
    expect(c.text().stderr).toBe("");
  }, 60_000);
});
