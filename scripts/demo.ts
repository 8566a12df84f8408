/**
 * `npm run demo`: Ferry end to end on one machine. A NATS server, the simulated PRD and DR
 * engines, a config for them, `ferry run all`, then the main job driven through the bus: a full
 * and an incremental backup of web01, the restore points listed and verified, and the stored
 * chain read with plain qemu-img. Stops everything at the end, or with --keep runs until Ctrl-C.
 * Every step has a timeout; any failure exits non-zero with the reason.
 */
import { mkdir } from "node:fs/promises";
import { join, relative } from "node:path";
import { execa } from "execa";
import { openBus, type Bus, type Outcome } from "./demo/bus.ts";
import { writeDemoConfig, PRD_PASSWORD_ENV, type DemoConfig } from "./demo/config.ts";
import { startDemoConsole, type DemoConsole } from "./demo/console.ts";
import { prepareDataDir, releaseDataDir, type DemoDirs } from "./demo/data-dir.ts";
import { describeEvent, progressThrottle } from "./demo/describe.ts";
import { ferryEnv, repoRoot, runFerry, startFunctions, type DemoFunctions } from "./demo/functions.ts";
import { createDemoVm, startDemoLab, writeSpread, type DemoLab, type DemoVm } from "./demo/lab.ts";
import { startDemoNats, type DemoNats } from "./demo/nats-server.ts";
import { parseDemoOptions, usage, type DemoOptions } from "./demo/options.ts";
import { createReporter, mib, seconds, StepFailed, type Reporter } from "./demo/report.ts";

const SEC = 1000;
const out = process.stdout;

/** What is running, so cleanup can stop exactly that. */
interface Running {
  nats?: DemoNats;
  lab?: DemoLab;
  functions?: DemoFunctions;
  console?: DemoConsole;
  bus?: Bus;
}

function show(p: string): string {
  const r = relative(process.cwd(), p);
  return r && !r.startsWith("..") ? r : p;
}

async function main(): Promise<number> {
  let opts: DemoOptions;
  try {
    opts = parseDemoOptions(process.argv.slice(2), process.env, process.cwd());
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n\n${usage}`);
    return 2;
  }
  if (opts.help) {
    out.write(usage);
    return 0;
  }

  const stop = new AbortController();
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (stop.signal.aborted) return;
    interrupted = true;
    out.write(`\n${sig}: stopping...\n`);
    stop.abort(new Error(`interrupted (${sig})`));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const started = performance.now();
  const r = createReporter(out, stop.signal);
  const running: Running = {};
  let dirs: DemoDirs | undefined;
  let failed: StepFailed | undefined;
  let cleanStop = true;
  out.write(`Ferry demo (${opts.profile.name} disks${opts.keep ? ", --keep" : ""}): everything goes under ${show(opts.dataDir)}\n`);

  try {
    dirs = await prepareDataDir(opts.dataDir);
    await runDemo(opts, dirs, r, running, stop.signal);
    if (opts.keep && !stop.signal.aborted) {
      r.heading("Running until Ctrl-C (events appear below as they happen)");
      await new Promise<void>((resolve) => stop.signal.addEventListener("abort", () => resolve(), { once: true }));
    }
  } catch (err) {
    failed = err instanceof StepFailed ? err : new StepFailed("setup", err instanceof Error ? err.message : String(err));
    if (interrupted) out.write(`\n✗ Interrupted during: ${failed.step}\n`);
    else {
      out.write(`\n✗ FAILED: ${failed.step}: ${failed.message}\n`);
      if (failed.hint) out.write(`  ${failed.hint}\n`);
      if (running.functions) {
        const problems = await running.functions.problems(10).catch(() => []);
        if (problems.length) out.write(`  Recent warnings/errors of the functions (${show(running.functions.logFile)}):\n${problems.map((p) => `    ${p}`).join("\n")}\n`);
      }
    }
  } finally {
    running.bus?.onEvent(undefined);
    cleanStop = await shutdown(r, running);
    if (dirs) await releaseDataDir(dirs).catch(() => undefined);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }

  if (failed) {
    out.write(`\nDemo failed after ${seconds(performance.now() - started)}. Logs: ${dirs ? show(dirs.logs) : "(none)"}\n`);
    return interrupted ? 130 : 1;
  }
  if (!cleanStop) {
    out.write(`\n✗ Everything worked, but not everything stopped cleanly (see above). Logs: ${dirs ? show(dirs.logs) : "(none)"}\n`);
    return 1;
  }
  r.heading(`Done in ${seconds(performance.now() - started)}`);
  for (const t of r.timings) out.write(`  ${seconds(t.ms).padStart(8)}  ${t.title}\n`);
  if (dirs) out.write(`\nThe data stays in ${show(dirs.root)} until the next run (restore points in ${show(dirs.store)}).\n`);
  return 0;
}

async function runDemo(opts: DemoOptions, dirs: DemoDirs, r: Reporter, running: Running, signal: AbortSignal): Promise<void> {
  const profile = opts.profile;

  const nats = await r.step("Start nats-server with JetStream", 30 * SEC, async (s) => {
    const n = await startDemoNats({ dir: dirs.nats, logDir: dirs.logs, port: opts.natsPort, signal: s });
    running.nats = n;
    r.line(`NATS      ${n.url}  (pid ${n.pid})`);
    r.line(`config    ${show(n.confFile)}   store ${show(join(dirs.nats, "js"))}   log ${show(n.logFile)}`);
    return n;
  });

  const lab = await r.step("Start the lab: simulated PRD and DR oVirt engines with imageio", 60 * SEC, async () => {
    const l = await startDemoLab(dirs.lab);
    running.lab = l;
    for (const e of [l.prd, l.dr]) {
      r.line(`${e.name.toUpperCase().padEnd(4)} engine ${e.url}/ovirt-engine/api   imageio ${e.imageioUrl}`);
      r.line(`     CA ${show(e.caFile)}   user ${e.user}   lab control ${e.controlUrl}`);
    }
    r.line(`lab state ${show(dirs.lab)} (for 'ferry lab ... --data ${show(dirs.lab)}': ${show(l.labFile)})`);
    return l;
  });

  const vms = await r.step(`Create VMs on PRD and write guest data`, 120 * SEC, async () => {
    const made: Array<DemoVm & { written: number }> = [];
    for (const [i, plan] of profile.vms.entries()) {
      const vm = await createDemoVm(lab.prd, plan, 1000 * (i + 1));
      r.line(`${vm.name} (${vm.id}): ${vm.disks.map((d) => `${d.alias} ${mib(d.size)}`).join(", ")}, qcow2, incremental backup on; ${mib(vm.written)} of guest data written`);
      made.push(vm);
    }
    return made;
  });
  const web01 = vms.find((v) => v.name === "web01")!;
  const aliases = new Map<string, string>(vms.flatMap((v) => v.disks.map((d) => [d.id, d.alias] as [string, string])));

  const config = await r.step("Write the Ferry config and validate it (config/load.ts)", 20 * SEC, async () => {
    const c = await writeDemoConfig({ dirs, prd: lab.prd, dr: lab.dr, natsUrl: nats.url, vms: vms.map((v) => v.name) });
    printConfig(r, c, dirs);
    return c;
  });

  await r.step("Start Ferry's functions: ferry run all", 90 * SEC, async (s) => {
    const f = await startFunctions({ configFile: config.file, natsUrl: nats.url, logDir: dirs.logs, signal: s, timeoutMs: 80 * SEC });
    running.functions = f;
    r.line(`$ ferry run all --config ${show(config.file)}`);
    r.line(`pid ${f.pid}: ${f.functions.join(", ")} (one durable consumer each; streams and KV buckets provisioned)`);
    r.line(`JSON logs ${show(f.logFile)}`);
    if (f.metricsUrl) r.line(`metrics   ${f.metricsUrl}  (Prometheus; try: curl -s ${f.metricsUrl} | grep ^ferry_vm_)`);
    return f;
  });

  await r.step("Start the web console: ferry console, with an operator user for this run", 60 * SEC, async (s) => {
    const c = await startDemoConsole({ configFile: config.file, natsUrl: nats.url, usersFile: config.consoleUsersFile, logDir: dirs.logs, signal: s, timeoutMs: 50 * SEC });
    running.console = c;
    r.line(`$ ferry console --config ${show(config.file)}`);
    r.line(`pid ${c.pid}: ${c.url}   user ${c.login.user} (operator; a random password, shown at the end)`);
    r.line(`users ${show(config.consoleUsersFile)} (scrypt hashes, 0600)   audit ${show(config.consoleAuditFile)}   log ${show(c.logFile)}`);
  });

  const bus = await openBus(nats.url);
  running.bus = bus;
  const showProgress = progressThrottle(2 * SEC);
  bus.onEvent((e) => {
    if (showProgress(e)) r.line(`→ ${e.subject.padEnd(17)} ${describeEvent(e, aliases)}`);
  });

  const full = await r.step("Full backup of web01: publish backup.requested {\"vm\":\"web01\"}, wait for backup.completed", profile.backupTimeoutMs, async (s) => {
    r.line(`publishing {"vm":"web01"} as raw bytes without headers — what  nats pub backup.requested '{"vm":"web01"}'  sends`);
    const ack = await bus.publishRaw("backup.requested", '{"vm":"web01"}', s);
    r.line(`stored as ${ack.stream} #${ack.seq}; the runtime names it ${ack.correlationId} (the correlation id of every event it causes)`);
    return expectCompleted(await bus.waitOutcome(ack.correlationId, s), "full");
  });

  await r.step("More guest writes on web01", 60 * SEC, async () => {
    const a = await writeSpread(lab.prd, web01.disks[0]!.id, web01.disks[0]!.size, profile.changedData, 5000);
    const b = web01.disks[1] ? await writeSpread(lab.prd, web01.disks[1].id, web01.disks[1].size, 1024 * 1024, 6000) : 0;
    r.line(`wrote ${mib(a)} to ${web01.disks[0]!.alias} and ${mib(b)} to ${web01.disks[1]?.alias ?? "-"} (the engine's checkpoint bitmaps mark those blocks dirty)`);
  });

  const env = ferryEnv(config.file, nats.url);
  const incremental = await r.step("Incremental backup of web01: ferry publish backup.requested '{\"vm\":\"web01\"}'", profile.backupTimeoutMs, async (s) => {
    const id = `demo-web01-${Date.now()}`;
    const p = await runFerry(["publish", "backup.requested", '{"vm":"web01"}', "--id", id, "--json"], { env, timeoutMs: 60 * SEC, signal: s });
    if (p.code !== 0) throw new Error(`ferry publish exited ${p.code}: ${p.stderr.trim()}`);
    r.line(`ferry publish: ${p.stdout.trim()}`);
    const o = expectCompleted(await bus.waitOutcome(id, s), "incremental");
    r.line(`the incremental stored ${mib(Number(o.event.bytes ?? 0))}, the full ${mib(Number(full.event.bytes ?? 0))}`);
    return o;
  });

  await r.step("ferry checkpoints web01", 60 * SEC, async (s) => {
    const c = await runFerry(["checkpoints", "web01", "--config", config.file], { env, timeoutMs: 50 * SEC, signal: s });
    if (c.stdout) r.block(c.stdout);
    if (c.code !== 0) throw new Error(`ferry checkpoints exited ${c.code}: ${c.stderr.trim()}`);
    if (!/\b2 restore points\b/.test(c.stdout)) throw new Error("expected 2 restore points for web01");
  });

  await r.step("ferry verify web01 (re-read every restore point through its chain, compare block digests)", 120 * SEC, async (s) => {
    const v = await runFerry(["verify", "web01", "--config", config.file], { env, timeoutMs: 110 * SEC, signal: s });
    if (v.stdout) r.block(v.stdout);
    if (v.code !== 0) throw new Error(`ferry verify exited ${v.code}: ${(v.stderr || v.stdout).trim().slice(-500)}`);
  });

  await r.step("Plain qemu-img reads the stored chain", 120 * SEC, async (s) => {
    const d = incremental.disks.find((x) => (x.disk as { id: string }).id === web01.disks[0]!.id) ?? incremental.disks[0];
    if (!d) throw new Error("the incremental backup reported no disk");
    const top = join(dirs.store, (d.layer as { path: string }).path);
    const diskId = (d.disk as { id: string }).id;
    r.line(`$ qemu-img info --backing-chain -f qcow2 ${show(top)}`);
    const info = await execa("qemu-img", ["info", "--backing-chain", "-f", "qcow2", top], { cancelSignal: s, reject: false });
    if (info.exitCode !== 0) throw new Error(`qemu-img info failed: ${info.stderr}`);
    r.block(info.stdout);
    const exported = join(dirs.root, "exports", `${aliases.get(diskId) ?? diskId}-at-backup.raw`);
    await mkdir(join(dirs.root, "exports"), { recursive: true });
    await lab.prd.control.exportImage(diskId, exported, { format: "raw", atBackup: String(d.backupId) });
    r.line(`the lab's own copy of that disk as of the incremental backup: ${show(exported)}`);
    r.line(`$ qemu-img compare -f raw -F qcow2 ${show(exported)} ${show(top)}`);
    const cmp = await execa("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", exported, top], { cancelSignal: s, reject: false });
    r.block(`${cmp.stdout}${cmp.stderr}`);
    if (cmp.exitCode !== 0) throw new Error(`the stored chain differs from the engine's disk (qemu-img compare exit ${cmp.exitCode})`);
  });

  await r.step("Restore web01's latest point onto the DR engine: publish restore.requested {\"vm\":\"web01\"}", profile.backupTimeoutMs, async (s) => {
    const ack = await bus.publishRaw("restore.requested", '{"vm":"web01"}', s);
    const o = await bus.waitOutcome(ack.correlationId, s);
    if (o.subject !== "restore.completed") throw new Error(`${o.subject}: ${String(o.event.code ?? o.event.reason)}: ${String(o.event.message ?? "")}`);
    r.line(`DR VM ${String(o.event.name)} (${String(o.event.vmId)}), ${mib(Number(o.event.bytes ?? 0))} uploaded in ${Number(o.event.seconds ?? 0).toFixed(1)} s`);
    const point = incremental.chain?.restorePoint as { disks: { id: string; checksum: { value: string }; layer: { path: string } }[] } | undefined;
    for (const d of (o.event.disks as { alias: string; sourceId: string; id: string; checksum: string }[]) ?? []) {
      const want = point?.disks.find((x) => x.id === d.sourceId);
      const same = want?.checksum.value === d.checksum;
      r.line(`${d.alias}: imageio checksum on DR ${d.checksum.slice(0, 16)}… ${same ? "= the restore point's" : "≠ the restore point's"}`);
      if (!same || !want) throw new Error(`restored disk ${d.alias} differs from the restore point`);
      // And byte for byte: the DR disk against the stored chain, with plain qemu-img.
      const exported = join(dirs.root, "exports", `${d.alias}-on-dr.raw`);
      await lab.dr.control.exportImage(d.id, exported, { format: "raw" });
      const cmp = await execa("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", exported, join(dirs.store, want.layer.path)], { cancelSignal: s, reject: false });
      r.line(`$ qemu-img compare ${show(exported)} <stored chain>: ${(cmp.stdout || cmp.stderr).trim()}`);
      if (cmp.exitCode !== 0) throw new Error(`the DR disk ${d.alias} differs from the stored chain`);
    }
  });

  printHandDriving(r, opts, dirs, nats, config, running.functions?.metricsUrl);
  if (running.console) printConsole(r, opts, running.console);
}

function expectCompleted(o: Outcome, kind: "full" | "incremental"): Outcome {
  if (o.subject === "backup.completed") {
    if (o.event.kind !== kind) throw new Error(`expected a ${kind} backup, got ${String(o.event.kind)}`);
    return o;
  }
  if (o.subject === "backup.failed") throw new Error(`backup.failed: ${String(o.event.code)}: ${String(o.event.message)}`);
  throw new Error(`backup.requested.rejected: ${String(o.event.reason)}`);
}

function printConfig(r: Reporter, c: DemoConfig, dirs: DemoDirs): void {
  r.line(`config    ${show(c.file)} (0600)`);
  r.line(`secrets   PRD password: ${PRD_PASSWORD_ENV} in ${show(c.envFile)} (0600, read by every ferry command)`);
  r.line(`          DR password:  passwordFile ${show(c.drPasswordFile)} (0600)`);
  r.line(`store     ${show(dirs.store)}`);
  r.line(`engines   ${Object.entries(c.loaded.engines).map(([n, e]) => `${n} ${e.url}`).join(", ")}`);
  r.line(`VMs       ${Object.entries(c.loaded.vms).map(([n, p]) => `${n} (retention ${JSON.stringify(p.retention)}, a full at least every ${p.full.maxChainLength} layers${p.full.weeklyDay ? ` and on ${p.full.weeklyDay}` : ""})`).join("; ")}`);
}

function printHandDriving(r: Reporter, opts: DemoOptions, dirs: DemoDirs, nats: DemoNats, c: DemoConfig, metricsUrl: string | undefined): void {
  r.heading(opts.keep ? "Drive it by hand (in another terminal, while this runs)" : "Drive it by hand (run the demo with --keep to keep everything up)");
  const lines = [
    `cd ${repoRoot.replace(/\/$/, "")}`,
    `export FERRY_CONFIG=${show(c.file)} NATS_URL=${nats.url}`,
    `alias ferry="node $PWD/cli/ferry.mjs"`,
    `ferry events                                     # follow the bus`,
    `ferry publish backup.requested '{"vm":"web01"}'  # same as: nats pub backup.requested '{"vm":"web01"}'`,
    `ferry backup db01 --wait                         # publish and follow one run`,
    `ferry lab write web01 --offset 0 --length 4194304 --seed 7 --data ${show(dirs.lab)}`,
    `ferry checkpoints web01; ferry verify web01; ferry status`,
    `ferry publish restore.requested '{"vm":"web01","checkpoint":1,"name":"web01_first"}'`,
    `ferry lab status --data ${show(dirs.lab)}`,
    ...(metricsUrl ? [`curl -s ${metricsUrl} | grep -E '^ferry_(vm|function)_'   # Prometheus metrics of ferry run`] : []),
  ];
  for (const l of lines) out.write(`  ${l}\n`);
}

/** The console's address and this run's login: printed here on purpose, and nowhere else. */
function printConsole(r: Reporter, opts: DemoOptions, c: DemoConsole): void {
  r.heading(opts.keep ? "Web console (open it in a browser while this runs)" : "Web console (it stops with the demo; run with --keep to keep it up)");
  out.write(`  URL       ${c.url}\n`);
  out.write(`  login     user ${c.login.user}   password ${c.login.password}   (operator; made for this run only)\n`);
}

async function bounded(what: string, ms: number, fn: () => Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([fn(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`did not stop within ${ms / 1000} s`)), ms)))]);
    out.write(`  ${what} stopped\n`);
    return true;
  } catch (err) {
    out.write(`  ✗ ${what}: ${(err as Error).message}\n`);
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** Stops what runs, newest first; false when something did not stop cleanly. */
async function shutdown(r: Reporter, running: Running): Promise<boolean> {
  if (!running.nats && !running.lab && !running.functions && !running.console) return true;
  r.heading("Stopping");
  const t0 = performance.now();
  let ok = true;
  if (running.bus) await running.bus.close().catch(() => undefined);
  // A ferry child stopped cleanly exits 0 on SIGTERM; anything else is reported with its log.
  const stopFerry = (what: string, ms: number, p: { stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>; logFile: string }) =>
    bounded(`${what} (SIGTERM)`, ms, async () => {
      const res = await p.stop();
      if (res.code !== 0) throw new Error(`exited ${res.signal ?? `with code ${res.code}`} (log: ${show(p.logFile)})`);
    });
  if (running.console) ok = (await stopFerry("console", 20 * SEC, running.console)) && ok;
  if (running.functions) ok = (await stopFerry("functions", 40 * SEC, running.functions)) && ok;
  if (running.lab) ok = (await bounded("lab (engines, imageio, qemu-nbd)", 30 * SEC, () => running.lab!.stop())) && ok;
  if (running.nats) ok = (await bounded("nats-server", 20 * SEC, () => running.nats!.stop())) && ok;
  out.write(`  (${seconds(performance.now() - t0)})\n`);
  return ok;
}

const code = await main();
// Nothing should be left, but a stray handle must never keep the demo alive.
process.exit(code);
