/** `ferry publish`, `ferry events` and `ferry run` argument/exit-code behaviour, as processes. */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";

const ferry = fileURLToPath(new URL("../cli/ferry.mjs", import.meta.url));
const root = fileURLToPath(new URL("../", import.meta.url));
let server: NatsServer;

function run(args: string[], o: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ferry, ...args], { cwd: root, env: { ...process.env, FERRY_CONFIG: "", NATS_URL: "", ...o.env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`ferry ${args.join(" ")} timed out: ${stdout} ${stderr}`));
    }, o.timeoutMs ?? 30_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

describe("ferry publish / events / run", () => {
  it("ferry publish - an invalid event is not published: the reason is printed and the exit code is 4", async () => {
    const [r, empty] = await Promise.all([
      run(["publish", "backup.requested", '{"vm":"../etc"}', "--nats", server.url]),
      run(["publish", "backup.requested", "{}", "--nats", server.url]),
    ]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("ferry publish: invalid backup.requested: vm: may contain only letters, digits");
    expect(empty.code).toBe(4);
    expect(empty.stderr).toContain("vm: required");
  });

  it("ferry publish - publishes with a msgID, prints the ack, and reports a duplicate", async () => {
    const first = await run(["publish", "backup.requested", '{"vm":"web01"}', "--id", "cli-1", "--json", "--nats", server.url]);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual({ subject: "backup.requested", stream: "FERRY_COMMANDS", seq: 1, duplicate: false, msgId: "cli-1" });
    const second = await run(["publish", "backup.requested", '{"vm":"web01"}', "--id", "cli-1", "--nats", server.url]);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe("published backup.requested to FERRY_COMMANDS seq 1, msgId cli-1 (duplicate: already published, not stored again)\n");
  });

  it("ferry publish - unknown subject or missing JSON is a usage error (2); unreachable NATS is 3", async () => {
    const [unknown, missing, down] = await Promise.all([
      run(["publish", "backup.wanted", "{}", "--nats", server.url]),
      run(["publish", "backup.requested"]),
      run(["publish", "backup.requested", '{"vm":"x"}', "--nats", "nats://127.0.0.1:1"]),
    ]);
    expect(unknown.code).toBe(2);
    expect(missing.code).toBe(2);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain("cannot connect to NATS at nats://127.0.0.1:1");
  });

  it("ferry events - prints stored events as lines or JSON and stops after --count", async () => {
    await run(["publish", "restore.requested", '{"vm":"db-1","checkpoint":2}', "--nats", server.url]);
    const [lines, json, badSince] = await Promise.all([
      run(["events", "*.requested", "--all", "--count", "2", "--nats", server.url]),
      run(["events", "restore.requested", "--all", "--count", "1", "--json", "--nats", server.url]),
      run(["events", "--since", "yesterday", "--nats", server.url]),
    ]);
    expect(lines.code).toBe(0);
    const out = lines.stdout.trim().split("\n");
    expect(out).toHaveLength(2);
    expect(out.find((l) => l.includes("restore.requested"))).toMatch(/restore\.requested {2}vm=db-1 checkpoint=2 {2}\[FERRY_COMMANDS#2\]$/);
    expect(JSON.parse(json.stdout)).toMatchObject({ subject: "restore.requested", stream: "FERRY_COMMANDS", seq: 2, data: { vm: "db-1", checkpoint: 2 } });
    expect(badSince.code).toBe(2);
  });

  it("ferry run - an unknown function is a usage error naming the ones that exist", async () => {
    const [r, none] = await Promise.all([
      run(["run", "nope", "--functions-dir", "test/fixtures/functions", "--nats", server.url]),
      run(["run", "--nats", server.url]),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown function(s): nope; available: probe");
    expect(none.code).toBe(2);
  });
});
