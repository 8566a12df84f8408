/**
 * infra/setup.sh against a sandbox: a copy of the script in a temp "repo", a PATH holding only
 * the basic system tools plus stubs for node, nats-server, npm, apt-get and dpkg that record
 * their calls and act like the real ones (create the files the real ones would). Installs go
 * to FERRY_NODE_PREFIX / FERRY_BIN_DIR inside the sandbox, so the machine is never touched.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const SYSTEM_TOOLS = [
  "sed", "sort", "head", "id", "uname", "mktemp", "rm", "dirname", "ls", "find", "install", "mv",
  "mkdir", "ln", "tail", "flock", "cat", "awk", "touch", "chmod", "grep",
];
const BASH = execFileSync("bash", ["-c", "command -v bash"], { encoding: "utf8" }).trim();
const NODE_PKG = `node-linux-${process.arch === "arm64" ? "arm64" : "x64"}`;

interface Sandbox {
  dir: string;
  repo: string;
  bin: string;
  calls: string;
  prefix: string;
}

const sandboxes: string[] = [];
afterEach(() => {
  for (const d of sandboxes.splice(0)) rmSync(d, { recursive: true, force: true });
});

function stub(file: string, body: string): void {
  writeFileSync(file, `#!${BASH}\n${body}\n`, { mode: 0o755 });
}

function makeSandbox(o: {
  node?: string;
  nats?: string;
  tools: ("qemu-img" | "qemu-nbd" | "nbdkit" | "nbdinfo" | "nbdcopy" | "promtool")[];
  nodeModules: "fresh" | "stale" | "missing";
  trixieFails?: boolean;
  aptListsStale?: boolean;
}): Sandbox {
  const dir = mkdtempSync(path.join(tmpdir(), "ferry-setup-test-"));
  sandboxes.push(dir);
  const repo = path.join(dir, "repo");
  const bin = path.join(dir, "bin");
  const calls = path.join(dir, "calls.log");
  const prefix = path.join(dir, "opt-node24");
  mkdirSync(path.join(repo, "infra"), { recursive: true });
  mkdirSync(bin);
  mkdirSync(path.join(dir, "tmp"), { mode: 0o1777 });
  chmodSync(path.join(dir, "tmp"), 0o1777);
  writeFileSync(calls, "");
  writeFileSync(path.join(repo, "infra", "setup.sh"), readFileSync(path.join(REPO, "infra", "setup.sh")));
  writeFileSync(path.join(repo, "package-lock.json"), "{}\n");
  const lockTime = new Date(Date.now() - 60_000);
  utimesSync(path.join(repo, "package-lock.json"), lockTime, lockTime);
  if (o.nodeModules !== "missing") {
    mkdirSync(path.join(repo, "node_modules"));
    writeFileSync(path.join(repo, "node_modules", ".package-lock.json"), "{}\n");
    const t = o.nodeModules === "fresh" ? new Date(lockTime.getTime() + 30_000) : new Date(lockTime.getTime() - 30_000);
    utimesSync(path.join(repo, "node_modules", ".package-lock.json"), t, t);
  }
  for (const tool of SYSTEM_TOOLS) {
    symlinkSync(execFileSync("bash", ["-c", `command -v ${tool}`], { encoding: "utf8" }).trim(), path.join(bin, tool));
  }
  if (o.node) stub(path.join(bin, "node"), `echo v${o.node}`);
  if (o.nats) stub(path.join(bin, "nats-server"), `echo "nats-server: v${o.nats}"`);
  for (const t of o.tools) stub(path.join(bin, t), "echo stub");
  if (o.trixieFails) writeFileSync(path.join(dir, "trixie-fails"), "");
  if (o.aptListsStale) writeFileSync(path.join(dir, "apt-lists-stale"), "");

  // npm: `install --prefix P ... PKG@24` creates P/node_modules/PKG/bin/node; `ci` creates node_modules.
  stub(
    path.join(bin, "npm"),
    `echo "npm $*" >> ${calls}
if [ "$1" = ci ]; then mkdir -p node_modules && touch node_modules/.package-lock.json; exit 0; fi
if [ "$1" = install ]; then
  prefix=""; pkg=""; prev=""
  for a in "$@"; do [ "$prev" = --prefix ] && prefix=$a; prev=$a; pkg=$a; done
  mkdir -p "$prefix/node_modules/\${pkg%@*}/bin"
  printf '#!${BASH}\\necho v24.99.0\\n' > "$prefix/node_modules/\${pkg%@*}/bin/node"
  chmod +x "$prefix/node_modules/\${pkg%@*}/bin/node"
fi`,
  );
  // apt-get: private (trixie) or system update/download/install, with the failures a test asks for.
  stub(
    path.join(bin, "apt-get"),
    `private=0; for a in "$@"; do case "$a" in Dir::Etc::SourceList=*) private=1; srclist=\${a#*=};; esac; done
if [ $private = 1 ]; then echo "apt-get(private) $*" >> ${calls}; else echo "apt-get $*" >> ${calls}; fi
for a in "$@"; do
  case "$a" in
    update)
      if [ $private = 1 ]; then grep -q ' trixie main' "$srclist" || exit 100; [ -e ${dir}/trixie-fails ] && { echo "E: no Release file" >&2; exit 100; }
      else rm -f ${dir}/apt-lists-stale; fi
      exit 0;;
    download)
      if [ "\${@: -1}" = prometheus ]; then echo 2.42.0 > prometheus_2.42.0+ds-5+deb12u1_amd64.deb; exit 0; fi
      if [ $private = 1 ]; then echo 2.10.27 > nats-server_2.10.27-1_amd64.deb
      else [ -e ${dir}/apt-lists-stale ] && { echo "E: Unable to locate package nats-server" >&2; exit 100; }; echo 2.9.10 > nats-server_2.9.10-1_amd64.deb; fi
      exit 0;;
    install)
      [ -e ${dir}/apt-lists-stale ] && { echo "E: Unable to locate package" >&2; exit 100; }
      for p in "$@"; do case "$p" in
        qemu-utils) for t in qemu-img qemu-nbd; do printf '#!${BASH}\\necho stub\\n' > ${bin}/$t; chmod +x ${bin}/$t; done;;
        nbdkit) printf '#!${BASH}\\necho stub\\n' > ${bin}/nbdkit; chmod +x ${bin}/nbdkit;;
        libnbd-bin) for t in nbdinfo nbdcopy; do printf '#!${BASH}\\necho stub\\n' > ${bin}/$t; chmod +x ${bin}/$t; done;;
      esac; done
      exit 0;;
  esac
done`,
  );
  // dpkg -x DEB DIR: unpacks a nats-server that reports the version written in the fake .deb.
  stub(
    path.join(bin, "dpkg"),
    `echo "dpkg $*" >> ${calls}
[ "$1" = -x ] || exit 1
case "$2" in *prometheus_*) mkdir -p "$3/usr/bin"; printf '#!${BASH}\\necho "promtool, version %s"\\n' "$(cat "$2")" > "$3/usr/bin/promtool"; chmod +x "$3/usr/bin/promtool"; exit 0;; esac
mkdir -p "$3/usr/sbin"
printf '#!${BASH}\\necho "nats-server: v%s"\\n' "$(cat "$2")" > "$3/usr/sbin/nats-server"
chmod +x "$3/usr/sbin/nats-server"`,
  );
  return { dir, repo, bin, calls, prefix };
}

function runSetup(sb: Sandbox, args: string[], o: { asNobody?: boolean } = {}) {
  const env = {
    PATH: sb.bin,
    HOME: sb.dir,
    TMPDIR: path.join(sb.dir, "tmp"),
    FERRY_NODE_PREFIX: sb.prefix,
    FERRY_BIN_DIR: sb.bin,
  };
  const script = path.join(sb.repo, "infra", "setup.sh");
  let cmd = BASH;
  let argv = [script, ...args];
  if (o.asNobody && process.getuid?.() === 0) {
    execFileSync("chmod", ["-R", "a+rwX", sb.dir]);
    cmd = execFileSync("bash", ["-c", "command -v setpriv"], { encoding: "utf8" }).trim();
    argv = ["--reuid=65534", "--regid=65534", "--clear-groups", BASH, script, ...args];
  }
  const started = performance.now();
  const r = spawnSync(cmd, argv, { env, cwd: sb.dir, encoding: "utf8", timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - started, calls: readFileSync(sb.calls, "utf8") };
}

const ALL_TOOLS = ["qemu-img", "qemu-nbd", "nbdkit", "nbdinfo", "nbdcopy", "promtool"] as const;

describe("infra/setup.sh", () => {
  it("setup - prints nothing with --quiet and calls no installer when everything is present", () => {
    const sb = makeSandbox({ node: "24.21.0", nats: "2.10.27", tools: [...ALL_TOOLS], nodeModules: "fresh" });
    const r = runSetup(sb, ["--quiet"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe("");
    expect(r.calls).toBe("");
    // ~30 ms when idle; the bound leaves room for a machine busy with other test runs.
    expect(r.ms).toBeLessThan(2500);
    const loud = runSetup(sb, []);
    expect(loud.stdout).toMatch(/ok: node 24\.21\.0, nats-server 2\.10\.27/);
  });

  it("setup - --check lists exactly what is missing and installs nothing", () => {
    const sb = makeSandbox({ node: "20.11.1", tools: ["qemu-img", "qemu-nbd", "nbdinfo", "nbdcopy"], nodeModules: "stale" });
    const r = runSetup(sb, ["--check"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("Node.js >= 24 (found: 20.11.1)");
    expect(r.stdout).toContain("nats-server >= 2.10 (found: none)");
    expect(r.stdout).toContain("Debian packages: nbdkit\n");
    expect(r.stdout).toContain("npm dependencies");
    expect(r.stdout).not.toContain("qemu-utils");
    expect(r.stdout).not.toContain("libnbd-bin");
    expect(r.calls).toBe("");
    expect(existsSync(path.join(sb.bin, "nats-server"))).toBe(false);
  });

  it("setup - as root installs Node 24 from npm, nats-server from trixie, apt packages and npm deps, then is a no-op", () => {
    const sb = makeSandbox({ node: "20.11.1", tools: [], nodeModules: "missing" });
    const r = runSetup(sb, ["--quiet"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const calls = r.calls.split("\n");
    // Node exactly as the lead did it by hand.
    expect(calls).toContainEqual(expect.stringMatching(new RegExp(`^npm install --prefix ${sb.prefix} --no-save .*${NODE_PKG}@24$`)));
    expect(readlinkSync(path.join(sb.bin, "node"))).toBe(path.join(sb.prefix, "node_modules", NODE_PKG, "bin", "node"));
    // nats-server via a private apt config: own sources (trixie), lists and cache; system sources untouched.
    const privateUpdate = calls.find((c) => c.startsWith("apt-get(private)") && c.endsWith(" update -q"));
    expect(privateUpdate).toBeDefined();
    expect(privateUpdate).toContain("Dir::Etc::SourceParts=/dev/null");
    expect(privateUpdate).toMatch(/Dir::State::Lists=\S*ferry-setup\.\w+\/lists/);
    expect(privateUpdate).toMatch(/Dir::Cache=\S*ferry-setup\.\w+\/cache/);
    expect(calls).toContainEqual(expect.stringMatching(/^apt-get\(private\) .* download nats-server$/));
    expect(calls).toContainEqual(expect.stringMatching(/^dpkg -x \S+nats-server_2\.10\.27-1_amd64\.deb /));
    expect(execFileSync(path.join(sb.bin, "nats-server"), ["--version"], { encoding: "utf8" })).toContain("v2.10.27");
    // apt packages in one install, without an update (the lists were fine).
    expect(calls).toContainEqual("apt-get install -y -q --no-install-recommends qemu-utils nbdkit libnbd-bin");
    expect(calls.filter((c) => c === "apt-get update -q")).toHaveLength(0);
    // promtool: only the tool, out of Debian's prometheus package (no Prometheus server installed).
    expect(calls).toContainEqual("apt-get -o APT::Sandbox::User=root download prometheus");
    expect(calls).toContainEqual(expect.stringMatching(/^dpkg -x \S+prometheus_2\.42\.0\+ds-5\+deb12u1_amd64\.deb /));
    expect(execFileSync(path.join(sb.bin, "promtool"), ["--version"], { encoding: "utf8" })).toContain("promtool, version 2.42.0");
    expect(calls).toContainEqual(expect.stringMatching(/^npm ci /));
    // --quiet prints only what it installs.
    for (const line of r.stdout.trim().split("\n")) expect(line).toMatch(/^ferry setup: (installing|node .* linked|nats-server .* installed)/);
    expect(r.stdout).toContain("installing qemu-utils nbdkit libnbd-bin (apt)");
    // Its temp dirs (private apt lists, the .deb, logs) are gone; only the lock file stays.
    expect(readdirSync(path.join(sb.dir, "tmp"))).toEqual([`ferry-setup-${process.getuid?.() ?? 0}.lock`]);

    const again = runSetup(sb, ["--quiet"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe("");
    expect(again.calls).toBe(r.calls);
  });

  it("setup - falls back to Debian 12's nats-server 2.9 with a warning, updating apt lists once, and keeps it afterwards", () => {
    const sb = makeSandbox({ node: "24.21.0", tools: [...ALL_TOOLS], nodeModules: "fresh", trixieFails: true, aptListsStale: true });
    const r = runSetup(sb, ["--quiet"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: could not fetch Debian 13's nats-server .*falling back to Debian 12's nats-server 2\.9/);
    expect(r.stdout).toContain("nats-server 2.9.10 (fallback) installed");
    const calls = r.calls.split("\n");
    expect(calls.filter((c) => c === "apt-get update -q")).toHaveLength(1);
    expect(calls).toContainEqual(expect.stringMatching(/^apt-get -o APT::Sandbox::User=root download nats-server$/));
    expect(execFileSync(path.join(sb.bin, "nats-server"), ["--version"], { encoding: "utf8" })).toContain("v2.9.10");
    expect(readdirSync(path.join(sb.dir, "tmp")).filter((f) => f.startsWith("ferry-setup."))).toEqual([]);

    const again = runSetup(sb, ["--quiet"]);
    expect(again.code).toBe(0);
    expect(again.stdout + again.stderr).toBe("");
    expect(again.calls).toBe(r.calls);
  });

  it("setup - runs only npm ci when package-lock.json is newer than node_modules", () => {
    const sb = makeSandbox({ node: "24.21.0", nats: "2.10.27", tools: [...ALL_TOOLS], nodeModules: "stale" });
    const r = runSetup(sb, ["--quiet"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("ferry setup: installing npm dependencies (npm ci)\n");
    expect(r.calls).toMatch(/^npm ci --no-audit --no-fund --loglevel=error\n$/);
  });

  it("setup - without root names what to install, exits 1 and installs nothing", () => {
    const sb = makeSandbox({ node: "24.21.0", tools: ["nbdkit", "nbdinfo", "nbdcopy"], nodeModules: "fresh" });
    const r = runSetup(sb, ["--quiet"], { asNobody: true });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("installing them needs root");
    expect(r.stderr).toContain("- nats-server >= 2.10");
    expect(r.stderr).toContain("sudo apt-get install qemu-utils");
    expect(r.stderr).toContain("sudo bash infra/setup.sh");
    expect(r.calls).toBe("");
    expect(existsSync(path.join(sb.bin, "nats-server"))).toBe(false);
  });

  it("setup - rejects unknown options with exit 2", () => {
    const sb = makeSandbox({ node: "24.21.0", nats: "2.10.27", tools: [...ALL_TOOLS], nodeModules: "fresh" });
    const r = runSetup(sb, ["--frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--frobnicate'");
  });
});

describe(".ci/run", () => {
  it("setup - .ci/run is an executable bash script that runs npm test from the repo root", () => {
    const file = path.join(REPO, ".ci", "run");
    const text = readFileSync(file, "utf8");
    expect(text.startsWith("#!/usr/bin/env bash\n")).toBe(true);
    expect(text).toMatch(/^set -euo pipefail$/m);
    expect(text).toMatch(/^cd "\$\(dirname "\$\{BASH_SOURCE\[0\]\}"\)\/\.\."$/m);
    expect(text).toMatch(/^exec npm test\b/m);
    // Syntax check without running it.
    expect(spawnSync(BASH, ["-n", file]).status).toBe(0);
    expect(spawnSync(BASH, ["-n", path.join(REPO, "infra", "setup.sh")]).status).toBe(0);
  });

  it("setup - package.json scripts run the setup script quietly before test, demo, bench and chaos; bench and chaos keep its lines off stdout (one JSON document there)", () => {
    const pkg = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as { scripts: Record<string, string> };
    for (const s of ["test", "demo"]) expect(pkg.scripts[s]).toMatch(/^bash infra\/setup\.sh --quiet && /);
    for (const s of ["bench", "chaos"]) expect(pkg.scripts[s]).toMatch(/^bash infra\/setup\.sh --quiet >&2 && /);
  });
});
