/**
 * infra/nats/auth.conf on a real nats-server: the functions user (account FERRY) can do what the
 * runtime does; the operator user (account OPERATORS) can publish the three commands, hear the
 * outcomes and read copies of the streams and buckets, and nothing it sends can land on a fact,
 * an outcome or a KV record in FERRY: not by publishing there, not by a KV put, and not by
 * choosing a reply subject the server would answer to (which one account cannot prevent).
 * The hooks user (account OPERATORS, `ferry hooks serve`) adds ovirt.event to the two commands,
 * and nothing else; the operator still cannot publish ovirt.event.
 */
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { PermissionViolationError, type NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { followBus, provisionInfra, type BusEvent } from "../adapters/nats/mod.ts";
import { contractFor } from "../contracts/mod.ts";
import { runFunctions } from "../functions/runtime/mod.ts";
import { bucketDefinitions, coreOnlySubjects, streams } from "../infra/streams/mod.ts";
import { ensureOperatorMirrors, operatorBuckets, operatorStreams } from "../infra/nats/operator-mirrors.ts";
import { createProbe } from "./fixtures/functions/probe/main.ts";
import { collect } from "./harness/collect.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { waitFor } from "./harness/wait-for.ts";

const repo = fileURLToPath(new URL("../", import.meta.url));
const ferry = join(repo, "cli/ferry.mjs");
const AUTH_CONF = join(repo, "infra/nats/auth.conf");
const PASSWORDS = {
  FERRY_NATS_FUNCTIONS_PASSWORD: "pFunctions0test",
  FERRY_NATS_OPERATOR_PASSWORD: "pOperator0test",
  FERRY_NATS_OPS_ADMIN_PASSWORD: "pAdmin0test",
  FERRY_NATS_HOOKS_PASSWORD: "pHooks0test",
};
// auth.conf reads the passwords from nats-server's environment, which is this process's.
Object.assign(process.env, PASSWORDS);

const commands = [...streams.commands.subjects];
const notCommands = [...streams.events.subjects];

let server: NatsServer;
let fn: NatsConnection;
let op: NatsConnection;
let hooks: NatsConnection;
let admin: NatsConnection;
let fjsm: JetStreamManager;
let dir: string;
const opErrors: Error[] = [];
const hookErrors: Error[] = [];
const fnErrors: Error[] = [];

async function as(user: string, password: string, errors?: Error[]): Promise<NatsConnection> {
  const nc = await connect({ servers: server.url, user, pass: password, name: `test-${user}`, timeout: 5000 });
  if (errors) {
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push(s.error);
    })();
  }
  return nc;
}

const permissionErrorsFor = (errors: Error[], subject: string) =>
  errors.filter((e) => e instanceof PermissionViolationError && e.subject === subject && e.operation === "publish");

/** The last message FERRY stores on `subject`, or undefined. */
async function lastStored(stream: string, subject: string): Promise<string | undefined> {
  const m = await fjsm.streams.getMessage(stream, { last_by_subj: subject }).catch(() => undefined);
  return m ? new TextDecoder().decode(m.data) : undefined;
}

function runFerry(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ferry, ...args], { cwd: repo, env: { ...process.env, FERRY_CONFIG: "", NATS_URL: "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`ferry ${args.join(" ")} timed out: ${stdout} ${stderr}`));
    }, 30_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ferry-nats-auth-"));
  server = await startNatsServer({ include: AUTH_CONF });
  fn = await as("functions", PASSWORDS.FERRY_NATS_FUNCTIONS_PASSWORD, fnErrors);
  fjsm = await jetstreamManager(fn);
  await provisionInfra(fn, fjsm);
  admin = await as("ops-admin", PASSWORDS.FERRY_NATS_OPS_ADMIN_PASSWORD);
  await ensureOperatorMirrors(admin);
  op = await as("operator", PASSWORDS.FERRY_NATS_OPERATOR_PASSWORD, opErrors);
  hooks = await as("hooks", PASSWORDS.FERRY_NATS_HOOKS_PASSWORD, hookErrors);
});

afterAll(async () => {
  for (const nc of [hooks, op, admin, fn]) await nc?.close().catch(() => undefined);
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("infra/nats/auth.conf", () => {
  it("nats - nats-server accepts single-auth.conf and a cluster node with auth.conf, and refuses to start without the passwords", () => {
    const conf = join(dir, "single");
    spawnSync("mkdir", ["-p", conf]);
    for (const f of ["auth.conf", "single-auth.conf"]) copyFileSync(join(repo, "infra/nats", f), join(conf, f));
    writeFileSync(join(conf, "single.conf"), readFileSync(join(repo, "infra/nats/single.conf"), "utf8").replace('"/var/lib/ferry/nats"', JSON.stringify(join(dir, "js"))));
    const node = readFileSync(join(repo, "infra/nats/cluster/nats-1.conf"), "utf8");
    expect(node).toContain("# include auth.conf");
    writeFileSync(join(conf, "nats-1.conf"), node.replace("# include auth.conf", "include auth.conf"));
    const noPasswords = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("FERRY_NATS_")));
    for (const file of ["single-auth.conf", "nats-1.conf"]) {
      const ok = spawnSync("nats-server", ["-t", "-c", join(conf, file)], { encoding: "utf8" });
      expect(ok.status, ok.stderr).toBe(0);
      const refused = spawnSync("nats-server", ["-t", "-c", join(conf, file)], { encoding: "utf8", env: noPasswords });
      expect(refused.status).not.toBe(0);
      expect(refused.stderr).toMatch(/FERRY_NATS_\w+_PASSWORD/);
    }
  });

  it("nats - no user, or a wrong password, is refused", async () => {
    await expect(connect({ servers: server.url, timeout: 3000, maxReconnectAttempts: 0 })).rejects.toThrow(/Authorization/i);
    await expect(connect({ servers: server.url, user: "operator", pass: "wrong", timeout: 3000, maxReconnectAttempts: 0 })).rejects.toThrow(/Authorization/i);
  });

  it("operator - a command published with JetStream is acknowledged and stored in FERRY; `nats pub` (core) is stored too", async () => {
    const ack = await jetstream(op).publish("backup.requested", JSON.stringify({ vm: "perm01" }), { msgID: "perm-js-1" });
    expect(ack).toMatchObject({ stream: "FERRY_COMMANDS", duplicate: false });
    expect(await lastStored("FERRY_COMMANDS", "backup.requested")).toBe('{"vm":"perm01"}');
    op.publish("restore.requested", JSON.stringify({ vm: "perm02" }));
    await op.flush();
    await waitFor(async () => (await lastStored("FERRY_COMMANDS", "restore.requested")) === '{"vm":"perm02"}', { what: "the core-published restore.requested in FERRY_COMMANDS" });
    expect(opErrors).toEqual([]);
  });

  it("operator - publishing a fact, an outcome or a rejection is refused (permissions violation) and nothing is stored", async () => {
    const js = jetstream(op);
    for (const subject of notCommands) {
      const before = (await fjsm.streams.info("FERRY_EVENTS")).state.last_seq;
      // JetStream publish: the server drops it and tells the client; no ack ever comes.
      await expect(js.publish(subject, JSON.stringify({ forged: subject }), { timeout: 2000 }), subject).rejects.toThrow();
      // Core publish (`nats pub`): a permissions violation on the connection.
      op.publish(subject, JSON.stringify({ forged: subject }));
      await op.flush();
      await waitFor(() => permissionErrorsFor(opErrors, subject).length >= 2, { what: `two permission violations for ${subject}` });
      expect((await fjsm.streams.info("FERRY_EVENTS")).state.last_seq, subject).toBe(before);
      expect(await lastStored("FERRY_EVENTS", subject), subject).toBeUndefined();
    }
    expect(notCommands).toEqual(expect.arrayContaining(["disk.transferred", "chain.updated", "backup.completed", "backup.failed", "backup.requested.rejected", "ovirt.event"]));
  });

  it("operator - a KV put is refused and FERRY's record stays as it was", async () => {
    const fkv = await new Kvm(fn).open("ferry-chains");
    await fkv.put("vm-perm", JSON.stringify({ owner: "functions" }));
    const okv = await new Kvm(op).open("ferry-chains");
    await expect(okv.put("vm-perm", JSON.stringify({ owner: "operator" }))).rejects.toThrow();
    op.publish("$KV.ferry-chains.vm-perm", JSON.stringify({ owner: "operator, core" }));
    await op.flush();
    await waitFor(() => permissionErrorsFor(opErrors, "$KV.ferry-chains.vm-perm").length >= 1, { what: "a permission violation for the KV subject" });
    expect((await fkv.get("vm-perm"))?.string()).toBe('{"owner":"functions"}');
  });

  it("operator - a reply subject naming a KV key or a fact gets nothing into FERRY (the server answers inside OPERATORS)", async () => {
    const fkv = await new Kvm(fn).open("ferry-chains");
    const revision = await fkv.put("vm-reply", JSON.stringify({ owner: "functions" }));
    const eventsBefore = (await fjsm.streams.info("FERRY_EVENTS")).state.last_seq;
    const commandsBefore = (await fjsm.streams.info("FERRY_COMMANDS")).state.last_seq;
    // In one account, JetStream would send its ack to these subjects and FERRY would store it.
    op.publish("backup.requested", JSON.stringify({ vm: "reply01" }), { reply: "$KV.ferry-chains.vm-reply" });
    op.publish("backup.requested", JSON.stringify({ vm: "reply02" }), { reply: "disk.transferred" });
    op.publish("backup.requested", JSON.stringify({ vm: "reply03" }), { reply: "chain.updated" });
    await op.flush();
    await waitFor(async () => (await fjsm.streams.info("FERRY_COMMANDS")).state.last_seq === commandsBefore + 3, { what: "the three commands stored" });
    // The acks went back to OPERATORS (after the commands were stored, which the wait saw).
    await new Promise((r) => setTimeout(r, 300)); // an ack that did land in FERRY would be stored by now
    const entry = await fkv.get("vm-reply");
    expect({ value: entry?.string(), revision: entry?.revision }).toEqual({ value: '{"owner":"functions"}', revision });
    expect((await fjsm.streams.info("FERRY_EVENTS")).state.last_seq).toBe(eventsBefore);
  });

  it("operator - FERRY's JetStream API, the mirrors' import subjects and changing the copies are refused", async () => {
    const refused = [
      "$JS.ferry.API.CONSUMER.CREATE.FERRY_EVENTS",
      "$JS.ferry.API.CONSUMER.CREATE.KV_ferry-chains.x.$KV.ferry-chains.>",
      "$JS.API.STREAM.DELETE.FERRY_EVENTS",
      "$JS.API.STREAM.PURGE.KV_ferry-chains",
      "$JS.API.STREAM.CREATE.EVIL",
      "$JS.API.CONSUMER.DELETE.FERRY_EVENTS.x",
      "$JS.ACK.FERRY_COMMANDS.backup-requested.1.1.1.1.0",
    ];
    for (const subject of refused) {
      op.publish(subject, "{}");
      await op.flush();
      await waitFor(() => permissionErrorsFor(opErrors, subject).length >= 1, { what: `a permission violation for ${subject}` });
    }
  });

  it("operator - hears outcomes live and reads them (ferry events) and the KV buckets (ferry status) from its copies", async () => {
    const errorsBefore = opErrors.length;
    const live = collect(op, "*.completed");
    try {
      await new Promise((r) => setTimeout(r, 100)); // the stream import's interest reaches FERRY
      await jetstream(fn).publish("backup.completed", JSON.stringify({ vm: "read01" }), { msgID: "read01" });
      await live.waitFor(1, 5000, (m) => m.data.vm === "read01");
    } finally {
      live.stop();
    }
    // ferry events: ordered consumers on FERRY_COMMANDS and FERRY_EVENTS (here: their copies).
    const seen: BusEvent[] = [];
    const stop = new AbortController();
    const following = followBus(op, { subject: "backup.*", from: { kind: "all" }, signal: stop.signal }, (e) => {
      seen.push(e);
      if (seen.some((s) => s.subject === "backup.completed") && seen.some((s) => s.subject === "backup.requested")) stop.abort();
    });
    const timer = setTimeout(() => stop.abort(), 10_000);
    await following;
    clearTimeout(timer);
    expect(seen.find((e) => e.subject === "backup.completed")).toMatchObject({ stream: "FERRY_EVENTS", data: { vm: "read01" } });
    expect(seen.find((e) => e.subject === "backup.requested")).toMatchObject({ stream: "FERRY_COMMANDS" });
    // ferry status / checkpoints --kv: keys and gets on the bucket copies.
    const fkv = await new Kvm(fn).open("ferry-runs");
    await fkv.put("run-read01", JSON.stringify({ vm: "read01" }));
    const okv = await new Kvm(op).open("ferry-runs");
    await waitFor(async () => (await okv.get("run-read01"))?.string() === '{"vm":"read01"}', { what: "the run record in the operators' copy" });
    const keys: string[] = [];
    for await (const k of await okv.keys()) keys.push(k);
    expect(keys).toContain("run-read01");
    expect(opErrors.slice(errorsBefore)).toEqual([]);
  });

  it("functions - every Ferry subject and bucket can be written, and the function runtime runs without a refusal", async () => {
    const js = jetstream(fn);
    for (const subject of [...commands, ...notCommands]) {
      await expect(js.publish(subject, JSON.stringify({ by: "functions" }), { timeout: 5000 }), subject).resolves.toMatchObject({ duplicate: false });
    }
    for (const subject of coreOnlySubjects) fn.publish(subject, JSON.stringify({ by: "functions" }));
    const kvm = new Kvm(fn);
    for (const def of bucketDefinitions) {
      const kv = await kvm.open(def.name);
      const rev = await kv.create("perm-key", "1");
      await kv.update("perm-key", "2", rev);
      await kv.delete("perm-key");
      await kv.purge("perm-key");
    }
    await fn.flush();
    expect(await lastStored("FERRY_EVENTS", "disk.transferred")).toBe('{"by":"functions"}');

    // The runtime: provisioning, its durable consumer, pulls, acks, the MAX_DELIVERIES advisory
    // subscription, $SRV service discovery; an operator asks, the probe answers, the operator hears.
    const nc = await as("functions", PASSWORDS.FERRY_NATS_FUNCTIONS_PASSWORD, fnErrors);
    const abort = new AbortController();
    let ready!: () => void;
    const started = new Promise<void>((r) => (ready = r));
    const running = runFunctions([createProbe()], { nc, log: pino({ level: "silent" }), signal: abort.signal, graceMs: 1000, pullExpiresMs: 1000, onReady: () => ready() });
    await started;
    const outcome = collect(op, "backup.completed");
    try {
      await jetstream(op).publish("backup.requested", JSON.stringify({ vm: "probe01" }), { msgID: "probe01" });
      await outcome.waitFor(1, 15_000, (m) => m.data.vm === "probe01");
      const ping = await fn.request("$SRV.PING.ferry", "", { timeout: 3000 });
      expect(ping.json<{ name: string }>().name).toBe("ferry");
    } finally {
      outcome.stop();
      abort.abort();
      await running;
    }
    expect(fnErrors).toEqual([]);
  });

  it("hooks - backup.requested, restore.requested and ovirt.event are acknowledged and stored in FERRY", async () => {
    const js = jetstream(hooks);
    const event = { id: "perm-hook-1", time: new Date().toISOString(), correlationId: "perm-hook-1", engine: "prd", source: "hook", kind: "vm-stopped", vm: { name: "perm01" }, engineEvent: { description: "after_vm_destroy" } };
    expect(contractFor("ovirt.event")!.validateOutbound(event).ok).toBe(true);
    await expect(js.publish("ovirt.event", JSON.stringify(event), { msgID: event.id })).resolves.toMatchObject({ stream: "FERRY_EVENTS", duplicate: false });
    expect(await lastStored("FERRY_EVENTS", "ovirt.event")).toBe(JSON.stringify(event));
    await expect(js.publish("backup.requested", '{"vm":"hook01"}', { msgID: "perm-hook-2" })).resolves.toMatchObject({ stream: "FERRY_COMMANDS" });
    await expect(js.publish("restore.requested", '{"vm":"hook01"}', { msgID: "perm-hook-3" })).resolves.toMatchObject({ stream: "FERRY_COMMANDS" });
    expect(await lastStored("FERRY_COMMANDS", "restore.requested")).toBe('{"vm":"hook01"}');
    expect(hookErrors).toEqual([]);
  });

  it("hooks - every other subject, a KV put, reading the copies and hearing outcomes are refused; nothing lands in FERRY", async () => {
    const eventsBefore = (await fjsm.streams.info("FERRY_EVENTS")).state.last_seq;
    for (const subject of [...notCommands.filter((s) => s !== "ovirt.event"), "cert.expiring", "$KV.ferry-chains.vm-hook", "$JS.API.STREAM.INFO.FERRY_EVENTS", "$JS.ferry.API.CONSUMER.CREATE.FERRY_EVENTS"]) {
      hooks.publish(subject, JSON.stringify({ forged: subject }));
      await hooks.flush();
      await waitFor(() => permissionErrorsFor(hookErrors, subject).length >= 1, { what: `a permission violation for ${subject}` });
    }
    // A reply subject naming a fact: the ack is answered inside OPERATORS, FERRY stores only the event.
    hooks.publish("ovirt.event", JSON.stringify({ forged: "reply" }), { reply: "disk.transferred" });
    await hooks.flush();
    await waitFor(async () => (await fjsm.streams.info("FERRY_EVENTS")).state.last_seq === eventsBefore + 1, { what: "the one ovirt.event stored" });
    await new Promise((r) => setTimeout(r, 300)); // an ack that did land in FERRY would be stored by now
    expect((await fjsm.streams.info("FERRY_EVENTS")).state.last_seq).toBe(eventsBefore + 1);
    expect(await lastStored("FERRY_EVENTS", "disk.transferred")).not.toContain("forged");
    const sub = hooks.subscribe("*.completed");
    await hooks.flush().catch(() => undefined);
    await waitFor(() => hookErrors.some((e) => e instanceof PermissionViolationError && e.operation === "subscription"), { what: "a refused subscription" });
    sub.unsubscribe();
  });

  it("operator - still cannot publish ovirt.event (the service import exists for the hooks user only)", async () => {
    const before = await lastStored("FERRY_EVENTS", "ovirt.event");
    await expect(jetstream(op).publish("ovirt.event", JSON.stringify({ forged: "operator" }), { timeout: 2000 })).rejects.toThrow();
    await waitFor(() => permissionErrorsFor(opErrors, "ovirt.event").length >= 1, { what: "a permission violation for ovirt.event" });
    expect(await lastStored("FERRY_EVENTS", "ovirt.event")).toBe(before);
  });

  it("operator copies - cover what the operator's commands read", () => {
    expect(operatorStreams.map((s) => s.name)).toEqual(Object.values(streams).map((s) => s.name));
    expect(operatorBuckets.map((b) => b.name)).toEqual(["ferry-chains", "ferry-runs", "ferry-leases"]);
  });

  it("ferry CLI - credentials from the config file: the operator publishes a command, is refused a fact, and reads events", async () => {
    const cfg = join(dir, "operator.json");
    writeFileSync(cfg, JSON.stringify({ nats: { servers: [server.url], user: "operator", passwordEnv: "FERRY_NATS_OPERATOR_PASSWORD" } }));
    const ok = await runFerry(["publish", "backup.requested", '{"vm":"cli01"}', "--config", cfg, "--json"], {});
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ subject: "backup.requested", stream: "FERRY_COMMANDS" });
    // A valid outcome (so `ferry publish` gets as far as the server): refused there.
    const renewed = JSON.stringify({ id: "cli-renewed-1", time: new Date().toISOString(), correlationId: "c1", engine: "prd", fingerprint: "AB:CD", notAfter: "2030-01-01T00:00:00Z" });
    expect(contractFor("cert.renewed")!.validateText(renewed).ok).toBe(true);
    const refused = await runFerry(["publish", "cert.renewed", renewed, "--config", cfg], {});
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/publishing failed: .*(permission|timeout)/i);
    expect(await lastStored("FERRY_EVENTS", "cert.renewed")).not.toContain("cli-renewed-1");
    const events = await runFerry(["events", "backup.requested", "--all", "--count", "1", "--json", "--config", cfg], {});
    expect(events.code, events.stderr).toBe(0);
    expect(JSON.parse(events.stdout.trim().split("\n")[0]!)).toMatchObject({ subject: "backup.requested", stream: "FERRY_COMMANDS" });
  });
});
