/**
 * The reconciler against the lab: a run whose worker died (journal says backup + transfer open,
 * lease expired) and a Ferry backup nobody journaled are both closed, so nothing stays locked;
 * a VM whose lease is alive is left alone. An engine restarted mid-backup fails the backup and
 * leaves its snapshot ("Auto-generated for Backup VM"): the reconciler removes this deployment's.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connectNats, provisionInfra } from "../adapters/nats/mod.ts";
import { createEngineClient } from "../adapters/ovirt/mod.ts";
import { buckets } from "../infra/streams/mod.ts";
import { startLab, type Lab } from "../lab/mod.ts";
import { FAST_TIMINGS } from "../lab/test-support.ts";
import { createDeploymentId } from "../pipeline/deployment.ts";
import { createEnginePort } from "../pipeline/engine-port.ts";
import { createRunJournal } from "../pipeline/run-journal.ts";
import { createLeases } from "../pipeline/vm-lease.ts";
import { startNatsServer } from "./harness/nats-server.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";
import { createReconciler } from "../pipeline/reconcile.ts";
import { backupFunctionDeps } from "../pipeline/composition.ts";
import { backupIdFor, engineDescription } from "../pipeline/run-ids.ts";
import { checkOutbound } from "../functions/runtime/mod.ts";

const MiB = 1048576;
let p: Pipeline;

beforeAll(async () => {
  p = await startPipeline({ backupWorker: false });
});

afterAll(async () => {
  await p?.stop();
});

describe("reconciler (lab)", () => {
  it("reconciler - closes a dead worker's journaled backup and transfer, and an unjournaled Ferry backup", async () => {
    const control = p.lab.engines.prd!.control;
    const engine = p.wiring.engines.get("prd")!;
    const a = await control.createVm({ name: "orphan-a", disks: [{ alias: "oa_d1", size: 4 * MiB }], status: "up" });
    const b = await control.createVm({ name: "orphan-b", disks: [{ alias: "ob_d1", size: 4 * MiB }], status: "up" });
    const live = await control.createVm({ name: "busy-c", disks: [{ alias: "bc_d1", size: 4 * MiB }], status: "up" });
    const foreign = await control.createVm({ name: "other-d", disks: [{ alias: "od_d1", size: 4 * MiB }], status: "up" });

    // A: a run journaled up to an open transfer, then its worker died (no lease).
    const runId = "dead-run-1";
    const backupId = backupIdFor(runId, 1);
    const old = new Date(Date.now() - 10 * 60_000).toISOString();
    await p.wiring.runs.change(runId, () => ({
      runId, kind: "backup", engine: "prd", vm: { id: a.id, name: a.name }, owner: "dead", phase: "backup", attempt: 1,
      startedAt: old, updatedAt: old, backupId, backupClosed: false, method: "backup", transfers: [], disks: [],
    }));
    await engine.startBackup(a.id, { id: backupId, description: engineDescription(p.wiring.deployment, "orphan-a", runId), diskIds: [a.disks[0]!.id] });
    const t = await engine.createDownload({ diskId: a.disks[0]!.id, backupId });
    // Age the journal record so it counts as stale.
    // Two requests had joined this run (coalesced): they must each get one outcome when it is abandoned.
    const joined = [
      { id: "req-2", correlationId: "corr-2", time: old },
      { id: "req-3", correlationId: "corr-3", time: old },
    ];
    await p.wiring.runs.change(runId, (cur) => cur && { ...cur, coalesced: joined, transfers: [{ id: t.id, diskId: a.disks[0]!.id, state: "open" }] });

    // B: a Ferry backup with no journal at all (crash between POST and the journal write).
    const orphanB = backupIdFor("lost-run", 1);
    await engine.startBackup(b.id, { id: orphanB, description: engineDescription(p.wiring.deployment, "orphan-b", "lost-run"), diskIds: [b.disks[0]!.id] });
    await engine.createDownload({ diskId: b.disks[0]!.id, backupId: orphanB });

    // C: a live run holds the VM's lease: its backup must not be touched.
    const liveId = backupIdFor("live-run", 1);
    const lease = await p.wiring.leases.acquire({ vmId: live.id, runId: "live-run", owner: "someone" });
    await engine.startBackup(live.id, { id: liveId, description: engineDescription(p.wiring.deployment, "busy-c", "live-run"), diskIds: [live.disks[0]!.id] });

    // D: another Ferry deployment's backup on the same engine (its own KV, its own mark): not ours to close.
    const foreignId = backupIdFor("their-run", 1);
    await engine.startBackup(foreign.id, { id: foreignId, description: engineDescription("0ther0de", "other-d", "their-run"), diskIds: [foreign.disks[0]!.id] });

    expect((await labState(p)).openBackups).toBe(4);
    const deps = backupFunctionDeps(p.wiring, { info() {}, warn() {}, error() {} });
    const announced: Array<{ id: string } & Record<string, unknown>> = [];
    const reconciler = createReconciler({ ...deps.reconciler, staleAfterMs: 0, announceFailure: async (e) => void announced.push(e) });
    const report = await reconciler.reconcileOnce();
    expect(announced.map((e) => [e.correlationId, e.code, e.runId])).toEqual([
      ["corr-2", "RUN_ABANDONED", runId],
      ["corr-3", "RUN_ABANDONED", runId],
    ]);
    for (const event of announced) checkOutbound({ subject: "backup.failed", event });

    expect(report.abandonedRuns).toEqual([runId]);
    expect(report.finalizedBackups.sort()).toEqual([backupId, orphanB].sort());
    expect((await engine.getBackup(live.id, liveId))?.phase).toBe("ready");
    expect((await engine.getBackup(foreign.id, foreignId))?.phase).toBe("ready");
    expect((await p.wiring.runs.get(runId))?.phase).toBe("abandoned");

    await lease.release();
    await engine.finalizeBackup(live.id, liveId);
    await engine.finalizeBackup(foreign.id, foreignId);
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
    // A second pass finds nothing to do.
    const again = await reconciler.reconcileOnce();
    expect(announced).toHaveLength(2);
    expect(again).toEqual({ abandonedRuns: [], finalizedBackups: [], closedTransfers: [], removedSnapshots: [], removedFiles: [], removedBytes: 0, clearedLocks: [] });
  });
});

describe("reconciler (lab restarted mid-backup)", () => {
  it("reconciler - removes the snapshot a backup of this deployment left when the engine restarted, never another deployment's", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ferry-reconcile-restart-"));
    const nats = await startNatsServer();
    const nc = await connectNats({ servers: nats.url, name: "reconciler-restart-test" });
    const start = () => startLab({ dataDir: dir, engines: ["prd"], engineOptions: { timings: FAST_TIMINGS } });
    let lab: Lab = await start();
    const clientOf = (l: Lab) => createEngineClient({ url: l.engines.prd!.url, user: l.engines.prd!.user, password: l.engines.prd!.password, caPem: l.engines.prd!.caPem });
    let client = clientOf(lab);
    try {
      await provisionInfra(nc, await jetstreamManager(nc), { replicas: 1 });
      const kvm = new Kvm(nc);
      const runsKv = await kvm.open(buckets.runs);
      const deployment = await createDeploymentId(runsKv);
      const control = lab.engines.prd!.control;
      const ours = await control.createVm({ name: "rr-ours", disks: [{ alias: "rro_d1", size: 4 * MiB }], status: "up" });
      const theirs = await control.createVm({ name: "rr-theirs", disks: [{ alias: "rrt_d1", size: 4 * MiB }], status: "up" });
      let engine = createEnginePort(client, { name: "prd", pollMs: 100 });
      const ourBackup = backupIdFor("restart-run", 1);
      const theirBackup = backupIdFor("their-restart-run", 1);
      await engine.startBackup(ours.id, { id: ourBackup, description: engineDescription(deployment, ours.name, "restart-run"), diskIds: [ours.disks[0]!.id] });
      await engine.startBackup(theirs.id, { id: theirBackup, description: engineDescription("0ther0de", theirs.name, "their-restart-run"), diskIds: [theirs.disks[0]!.id] });
      await engine.createDownload({ diskId: ours.disks[0]!.id, backupId: ourBackup });

      // The engine stops mid-backup and comes back with its state: the backups are failed, their snapshots stay.
      await client.close();
      await lab.stop();
      lab = await start();
      client = clientOf(lab);
      engine = createEnginePort(client, { name: "prd", pollMs: 100 });
      const ourSnapshot = (await engine.getBackup(ours.id, ourBackup))!;
      const theirSnapshot = (await engine.getBackup(theirs.id, theirBackup))!;
      expect([ourSnapshot.phase, theirSnapshot.phase]).toEqual(["failed", "failed"]);
      expect(ourSnapshot.snapshotId).toBeTruthy();
      const autoSnapshots = async (vmId: string) => (await client.snapshots.list(vmId)).filter((x) => x.description?.startsWith("Auto-generated for Backup")).map((x) => x.id);
      expect(await autoSnapshots(ours.id)).toEqual([ourSnapshot.snapshotId]);
      expect(await autoSnapshots(theirs.id)).toEqual([theirSnapshot.snapshotId]);

      const reconciler = createReconciler({
        engines: new Map([["prd", engine]]),
        runs: createRunJournal(runsKv),
        leases: createLeases(await kvm.open(buckets.leases), { ttlMs: 60_000, handOffTtlMs: 60_000 }),
        deployment,
        removeUnrecorded: async () => undefined,
        clock: () => new Date(),
        log: { info() {}, warn() {} },
      });
      const report = await reconciler.reconcileOnce();
      expect(report.removedSnapshots).toEqual([ourSnapshot.snapshotId]);
      expect(await autoSnapshots(ours.id)).toEqual([]);
      // Another deployment's leftover is theirs to clean.
      expect(await autoSnapshots(theirs.id)).toEqual([theirSnapshot.snapshotId]);
      // The next pass finds nothing left (no DELETE is sent for a snapshot already gone).
      expect((await reconciler.reconcileOnce()).removedSnapshots).toEqual([]);
      // The VM is whole again: a new backup of it starts and finalizes.
      const next = backupIdFor("restart-run-2", 1);
      await engine.startBackup(ours.id, { id: next, description: engineDescription(deployment, ours.name, "restart-run-2"), diskIds: [ours.disks[0]!.id] });
      await engine.finalizeBackup(ours.id, next);
      expect((await engine.getBackup(ours.id, next))?.phase).toBe("succeeded");
    } finally {
      await client.close();
      await nc.close();
      await lab.stop();
      await nats.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
