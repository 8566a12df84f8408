/**
 * `npm run demo` (scripts/demo.ts) as a child process with small disks in a temp directory: it
 * must finish with exit 0, leave web01 with a full and an incremental restore point in the
 * store, and leave nothing running. Plus the guards around its data directory and options.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseChainJson } from "../domain/chain/mod.ts";
import { prepareDataDir } from "../scripts/demo/data-dir.ts";
import { parseDemoOptions } from "../scripts/demo/options.ts";

const root = fileURLToPath(new URL("../", import.meta.url));
const tsx = join(root, "node_modules", ".bin", "tsx");
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "ferry-demo-test-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/**
 * Run the demo; with `whileKept`, once a --keep demo says it runs until Ctrl-C, call it with the
 * output so far, then send the Ctrl-C (SIGINT) the operator would.
 */
function runDemo(
  args: string[],
  timeoutMs: number,
  whileKept?: (output: string) => Promise<void>,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string; keptError?: unknown }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, FERRY_DEMO_SIZE: "small" };
    delete env.NATS_URL;
    delete env.FERRY_CONFIG;
    const child = spawn(tsx, ["scripts/demo.ts", ...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let kept: Promise<unknown> | undefined;
    let keptError: unknown;
    child.stdout.on("data", (c: Buffer) => {
      output += c.toString();
      if (whileKept && !kept && output.includes("== Running until Ctrl-C")) {
        kept = whileKept(output)
          .catch((err: unknown) => (keptError = err))
          .finally(() => child.kill("SIGINT"));
      }
    });
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    // The demo has its own per-step timeouts; this only guards the test against a hang.
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output, keptError });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Log in to the console like a browser (the form's token and cookie, the POST from its own origin) and fetch the overview. */
async function consoleOverview(url: string, user: string, password: string): Promise<string> {
  const form = await fetch(`${url}/login`);
  expect(form.status).toBe(200);
  const token = /name="_login" value="([^"]+)"/.exec(await form.text())?.[1];
  const loginCookie = form.headers.getSetCookie().find((c) => c.startsWith("ferry_login="))?.split(";")[0];
  expect(token && loginCookie).toBeTruthy();
  const r = await fetch(`${url}/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: url, cookie: loginCookie! },
    body: new URLSearchParams({ _login: token!, user, password, next: "/" }).toString(),
  });
  expect(r.status, await r.clone().text()).toBe(303);
  expect(r.headers.get("location")).toBe("/");
  const session = r.headers.getSetCookie().find((c) => c.startsWith("ferry_session="))?.split(";")[0];
  expect(session).toBeDefined();
  const overview = await fetch(`${url}/`, { headers: { cookie: session! } });
  expect(overview.status).toBe(200);
  return overview.text();
}

describe("demo", () => {
  it("demo - small disks, --keep: a full and an incremental restore point of web01 in the store, the printed console URL answers and the printed login works; Ctrl-C exits 0 with nothing left running", { timeout: 170_000 }, async () => {
    const data = join(tmp, "run");
    const started = Date.now();
    let consoleSeen: { url: string; user: string; password: string; overview: string } | undefined;
    let metricsSeen = "";
    const run = await runDemo(["--data", data, "--nats-port", "0", "--keep"], 150_000, async (output) => {
      const url = /^ {2}URL\s+(http:\/\/127\.0\.0\.1:\d+)$/m.exec(output)?.[1];
      const login = /^ {2}login\s+user (\S+)\s+password (\S+)/m.exec(output);
      expect(url, output.slice(-2000)).toBeDefined();
      expect(login, output.slice(-2000)).not.toBeNull();
      const [user, password] = [login![1]!, login![2]!];
      consoleSeen = { url: url!, user, password, overview: await consoleOverview(url!, user, password) };
      // The demo turns on GET /metrics of `ferry run` and prints its URL: it answers with web01's figures.
      const metricsUrl = /^\s+metrics\s+(http:\/\/127\.0\.0\.1:\d+\/metrics)\s/m.exec(output)?.[1];
      expect(metricsUrl, output.slice(-2000)).toBeDefined();
      const scrape = await fetch(metricsUrl!);
      expect(scrape.status).toBe(200);
      metricsSeen = await scrape.text();
    });
    const seconds = (Date.now() - started) / 1000;
    expect(run.keptError).toBeUndefined();
    expect(run.code, run.output.slice(-4000)).toBe(0);

    // The console the demo printed: a login with the printed user and password reaches the
    // overview, which lists the demo's VMs and names the operator.
    expect(consoleSeen).toBeDefined();
    expect(consoleSeen!.user).toBe("demo");
    expect(consoleSeen!.overview).toContain('data-vm="web01"');
    expect(consoleSeen!.overview).toContain('data-vm="db01"');
    expect(consoleSeen!.overview).toMatch(/demo <em class="role">operator<\/em>/);
    // The password is for the operator's terminal only: not in the config, the users file (a hash), any log or the audit line.
    const written = [await readFile(join(data, "ferry.json"), "utf8"), await readFile(join(data, "secrets", "console-users.json"), "utf8")];
    for (const f of await readdir(join(data, "logs"))) written.push(await readFile(join(data, "logs", f), "utf8"));
    for (const text of written) expect(text.includes(consoleSeen!.password)).toBe(false);
    expect(metricsSeen).toMatch(/^ferry_vm_restore_points\{vm="web01"\} 2$/m);
    expect(metricsSeen).toMatch(/^ferry_vm_last_success_timestamp_seconds\{vm="web01"\} \d/m);
    const audit = (await readFile(join(data, "logs", "console-audit.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit).toContainEqual(expect.objectContaining({ user: "demo", role: "operator", action: "login", result: "ok" }));

    const record = parseChainJson(await readFile(join(data, "backups", "web01", "restore-points.json"), "utf8"));
    expect(record.vm.name).toBe("web01");
    expect(record.restorePoints.map((p) => p.kind)).toEqual(["full", "incremental"]);
    const [full, incr] = record.restorePoints;
    expect(incr!.parentId).toBe(full!.id);
    expect(incr!.disks).toHaveLength(2);
    for (const d of incr!.disks) {
      expect(d.parentLayer).toBeDefined();
      expect(existsSync(join(data, "backups", d.layer))).toBe(true);
    }

    // What it says it did, in order.
    for (const line of ["backup.completed  web01: full", "backup.completed  web01: incremental", "2 restore points", "all verified", "Images are identical.", "console (SIGTERM) stopped", "nats-server stopped"]) {
      expect(run.output).toContain(line);
    }
    // The processes it started are gone.
    const natsPid = Number(/NATS\s+nats:\/\/[\d.:]+\s+\(pid (\d+)\)/.exec(run.output)?.[1]);
    const fnPid = Number(/pid (\d+): [^\n]*backup-requested/.exec(run.output)?.[1]);
    const consolePid = Number(/pid (\d+): http:\/\//.exec(run.output)?.[1]);
    expect(natsPid).toBeGreaterThan(0);
    expect(fnPid).toBeGreaterThan(0);
    expect(consolePid).toBeGreaterThan(0);
    expect(alive(natsPid)).toBe(false);
    expect(alive(fnPid)).toBe(false);
    expect(alive(consolePid)).toBe(false);
    expect(existsSync(join(data, "demo.pid"))).toBe(false);
    console.log(`demo (small) took ${seconds.toFixed(1)} s`);
  });

  it("demo - refuses a data directory it did not make, and leaves it alone", async () => {
    const foreign = join(tmp, "foreign");
    await mkdir(foreign);
    await writeFile(join(foreign, "important.txt"), "keep me");
    await expect(prepareDataDir(foreign)).rejects.toThrow(/not made by the demo/);
    expect(await readdir(foreign)).toEqual(["important.txt"]);
  });

  it("demo - refuses a data directory a running demo uses, and starts clean from a stopped one", async () => {
    const dir = join(tmp, "busy");
    const first = await prepareDataDir(dir);
    await writeFile(join(first.store, "old-layer.qcow2"), "x");
    // A live process that is not us holds it.
    await writeFile(join(dir, "demo.pid"), `${process.ppid}\n`);
    await expect(prepareDataDir(dir)).rejects.toThrow(new RegExp(`another demo \\(pid ${process.ppid}\\)`));
    expect(existsSync(join(first.store, "old-layer.qcow2"))).toBe(true);
    // Stopped (the pid file names a dead process): cleaned and recreated.
    await writeFile(join(dir, "demo.pid"), "999999999\n");
    const again = await prepareDataDir(dir);
    expect(await readdir(again.store)).toEqual([]);
  });

  it("demo options - --small or FERRY_DEMO_SIZE pick small disks; a bad port or size is refused", () => {
    expect(parseDemoOptions([], {}, "/x").profile.name).toBe("normal");
    expect(parseDemoOptions(["--small"], {}, "/x").profile.name).toBe("small");
    expect(parseDemoOptions([], { FERRY_DEMO_SIZE: "small" }, "/x").profile.name).toBe("small");
    expect(parseDemoOptions([], {}, "/x").dataDir).toBe("/x/data/demo");
    expect(parseDemoOptions(["--nats-port", "0"], {}, "/x").natsPort).toBe(0);
    expect(parseDemoOptions([], { FERRY_DEMO_BACKUP_TIMEOUT: "30" }, "/x").profile.backupTimeoutMs).toBe(30_000);
    expect(() => parseDemoOptions(["--nats-port", "70000"], {}, "/x")).toThrow(/--nats-port/);
    expect(() => parseDemoOptions([], { FERRY_DEMO_SIZE: "huge" }, "/x")).toThrow(/FERRY_DEMO_SIZE/);
  });
});
