/**
 * Issue 11: SIGTERM stops `ferry run all` promptly even while its background work waits on an
 * engine. A real `ferry run all` process, a real nats-server and the lab engine; the engine is
 * made to stall: a backup of a dead run (journaled, its worker gone) is finalized by the
 * reconciler's first pass, and the lab holds that finalize for two minutes (`stallFinalize`), so
 * the pass sits in the engine wait holding the VM's lease when SIGTERM arrives. The process must
 * exit 0 (a clean stop, README: `ferry run`) within seconds, with the lease released. And an
 * engine that accepts connections and never answers (a host gone silent): the event poller and
 * the reconciler wait on its sockets, which the engine client's close destroys.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats, provisionInfra } from "../adapters/nats/mod.ts";
import { createEngineClient } from "../adapters/ovirt/mod.ts";
import { buckets } from "../infra/streams/mod.ts";
import { FAST_TIMINGS, startTestLab, type TestLab } from "../lab/test-support.ts";
import { createDeploymentId } from "../pipeline/deployment.ts";
import { createEnginePort, type EnginePort } from "../pipeline/engine-port.ts";
import { createRunJournal } from "../pipeline/run-journal.ts";
import { backupIdFor, engineDescription } from "../pipeline/run-ids.ts";
import { createLeases } from "../pipeline/vm-lease.ts";
import { spawnFerry, type FerryProcess } from "./harness/ferry-process.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1048576;
let dir: string;
let nats: NatsServer;
let lab: TestLab;
let nc: NatsConnection;
let port: EnginePort;
let fn: FerryProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-shutdown-"));
  nats = await startNatsServer();
  lab = await startTestLab({ engines: ["prd"], timings: FAST_TIMINGS });
  nc = await connectNats({ servers: nats.url, name: "runtime-shutdown-test" });
  await provisionInfra(nc, await jetstreamManager(nc), { replicas: 1 });
  port = createEnginePort(createEngineClient({ url: lab.prd.url, user: lab.prd.user, password: lab.prd.password, caPem: lab.prd.caPem }), { name: "prd", caPem: lab.prd.caPem, pollMs: 100 });
}, 120_000);

afterAll(async () => {
  await fn?.kill("SIGKILL");
  await port?.client.close().catch(() => undefined);
  await nc?.close().catch(() => undefined);
  await lab?.stop();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("ferry run - SIGTERM while background work waits on an engine", () => {
  it("shutdown - a reconciler pass stuck in an engine wait does not hold the process: exit 0 within seconds, no lease left", async () => {
    const kvm = new Kvm(nc);
    const runsKv = await kvm.open(buckets.runs);
    const deployment = await createDeploymentId(runsKv);
    const vm = await lab.prd.control.createVm({ name: "stuck01", disks: [{ alias: "stuck01_d1", size: 4 * MiB }], status: "up" });

    // A run whose worker died 10 minutes ago with its engine backup READY (journal stamped then).
    const runId = "shutdown-dead-run";
    const backupId = backupIdFor(runId, 1);
    const old = new Date(Date.now() - 10 * 60_000);
    await port.startBackup(vm.id, { id: backupId, description: engineDescription(deployment, vm.name, runId), diskIds: [vm.disks[0]!.id] });
    await createRunJournal(runsKv, () => old).change(runId, () => ({
      runId, kind: "backup", engine: "prd", vm: { id: vm.id, name: vm.name }, owner: "gone:1", phase: "backup", attempt: 1,
      startedAt: old.toISOString(), updatedAt: old.toISOString(), backupId, backupClosed: false, method: "backup", transfers: [], disks: [],
    }));
    // The engine takes 2 minutes to finish that finalize: the reconciler's wait outlives the test.
    lab.prd.control.faults.stallFinalize(120_000, "backup");

    const cfg = join(dir, "ferry.json");
    await writeFile(join(dir, "prd-ca.pem"), lab.prd.caPem);
    await writeFile(cfg, JSON.stringify({
      engines: { prd: { url: lab.prd.url, user: lab.prd.user, passwordEnv: "FERRY_PRD_PASSWORD", caFile: "prd-ca.pem" } },
      nats: { servers: [nats.url] },
      store: { path: "store" },
      vms: { stuck01: { engine: "prd" } },
    }));
    fn = spawnFerry(["run", "all", "--config", cfg, "--grace", "2"], { FERRY_PRD_PASSWORD: lab.prd.password });
    await fn.waitForLog((l) => l.msg === "functions running", 90_000);

    // The reconciler holds the VM's lease and the engine is finalizing (stalled) when the signal comes.
    const leases = createLeases(await kvm.open(buckets.leases), { ttlMs: 60_000, handOffTtlMs: 60_000 });
    await waitFor(async () => (await port.getBackup(vm.id, backupId))?.phase === "finalizing" || undefined, { what: "the reconciler's finalize", timeoutMs: 60_000 });
    expect((await leases.get(vm.id))?.runId).toBe(runId);

    const started = performance.now();
    const exit = await fn.kill("SIGTERM");
    const seconds = (performance.now() - started) / 1000;
    expect(exit, fn.stderr()).toEqual({ code: 0, signal: null });
    expect(seconds, fn.stderr()).toBeLessThan(10);
    // The reconciler ended on the signal: the host's bounded wait had nothing to abandon.
    expect(fn.logs.filter((l) => String(l.msg).includes("abandoned"))).toEqual([]);
    expect(fn.logs.some((l) => l.msg === "stopped")).toBe(true);
    // The lease was released before the connection was drained (not left to expire).
    expect(await leases.get(vm.id)).toBeUndefined();
    // The journal still says what is open: the next process's reconciler finishes the close.
    expect((await createRunJournal(runsKv).get(runId))?.phase).toBe("backup");
  }, 180_000);
});

describe("ferry run - SIGTERM while an engine never answers", () => {
  it("shutdown - pollers and the reconciler waiting on a silent engine's sockets do not hold the process", async () => {
    const held: Socket[] = [];
    const silent = createServer((sock) => void held.push(sock));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as { port: number }).port;
    const cfg = join(dir, "silent.json");
    await writeFile(cfg, JSON.stringify({
      engines: { prd: { url: `https://127.0.0.1:${port}`, user: "admin@internal", passwordEnv: "FERRY_PRD_PASSWORD", caFile: "prd-ca.pem" } },
      nats: { servers: [nats.url] },
      store: { path: "store-silent" },
      events: { pollSeconds: 5 },
      vms: {},
    }));
    await writeFile(join(dir, "prd-ca.pem"), lab.prd.caPem);
    const p = spawnFerry(["run", "all", "--config", cfg, "--grace", "2"], { FERRY_PRD_PASSWORD: "secret-pw" });
    try {
      await p.waitForLog((l) => l.msg === "functions running", 90_000);
      // The reconciler's first pass and the poller wait on the silent engine's TLS handshake now (one shared login).
      await waitFor(() => held.length >= 1, { what: "a connection to the silent engine", timeoutMs: 30_000 });
      const started = performance.now();
      const exit = await p.kill("SIGTERM");
      const seconds = (performance.now() - started) / 1000;
      expect(exit, p.stderr()).toEqual({ code: 0, signal: null });
      // Without ending the pending handshake at close this takes the 10 s connect timeout.
      expect(seconds, p.stderr()).toBeLessThan(6);
      expect(p.logs.filter((l) => String(l.msg).includes("abandoned"))).toEqual([]);
    } finally {
      await p.kill("SIGKILL");
      for (const s of held) s.destroy();
      silent.close();
    }
  }, 180_000);
});
