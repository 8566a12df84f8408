import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { main } from "./main.ts";

function capture() {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = "";
  let stderr = "";
  out.on("data", (c) => (stdout += c));
  err.on("data", (c) => (stderr += c));
  return { io: { stdout: out, stderr: err }, text: () => ({ stdout, stderr }) };
}

describe("cli main", () => {
  it("cli - lists every command with --help", async () => {
    const c = capture();
    expect(await main(["--help"], c.io)).toBe(0);
    for (const name of ["run", "publish", "events", "doctor", "config", "lab", "transfer", "checkpoints"]) {
      expect(c.text().stdout).toContain(`  ${name}`);
    }
  }, 60_000);
  it("cli - unknown command is a usage error", async () => {
    const c = capture();
    expect(await main(["no-such-thing"], c.io)).toBe(2);
    expect(c.text().stderr).toContain("unknown command 'no-such-thing'");
  });
  it("cli - a path-like command name is not imported", async () => {
    const c = capture();
    expect(await main(["../main"], c.io)).toBe(2);
  });
});
