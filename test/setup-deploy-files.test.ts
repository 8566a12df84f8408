/**
 * The deployment files: nats-server configs (checked by nats-server itself, the single node and
 * the 3-node cluster actually started on loopback), systemd units, the crontab, the Dockerfile
 * and docker-compose.yml (Docker cannot run here: their structure and every path they name are
 * checked instead).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { provisionInfra } from "../adapters/nats/provision.ts";
import { cronProblem } from "../contracts/config.ts";
import { CHECK_GROUPS, checkNats } from "../config/doctor.ts";
import { FERRY_NODE_FLAGS } from "../cli/node-flags.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const read = (rel: string) => readFileSync(path.join(REPO, rel), "utf8");
let dir: string;
const children: ChildProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ferry-deploy-"));
});
afterAll(async () => {
  await Promise.all(children.map(stopChild));
  rmSync(dir, { recursive: true, force: true });
});

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(t);
}

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, async () => {
      const s = createServer();
      await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
      return s;
    }),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Replace each `from` exactly as written (fails when the config no longer has that line). */
function substitute(text: string, pairs: [string, string][]): string {
  let out = text;
  for (const [from, to] of pairs) {
    expect(out, `config should contain ${from}`).toContain(from);
    out = out.split(from).join(to);
  }
  return out;
}

/** Starts nats-server on a config; resolves with the client and monitor ports it logged and its log so far (kept growing). */
async function startNats(conf: string): Promise<{ child: ChildProcess; client: number; http: number; log: () => string }> {
  // --pdeathsig: the server dies with this worker even if afterAll never runs.
  const argv = existsSync("/usr/bin/setpriv") ? ["/usr/bin/setpriv", "--pdeathsig", "SIGTERM", "--", "nats-server"] : ["nats-server"];
  const child = spawn(argv[0]!, [...argv.slice(1), "-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  children.push(child);
  let log = "";
  // The whole log is kept (bounded): when the cluster does not form, it is the evidence.
  child.stderr!.on("data", (c: Buffer) => {
    log = (log + c.toString()).slice(-200_000);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server ${conf} not ready:\n${log.slice(-1500)}`)), 30_000);
    const ready = () => {
      if (!log.includes("Server is ready")) return;
      clearTimeout(timer);
      child.stderr!.off("data", ready);
      const client = Number(/Listening for client connections on [^\s]+:(\d+)/.exec(log)?.[1]);
      const http = Number(/Starting http monitor on [^\s]+:(\d+)/.exec(log)?.[1]);
      resolve({ child, client, http, log: () => log });
    };
    child.stderr!.on("data", ready);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server ${conf} exited ${code}:\n${log.slice(-1500)}`));
    });
  });
}

type MetaCluster = { leader?: string; cluster_size?: number; replicas?: { name: string; current: boolean; offline?: boolean }[] };

/** Each node's view of the JetStream meta group, from its monitor port (null: no answer). */
async function metaViews(nodes: { http: number }[]): Promise<(MetaCluster | null)[]> {
  return Promise.all(
    nodes.map(async (n) => {
      try {
        const res = await fetch(`http://127.0.0.1:${n.http}/jsz`, { signal: AbortSignal.timeout(3000) });
        return ((await res.json()) as { meta_cluster?: MetaCluster }).meta_cluster ?? null;
      } catch {
        return null;
      }
    }),
  );
}

/** Every node knows the same leader and sees the other two as current members. */
function metaFormed(views: (MetaCluster | null)[]): boolean {
  const leader = views[0]?.leader;
  return (
    leader !== undefined &&
    views.every((v) => v?.leader === leader && v.cluster_size === 3) &&
    views.some((v) => v?.leader === leader && (v.replicas ?? []).length === 2 && v.replicas!.every((r) => r.current && !r.offline))
  );
}

/** What a failed formation leaves to read: routes, meta views and the tail of every node's log. */
async function clusterEvidence(nodes: { http: number; log: () => string }[]): Promise<string> {
  const views = await metaViews(nodes);
  const routes = await Promise.all(
    nodes.map(async (n) => {
      try {
        const r = (await (await fetch(`http://127.0.0.1:${n.http}/routez`, { signal: AbortSignal.timeout(3000) })).json()) as {
          num_routes?: number;
          routes?: { remote_name?: string; ip?: string; port?: number }[];
        };
        return `${r.num_routes} routes to ${(r.routes ?? []).map((x) => x.remote_name ?? `${x.ip}:${x.port}`).join(", ")}`;
      } catch (err) {
        return `routez failed: ${(err as Error).message}`;
      }
    }),
  );
  return nodes
    .map((n, i) => `--- node ${i + 1}: ${routes[i]}; meta ${JSON.stringify(views[i])}\n${n.log().slice(-3000)}`)
    .join("\n");
}

const NATS_CONFIGS = ["infra/nats/single.conf", "infra/nats/cluster/nats-1.conf", "infra/nats/cluster/nats-2.conf", "infra/nats/cluster/nats-3.conf"];

describe("infra/nats", () => {
  it("deploy - nats-server accepts every config file (nats-server -t)", () => {
    for (const conf of NATS_CONFIGS) {
      const r = spawnSync("nats-server", ["-t", "-c", path.join(REPO, conf)], { encoding: "utf8" });
      expect(r.status, `${conf}: ${r.stderr}`).toBe(0);
    }
  });

  it("deploy - single.conf runs JetStream on loopback (ports and store moved to a temp dir)", async () => {
    const store = path.join(dir, "single-store");
    const conf = path.join(dir, "single.conf");
    // Port -1: nats-server picks free ports itself (no race with other tests on this machine).
    writeFileSync(
      conf,
      substitute(read("infra/nats/single.conf"), [
        ["listen: 127.0.0.1:4222", "listen: 127.0.0.1:-1"],
        ["http: 127.0.0.1:8222", "http: 127.0.0.1:-1"],
        ['store_dir: "/var/lib/ferry/nats"', `store_dir: ${JSON.stringify(store)}`],
      ]),
    );
    const { child, client, http } = await startNats(conf);
    const result = await checkNats({ env: {}, cwd: dir, timeoutMs: 5000 }, { servers: [`nats://127.0.0.1:${client}`], replicas: 1 });
    expect(result.status, result.detail).toBe("ok");
    const health = await fetch(`http://127.0.0.1:${http}/healthz?js-enabled-only=true`);
    expect(health.status).toBe(200);
    await stopChild(child);
  });

  it("deploy - the three cluster configs form a JetStream cluster that keeps 3 replicas", async () => {
    // Route ports must be known up front (every node lists all three); client and monitor ports are picked by nats-server.
    const route = await freePorts(3);
    const confs = [1, 2, 3].map((i) => {
      const conf = path.join(dir, `nats-${i}.conf`);
      writeFileSync(
        conf,
        substitute(read(`infra/nats/cluster/nats-${i}.conf`), [
          ["listen: 0.0.0.0:4222", "listen: 127.0.0.1:-1"],
          ["http: 0.0.0.0:8222", "http: 127.0.0.1:-1"],
          ["listen: 0.0.0.0:6222", `listen: 127.0.0.1:${route[i - 1]}`],
          ['store_dir: "/var/lib/ferry/nats"', `store_dir: ${JSON.stringify(path.join(dir, `cluster-${i}`))}`],
          ["nats-route://nats-1:6222", `nats-route://127.0.0.1:${route[0]}`],
          ["nats-route://nats-2:6222", `nats-route://127.0.0.1:${route[1]}`],
          ["nats-route://nats-3:6222", `nats-route://127.0.0.1:${route[2]}`],
        ]),
      );
      return conf;
    });
    const nodes = await Promise.all(confs.map(startNats));
    const nc = await connect({ servers: nodes.map((n) => `nats://127.0.0.1:${n.client}`), timeout: 5000 });
    try {
      // checkAPI off: until the meta leader is elected the API does not answer yet.
      const jsm = await jetstreamManager(nc, { timeout: 5000, checkAPI: false });
      // The meta group needs a moment after the routes connect (on a loaded CI machine, longer: one
      // election round can time out and start again). Placement needs all three peers current, so
      // wait for that first; if it never comes, the failure carries the routes and the logs.
      const deadline = Date.now() + 80_000;
      while (!metaFormed(await metaViews(nodes))) {
        if (Date.now() > deadline) throw new Error(`the 3-node meta group did not form in 80 s\n${await clusterEvidence(nodes)}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      let info;
      for (;;) {
        try {
          info = await jsm.streams.add({ name: "SETUP_DEPLOY_R3", subjects: ["setup.deploy.r3"], num_replicas: 3 });
          break;
        } catch (err) {
          if (Date.now() > deadline + 20_000) throw new Error(`${(err as Error).message}\n${await clusterEvidence(nodes)}`, { cause: err });
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      expect(info.config.num_replicas).toBe(3);
      expect(info.cluster?.name).toBe("ferry");
      expect(info.cluster?.leader).toMatch(/^ferry-nats-[123]$/);
      expect(info.cluster?.replicas ?? []).toHaveLength(2);
      // Ferry's own layout (nats.replicas: 3): every stream and KV bucket gets three replicas.
      const report = await provisionInfra(nc, jsm, { replicas: 3 });
      expect(Object.keys(report.streams).length).toBeGreaterThan(0);
      for (const name of Object.keys(report.streams)) expect((await jsm.streams.info(name)).config.num_replicas, name).toBe(3);
      for (const name of Object.keys(report.buckets)) expect((await jsm.streams.info(`KV_${name}`)).config.num_replicas, name).toBe(3);
      // A second start is a no-op.
      const again = await provisionInfra(nc, jsm, { replicas: 3 });
      expect(new Set([...Object.values(again.streams), ...Object.values(again.buckets)])).toEqual(new Set(["unchanged"]));
    } finally {
      await nc.close();
    }
  });
});

/** `[Section]` → key → values (keys may repeat). */
function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const sec = /^\[(\w+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      out[section] = {};
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    expect(kv, `not a unit line: ${raw}`).not.toBeNull();
    expect(section, `line outside a section: ${raw}`).not.toBe("");
    (out[section]![kv![1]!] ??= []).push(kv![2]!);
  }
  return out;
}

/** The repository file an installed absolute path refers to (the install layout of infra/README.md). */
function repoFileFor(installed: string): string | undefined {
  if (installed.startsWith("/opt/ferry/app/")) return installed.slice("/opt/ferry/app/".length);
  if (installed.startsWith("/etc/ferry/nats/")) {
    const name = path.basename(installed);
    return name === "single.conf" ? "infra/nats/single.conf" : `infra/nats/cluster/${name}`;
  }
  return undefined;
}

describe("infra/systemd and infra/cron", () => {
  it("deploy - systemd units are well-formed, run ferry / nats-server from the documented paths, and systemd-analyze accepts them", () => {
    const unitsDir = path.join(REPO, "infra/systemd");
    const files = readdirSync(unitsDir).sort();
    expect(files).toEqual(["ferry-all.service", "ferry-cert-check.service", "ferry-cert-check.timer", "ferry-console.service", "ferry-hooks.service", "ferry-schedule.service", "ferry-schedule.timer", "ferry@.service", "nats-server.service"]);
    for (const f of files) {
      const unit = parseUnit(readFileSync(path.join(unitsDir, f), "utf8"));
      expect(unit.Unit?.Description, f).toBeDefined();
      if (f.endsWith(".timer")) {
        expect(unit.Timer?.OnCalendar).toEqual([f === "ferry-cert-check.timer" ? "*-*-* 06:17" : "*:0/5"]);
        expect(existsSync(path.join(unitsDir, unit.Timer!.Unit![0]!))).toBe(true);
        continue;
      }
      const svc = unit.Service!;
      expect(svc.User).toEqual(["ferry"]);
      for (const cmd of [...(svc.ExecStart ?? []), ...(svc.ExecStartPre ?? [])]) {
        const argv = cmd.split(/\s+/);
        expect(path.isAbsolute(argv[0]!), `${f}: ${cmd}`).toBe(true);
        for (const a of argv.filter((x) => x.startsWith("/opt/ferry/app/") || x.startsWith("/etc/ferry/nats/"))) {
          expect(existsSync(path.join(REPO, repoFileFor(a)!)), `${f}: ${a}`).toBe(true);
        }
      }
      if (f.startsWith("ferry")) {
        expect(svc.EnvironmentFile).toEqual(["-/etc/ferry/ferry.env"]);
        expect(svc.Environment?.join(" ")).toContain("FERRY_CONFIG=/etc/ferry/ferry.json");
      }
    }
    expect(read("infra/systemd/ferry@.service")).toMatch(/^ExecStart=\/usr\/local\/bin\/node \/opt\/ferry\/app\/cli\/ferry\.mjs run %i$/m);
    expect(read("infra/systemd/ferry-all.service")).toMatch(/^ExecStart=.* run all$/m);
    expect(read("infra/systemd/ferry-schedule.service")).toMatch(/^ExecStart=.* schedule$/m);
    // The expiry watch runs daily without `ferry schedule --daemon` too (issue 10).
    expect(read("infra/systemd/ferry-cert-check.service")).toMatch(/^ExecStart=\/usr\/local\/bin\/node \/opt\/ferry\/app\/cli\/ferry\.mjs cert check$/m);
    expect(read("infra/systemd/ferry-hooks.service")).toMatch(/^ExecStart=.* hooks serve --config \/etc\/ferry\/hooks\.json$/m);
    expect(read("infra/systemd/ferry-console.service")).toMatch(/^ExecStart=.* console$/m);

    const analyze = spawnSync("bash", ["-c", "command -v systemd-analyze"], { encoding: "utf8" }).stdout.trim();
    if (analyze) {
      const copy = path.join(dir, "units");
      cpSync(unitsDir, copy, { recursive: true });
      cpSync(path.join(copy, "ferry@.service"), path.join(copy, "ferry@backup-requested.service"));
      const units = ["ferry@backup-requested.service", "ferry-all.service", "ferry-console.service", "ferry-hooks.service", "nats-server.service", "ferry-schedule.service", "ferry-schedule.timer", "ferry-cert-check.service", "ferry-cert-check.timer"];
      const r = spawnSync(analyze, ["verify", ...units.map((u) => path.join(copy, u))], { encoding: "utf8" });
      // Only lines about our files count (verify also reports on the host's own units).
      const ours = r.stderr.split("\n").filter((l) => l.includes(copy));
      expect(ours, r.stderr).toEqual([]);
    }
  });

  it("deploy - the crontab has valid schedule lines for user ferry running ferry schedule", () => {
    const lines = read("infra/cron/ferry.crontab").split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
    const jobs = lines.filter((l) => !/^[A-Z_]+=/.test(l));
    expect(jobs.length).toBeGreaterThan(0);
    for (const job of jobs) {
      const fields = job.trim().split(/\s+/);
      expect(cronProblem(fields.slice(0, 5).join(" ")), job).toBeUndefined();
      expect(fields[5]).toBe("ferry");
    }
    expect(jobs.some((j) => j.includes("node cli/ferry.mjs schedule"))).toBe(true);
    expect(jobs.some((j) => j.includes("node cli/ferry.mjs cert check"))).toBe(true);
    expect(lines).toContain("FERRY_CONFIG=/etc/ferry/ferry.json");
    // Commented examples are valid too.
    for (const ex of read("infra/cron/ferry.crontab").split("\n").filter((l) => /^# [\d*]/.test(l) && l.includes("nats pub"))) {
      expect(cronProblem(ex.slice(2).trim().split(/\s+/).slice(0, 5).join(" ")), ex).toBeUndefined();
    }
  });
});

type Yaml = null | string | number | boolean | Yaml[] | { [k: string]: Yaml };

/**
 * A parser for the YAML subset docker-compose.yml uses (block maps and lists, JSON-style flow
 * lists, quoted and plain scalars, one anchor with a `<<:` merge). It throws on anything else, so
 * the test also guards the file against syntax this check would not understand.
 */
function parseYamlSubset(text: string): Yaml {
  const lines = text
    .split("\n")
    .map((raw, no) => ({ raw, no: no + 1, indent: raw.length - raw.trimStart().length, body: raw.trim() }))
    .filter((l) => l.body && !l.body.startsWith("#"));
  for (const l of lines) if (/\t/.test(l.raw)) throw new Error(`line ${l.no}: tab`);
  const anchors: Record<string, Yaml> = {};
  let i = 0;
  const scalar = (s: string, no: number): Yaml => {
    if (s.startsWith("[")) return JSON.parse(s) as Yaml;
    if (s.startsWith('"')) return JSON.parse(s) as Yaml;
    if (s.startsWith("'")) {
      if (!s.endsWith("'")) throw new Error(`line ${no}: unterminated quote`);
      return s.slice(1, -1);
    }
    if (s.startsWith("*")) {
      if (!(s.slice(1) in anchors)) throw new Error(`line ${no}: unknown alias ${s}`);
      return anchors[s.slice(1)]!;
    }
    if (/[{}&!|>]/.test(s[0]!) || / #/.test(s)) throw new Error(`line ${no}: unsupported syntax: ${s}`);
    if (s === "true" || s === "false") return s === "true";
    if (/^-?\d+$/.test(s)) return Number(s);
    return s;
  };
  const block = (indent: number): Yaml => (lines[i]!.body.startsWith("- ") ? list(indent) : map(indent));
  const value = (rest: string, indent: number, no: number): Yaml => {
    let anchor: string | undefined;
    const m = /^&([\w-]+)\s*(.*)$/.exec(rest);
    if (m) [anchor, rest] = [m[1], m[2]!];
    let v: Yaml;
    if (rest === "") {
      const next = lines[i];
      v = next && next.indent > indent ? block(next.indent) : null;
    } else v = scalar(rest, no);
    if (anchor) anchors[anchor] = v;
    return v;
  };
  function map(indent: number): Yaml {
    const out: { [k: string]: Yaml } = {};
    while (i < lines.length && lines[i]!.indent === indent && !lines[i]!.body.startsWith("- ")) {
      const l = lines[i++]!;
      const m = /^("[^"]+"|[\w.<-]+):(?:\s+(.*))?$/.exec(l.body);
      if (!m) throw new Error(`line ${l.no}: not a "key: value" line: ${l.body}`);
      const key = m[1]!.startsWith('"') ? (JSON.parse(m[1]!) as string) : m[1]!;
      const v = value(m[2] ?? "", indent, l.no);
      if (key === "<<") Object.assign(out, v as object);
      else {
        if (key in out) throw new Error(`line ${l.no}: duplicate key ${key}`);
        out[key] = v;
      }
    }
    if (i < lines.length && lines[i]!.indent > indent) throw new Error(`line ${lines[i]!.no}: unexpected indentation`);
    return out;
  }
  function list(indent: number): Yaml {
    const out: Yaml[] = [];
    while (i < lines.length && lines[i]!.indent === indent && lines[i]!.body.startsWith("- ")) {
      const l = lines[i]!;
      const rest = l.body.slice(2);
      if (/^[\w.-]+:(\s|$)/.test(rest)) {
        // "- key: value" opens a map whose keys sit two columns further in.
        lines[i] = { ...l, indent: indent + 2, body: rest };
        out.push(map(indent + 2));
      } else {
        i++;
        out.push(scalar(rest, l.no));
      }
    }
    return out;
  }
  const doc = map(0);
  if (i !== lines.length) throw new Error(`line ${lines[i]!.no}: not parsed`);
  return doc;
}

describe("Ferry's V8 flags", () => {
  it("deploy - the ferry shebang, every systemd unit that runs ferry and the Dockerfile start Node with cli/node-flags.ts' flags", () => {
    const flags = FERRY_NODE_FLAGS.join(" ");
    expect(read("cli/ferry.mjs").split("\n")[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
    const units = readdirSync(path.join(REPO, "infra/systemd")).filter((f) => f.endsWith(".service") && read(`infra/systemd/${f}`).includes("cli/ferry.mjs"));
    expect(units.length).toBeGreaterThan(4);
    for (const u of units) expect(read(`infra/systemd/${u}`), u).toMatch(new RegExp(`^Environment=.*\\bNODE_OPTIONS=${flags}(\\s|$)`, "m"));
    expect(read("Dockerfile")).toMatch(new RegExp(`^\\s*NODE_OPTIONS=${flags} \\\\$`, "m"));
    // NODE_OPTIONS accepts the flags (Node refuses some V8 options there).
    const r = spawnSync(process.execPath, ["-e", "0"], { env: { ...process.env, NODE_OPTIONS: flags }, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
  });
});

describe("Dockerfile and docker-compose.yml", () => {
  it("deploy - the Dockerfile builds on node:24-bookworm-slim with qemu-utils, nbdkit, libnbd-bin, runs as ferry, with the volumes", () => {
    const df = read("Dockerfile");
    const instructions = df
      .replace(/\\\n/g, " ")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    expect(instructions[0]).toBe("FROM node:24-bookworm-slim");
    const run = instructions.filter((l) => l.startsWith("RUN ")).join("\n");
    for (const pkg of ["qemu-utils", "nbdkit", "libnbd-bin"]) expect(run).toMatch(new RegExp(`apt-get install [^\\n]*\\b${pkg}\\b`));
    expect(run).toContain("npm ci --omit=dev");
    // --omit=dev works only while tsx (which runs the TypeScript) is a runtime dependency.
    const pkg = JSON.parse(read("package.json")) as { dependencies: Record<string, string>; devDependencies?: Record<string, string> };
    expect(pkg.dependencies.tsx).toBeDefined();
    expect(pkg.devDependencies?.tsx).toBeUndefined();
    expect(run).toMatch(/useradd [^\n]*\bferry\b/);
    expect(instructions).toContain("USER ferry");
    expect(instructions).toContain('VOLUME ["/var/lib/ferry/backups", "/etc/ferry"]');
    for (const copy of instructions.filter((l) => l.startsWith("COPY "))) {
      const sources = copy.split(/\s+/).slice(1, -1);
      for (const s of sources) expect(existsSync(path.join(REPO, s)), copy).toBe(true);
    }
    expect(instructions).toContain('ENTRYPOINT ["node", "cli/ferry.mjs"]');
    expect(existsSync(path.join(REPO, "cli/ferry.mjs"))).toBe(true);
    const health = instructions.find((l) => l.startsWith("HEALTHCHECK"))!;
    const groups = /"--check", "([^"]+)"/.exec(health)![1]!.split(",");
    for (const g of groups) expect(CHECK_GROUPS).toContain(g);
    // The build context leaves out node_modules and secrets.
    const ignore = read(".dockerignore").split("\n");
    for (const x of ["node_modules", ".git", "ferry.env"]) expect(ignore).toContain(x);
  });

  it("deploy - docker-compose.yml: NATS with JetStream and a volume, functions and scheduler with healthchecks, paths that exist", () => {
    const doc = parseYamlSubset(read("docker-compose.yml")) as Record<string, any>;
    expect(Object.keys(doc.services)).toEqual(["nats", "functions", "scheduler"]);
    const { nats, functions, scheduler } = doc.services;
    expect(nats.image).toMatch(/^nats:2\.1\d/);
    expect(nats.command).toContain("--jetstream");
    expect(nats.volumes).toEqual(["nats-data:/data"]);
    expect(nats.healthcheck.test.join(" ")).toContain("/healthz?js-enabled-only=true");
    expect(functions.command).toEqual(["run", "all"]);
    // --daemon: also the daily certificate check and summary, which plain `ferry schedule` skips.
    expect(scheduler.entrypoint.join(" ")).toContain("node cli/ferry.mjs schedule --daemon");
    for (const svc of [functions, scheduler]) {
      expect(svc.build).toBe(".");
      expect(svc.depends_on.nats.condition).toBe("service_healthy");
      expect(svc.environment.NATS_URL).toBe("nats://nats:4222");
      expect(svc.volumes).toEqual(["${FERRY_BACKUPS:-ferry-backups}:/var/lib/ferry/backups", "${FERRY_ETC:-./infra/docker/etc}:/etc/ferry"]);
      const groups = (svc.healthcheck.test as string[]).at(-1)!.split(",");
      for (const g of groups) expect(CHECK_GROUPS).toContain(g);
    }
    expect(Object.keys(doc.volumes)).toEqual(["nats-data", "ferry-backups"]);
    // Host paths the defaults name exist in the repository.
    expect(existsSync(path.join(REPO, "infra/docker/etc/ferry.json"))).toBe(true);
    expect(existsSync(path.join(REPO, "infra/docker/etc/certs"))).toBe(true);
    expect(functions.env_file[0].path).toBe("${FERRY_ETC:-./infra/docker/etc}/ferry.env");
    expect(functions.env_file[0].required).toBe(false);
    expect(existsSync(path.join(REPO, "Dockerfile"))).toBe(true);
  });

  it("deploy - the YAML check itself rejects tabs, bad indentation and unknown aliases", () => {
    expect(() => parseYamlSubset("a:\n\tb: 1\n")).toThrow(/tab/);
    expect(() => parseYamlSubset("a: 1\n  b: 2\n")).toThrow(/indentation/);
    expect(() => parseYamlSubset("a:\n  <<: *nope\n")).toThrow(/unknown alias/);
    expect(() => parseYamlSubset("a: 1\na: 2\n")).toThrow(/duplicate key/);
    expect(parseYamlSubset('x: &t\n  k: "v"\ny:\n  <<: *t\n  l:\n    - 1\n    - m: n\n      o: [\"p\"]\n')).toEqual({
      x: { k: "v" },
      y: { k: "v", l: [1, { m: "n", o: ["p"] }] },
    });
  });
});

