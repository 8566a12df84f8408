/**
 * The chain guard driven by the engine's own events, end to end: real nats-server, the PRD lab
 * engine, the backup pipeline, the engine-events consumer and its poller. A snapshot restored
 * through the engine's REST API (not a lab shortcut) reaches Ferry through the poller alone and
 * makes the next backup a full with the engine event as its reason; a poller that dies between
 * publishing and moving its index neither misses nor repeats an event.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { RawApi } from "../lab/test-support.ts";
import { createPublisher, runFunctions, type Outbound } from "../functions/runtime/mod.ts";
import { engineEventsFunction } from "../functions/engine-events/definition.ts";
import { createPoller, type Poller } from "../functions/engine-events/poller.ts";
import { ferryCorrelationId } from "../pipeline/chain-guard.ts";
import { renderCheckpoints } from "../cli/commands/checkpoints.ts";
import { describePoints } from "../domain/chain/mod.ts";
import { streams } from "../infra/streams/mod.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { waitFor } from "./harness/wait-for.ts";
import { spawnFerry } from "./harness/ferry-process.ts";
import { Writable } from "node:stream";
import schedule from "../cli/commands/schedule.ts";
import type { CommandIO } from "../cli/command.ts";
import { main } from "../cli/main.ts";

const MiB = 1048576;
let p: Pipeline;
let api: RawApi;
const stopConsumer = new AbortController();
let consumer: Promise<unknown>;

beforeAll(async () => {
  p = await startPipeline();
  api = new RawApi(p.lab.engines.prd! as never);
  const log = { info() {}, warn() {}, error() {}, debug() {}, child: () => log } as never;
  consumer = runFunctions(
    [engineEventsFunction({ guard: p.wiring.guard, chains: p.wiring.chains, engineOf: () => "prd", clock: () => new Date() }, { ackWaitMs: 10_000, maxDeliver: 5, backoffMs: [200, 500] })],
    { nc: p.nc, log, signal: stopConsumer.signal, drain: false, provision: false, graceMs: 1000, pullExpiresMs: 1000 },
  );
}, 120_000);

afterAll(async () => {
  stopConsumer.abort();
  await consumer?.catch(() => undefined);
  await api?.close?.();
  await p?.stop();
});

/** `ferry checkpoints <args>` through the real CLI entry: exit code and stdout. */
async function checkpointsCli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let out = "";
  let err = "";
  const io = {
    stdout: new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }),
    stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }),
    cwd: p.storePath,
    env: {},
  };
  const code = await main(["checkpoints", ...args], io);
  return { code, stdout: out, stderr: err };
}

/** A poller of PRD over the pipeline's own engine client and chain guard, as functions/engine-events/main.ts builds it. */
function poller(publish?: (out: Outbound) => Promise<{ stream: string; seq: number; duplicate: boolean }>): Poller {
  const port = p.wiring.engines.get("prd")!;
  const bus = createPublisher(p.nc, jetstream(p.nc));
  return createPoller({
    engine: "prd",
    listEvents: (o) => port.client.events.list(o),
    guard: p.wiring.guard,
    vmName: async (id) => (await p.wiring.chains.read(id))?.vm.name,
    publish: publish ?? ((out) => bus.publish(out)),
    ownCorrelationId: ferryCorrelationId("prd"),
    clock: () => new Date(),
    log: { info() {}, debug() {}, warn: (o: { err?: unknown }, msg: string) => void pollerWarnings.push(`${msg}: ${o.err instanceof Error ? o.err.message : ""}`) } as never,
  });
}
/** The pollers' warnings (a poll that failed), for failure messages. */
const pollerWarnings: string[] = [];

/** Snapshot the VM and restore the snapshot through the engine's REST API; the engine event index of the restore. */
async function restoreThroughRest(vmId: string, description: string): Promise<number> {
  const created = await api.post(`/vms/${vmId}/snapshots`, { description, persist_memorystate: "false" });
  expect([201, 202], created.text).toContain(created.status);
  const sid = created.json.id as string;
  await waitFor(async () => (await api.get(`/vms/${vmId}/snapshots/${sid}`)).json?.snapshot_status === "ok", { timeoutMs: 60_000, intervalMs: 200, what: `snapshot ${sid} ok` });
  const restored = await api.post(`/vms/${vmId}/snapshots/${sid}/restore`, {});
  expect(restored.status, restored.text).toBe(200);
  const events = (await api.get("/events?max=20")).json.event as { index: string; code: string; vm?: { id: string } }[];
  const mine = events.filter((e) => e.vm?.id === vmId && e.code === "100").map((e) => Number(e.index));
  expect(mine.length).toBeGreaterThan(0);
  return Math.max(...mine);
}

/** Every ovirt.event stored on FERRY_EVENTS, by engine event index. */
async function storedFacts(): Promise<Map<number, number>> {
  const js = jetstream(p.nc);
  const jsm = await jetstreamManager(p.nc);
  const info = await jsm.streams.info(streams.events.name, { subjects_filter: "ovirt.event" });
  const total = (info.state.subjects as Record<string, number> | undefined)?.["ovirt.event"] ?? 0;
  const counts = new Map<number, number>();
  if (!total) return counts;
  const c = await js.consumers.get(streams.events.name, { filter_subjects: ["ovirt.event"] });
  const it = await c.fetch({ max_messages: total, expires: 5000 });
  let seen = 0;
  for await (const m of it) {
    const index = (m.json<{ engineEvent: { index: number } }>()).engineEvent.index;
    counts.set(index, (counts.get(index) ?? 0) + 1);
    if (++seen >= total) break;
  }
  return counts;
}

describe("chain guard (lab, real nats-server)", () => {
  it("chain guard - a snapshot restored through the engine's REST API makes the next backup full with the engine event as the reason, through the poller alone", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "guard01", disks: [{ alias: "guard01_d1", size: 8 * MiB }], status: "down" });
    await control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: MiB, seed: 1 });

    const ac = new AbortController();
    const running = poller().run({ intervalMs: 300, signal: ac.signal });
    try {
      await waitFor(async () => (await p.wiring.guard.position("prd")) !== undefined, { timeoutMs: 30_000, intervalMs: 200, what: () => `poller position (${pollerWarnings.slice(-3).join("; ")})` });

      const first = await p.backup("guard01");
      expect(first.subject, JSON.stringify(first.event)).toBe("backup.completed");
      await control.writeGuestData(vm.disks[0]!.id, { offset: 2 * MiB, length: 4096, seed: 2 });
      // Ferry's own engine calls (backup, checkpoints) are not news: the second backup is incremental.
      const second = await p.backup("guard01");
      expect(second.event.kind, JSON.stringify(second.event)).toBe("incremental");
      expect(await p.wiring.guard.mark(vm.id)).toBeUndefined();

      const index = await restoreThroughRest(vm.id, "before-upgrade");
      const mark = await waitFor(async () => p.wiring.guard.mark(vm.id), { timeoutMs: 60_000, intervalMs: 200, what: "the chain guard's mark" });
      expect(mark.reason).toMatch(new RegExp(`^engine event ${index} \\(100\\) on prd: VM guard01 restoring from Snapshot has been completed\\.$`));
      expect(mark.events).toEqual([`prd:event:${index}`]);

      // Visible before the backup: `ferry checkpoints` says what the next backup will be.
      const record = (await p.wiring.chains.read(vm.id))!;
      expect(renderCheckpoints(record, describePoints(record), "test", { mark })).toContain(`next backup: full (${mark.reason})`);
      // ... and the command itself reads the mark from KV ferry-guard.
      const before = await checkpointsCli("guard01", "--kv", "--nats", p.nats.url);
      expect(before.code, before.stderr).toBe(0);
      expect(before.stdout).toContain(`\nnext backup: full (${mark.reason})\n`);

      const third = await p.backup("guard01");
      expect(third.subject, JSON.stringify(third.event)).toBe("backup.completed");
      expect(third.event.kind).toBe("full");
      const point = (await p.wiring.chains.read(vm.id))!.restorePoints.at(-1)!;
      expect(point.kind).toBe("full");
      expect(point.reason).toBe(mark.reason);
      // `ferry checkpoints` (from the store) shows the engine event as the full's reason; the mark is answered.
      const listed = await checkpointsCli("guard01", "--store", p.storePath);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout.trimEnd().split("\n").at(-1)).toMatch(new RegExp(`^3 .* full .*${mark.reason.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`));
      expect((await checkpointsCli("guard01", "--kv", "--nats", p.nats.url)).stdout).not.toContain("next backup: full");
      // The full answered the mark: the next backup builds on it again.
      await control.writeGuestData(vm.disks[0]!.id, { offset: 3 * MiB, length: 4096, seed: 3 });
      const fourth = await p.backup("guard01");
      expect(fourth.event.kind, JSON.stringify(fourth.event)).toBe("incremental");
      expect((await storedFacts()).get(index)).toBe(1);
    } finally {
      ac.abort();
      await running;
    }
  }, 300_000);

  it("chain guard - a poller stopped between publishing and moving its index, restarted, publishes every engine event exactly once", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "guard02", disks: [{ alias: "guard02_d1", size: 4 * MiB }], status: "down" });
    const first = await p.backup("guard02");
    expect(first.subject, JSON.stringify(first.event)).toBe("backup.completed");
    await poller().pollOnce();
    const before = (await p.wiring.guard.position("prd"))!.value.index;

    // Three restores while no poller runs: events pending.
    const indexes: number[] = [];
    for (const n of [1, 2, 3]) indexes.push(await restoreThroughRest(vm.id, `pending-${n}`));
    expect(Math.min(...indexes)).toBeGreaterThan(before);

    // The poller dies right after its second fact was acknowledged, before it moved the index.
    const bus = createPublisher(p.nc, jetstream(p.nc));
    let acked = 0;
    const dying = poller(async (out) => {
      const ack = await bus.publish(out);
      if (++acked === 2) throw new Error("killed after the PubAck");
      return ack;
    });
    await expect(dying.pollOnce()).rejects.toThrow("killed after the PubAck");
    expect((await p.wiring.guard.position("prd"))!.value.index).toBe(before);

    // Restarted: everything since `before` is read again; the two already stored are JetStream duplicates.
    const restarted = await poller().pollOnce();
    expect(restarted.index).toBeGreaterThanOrEqual(Math.max(...indexes));
    expect(restarted.published).toBe(1);
    // And a further poll finds nothing new.
    expect((await poller().pollOnce()).published).toBe(0);

    const counts = await storedFacts();
    for (const i of indexes) expect(counts.get(i), `engine event ${i}`).toBe(1);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    // The consumer folded the events into one mark: the first one's reason, the others counted. (The
    // lab's createVm attached guard02's disk through the API too: that event is among them.)
    let last: unknown;
    const mark = await waitFor(async () => {
      const m = await p.wiring.guard.mark(vm.id);
      last = m;
      return m && indexes.every((i) => m.events.includes(`prd:event:${i}`)) ? m : undefined;
    }, { timeoutMs: 60_000, intervalMs: 200, what: () => `three events in the mark (it is ${JSON.stringify(last)})` });
    expect(mark.events.filter((e) => e.startsWith("prd:event:"))).toEqual(mark.events);
    expect(mark.more).toBe(mark.events.length - 1);
    expect(mark.reason).toMatch(/^engine event \d+ \(\d+\) on prd: /);
  }, 300_000);

  it("chain guard - a VM removed on the engine is marked removed and reported once, also when a hook reports it again", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "guard03", disks: [{ alias: "guard03_d1", size: 4 * MiB }], status: "down" });
    const first = await p.backup("guard03");
    expect(first.subject, JSON.stringify(first.event)).toBe("backup.completed");
    await poller().pollOnce();
    const removed = await api.call("DELETE", `/vms/${vm.id}`);
    expect(removed.status, removed.text).toBe(200);
    await poller().pollOnce();
    const report = await waitFor(() => p.seen.find((s) => s.subject === "backup.failed" && s.event.vm === "guard03"), { timeoutMs: 60_000, intervalMs: 200, what: "backup.failed VM_REMOVED" });
    expect(report.event).toMatchObject({ code: "VM_REMOVED", engine: "prd", step: "ovirt.event" });
    expect(String(report.event.message)).toMatch(/^VM guard03 was removed from engine prd \(engine event \d+ \(113\) on prd: VM guard03 was successfully removed\.\)/);
    expect(await p.wiring.guard.removed("guard03")).toMatchObject({ vm: { id: vm.id, name: "guard03" }, engine: "prd" });
    expect((await p.wiring.guard.removedVms()).has("guard03")).toBe(true);

    // The hook endpoint reports the same removal: acked, not reported again.
    const bus = createPublisher(p.nc, jetstream(p.nc));
    await bus.publish({ subject: "ovirt.event", event: { id: "hook:guard03-removed", time: new Date().toISOString(), correlationId: "hook:guard03-removed", engine: "prd", source: "hook", kind: "vm-removed", vm: { name: "guard03" }, engineEvent: { description: "vm removed (hook)" } } });
    const jsm = await jetstreamManager(p.nc);
    await waitFor(async () => {
      const c = await jsm.consumers.info(streams.events.name, "engine-events");
      return c.num_pending === 0 && c.num_ack_pending === 0;
    }, { timeoutMs: 60_000, intervalMs: 200, what: "engine-events to have handled every ovirt.event" });
    expect(p.seen.filter((s) => s.subject === "backup.failed" && s.event.vm === "guard03")).toHaveLength(1);
  }, 300_000);
});

describe("chain guard and ferry schedule", () => {
  it("ferry schedule - a VM removed on its engine is not published any more; the others are", async () => {
    // Runs after the removal test: guard03 is marked removed.
    expect(await p.wiring.guard.removed("guard03")).toBeDefined();
    const dir = await mkdtemp(join(tmpdir(), "ferry-chain-guard-schedule-"));
    const cfg = join(dir, "ferry.json");
    const daily = { days: "1111111", time: "02:00" };
    await writeFile(cfg, JSON.stringify({ engines: { prd: { url: p.lab.engines.prd!.url, passwordEnv: "FERRY_PRD_PASSWORD" } }, nats: { servers: [p.nats.url] }, vms: { guard03: { schedule: daily }, guard05: { schedule: daily } } }));
    let out = "";
    let err = "";
    const io: CommandIO = {
      stdout: new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }),
      stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }),
      env: {},
      cwd: dir,
      signal: new AbortController().signal,
    };
    try {
      const code = await schedule.run(["--config", cfg, "--tz", "UTC", "--now", "2026-01-05T02:01:00Z", "--window", "10", "--json"], io);
      expect(code, err).toBe(0);
      const rows = out.trim().split("\n").map((l) => JSON.parse(l) as { vm: string; status: string });
      expect(rows.map((r) => [r.vm, r.status])).toEqual([["guard05", "published"]]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("chain guard as a process: ferry run engine-events", () => {
  it("ferry run engine-events - its own poller reports a snapshot restore; the mark is recorded; SIGTERM stops it cleanly", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ferry-chain-guard-"));
    const prd = p.lab.engines.prd!;
    await writeFile(join(dir, "prd-ca.pem"), prd.caPem);
    const cfg = join(dir, "ferry.json");
    await writeFile(
      cfg,
      JSON.stringify({
        engines: { prd: { url: prd.url, user: prd.user, passwordEnv: "FERRY_PRD_PASSWORD", caFile: "prd-ca.pem" } },
        nats: { servers: [p.nats.url] },
        store: { path: p.storePath },
        vms: { guard04: { engine: "prd" } },
        events: { pollSeconds: 5 },
      }),
    );
    const fn = spawnFerry(["run", "engine-events", "--config", cfg, "--grace", "2"], { FERRY_PRD_PASSWORD: prd.password });
    try {
      await fn.waitForLog((l) => l.msg === "functions running", 90_000);
      expect(fn.logs.some((l) => l.msg === "engine events: polling the audit log" && l.engine === "prd" && l.everySeconds === 5)).toBe(true);
      const vm = await p.lab.engines.prd!.control.createVm({ name: "guard04", disks: [{ alias: "guard04_d1", size: 4 * MiB }], status: "down" });
      const first = await p.backup("guard04");
      expect(first.subject, JSON.stringify(first.event)).toBe("backup.completed");
      const index = await restoreThroughRest(vm.id, "process");
      await fn.waitForLog((l) => l.msg === "engine event published" && (l.index as number) === index, 60_000);
      const mark = await waitFor(async () => {
        const m = await p.wiring.guard.mark(vm.id);
        return m?.events.includes(`prd:event:${index}`) ? m : undefined;
      }, { timeoutMs: 60_000, intervalMs: 200, what: "the mark of the process's event" });
      expect(mark.vm.name).toBe("guard04");
    } finally {
      const exit = await fn.kill("SIGTERM");
      expect(exit.code, fn.stderr()).toBe(0);
      await rm(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
