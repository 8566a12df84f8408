/**
 * An engine outage in the middle of a backup (every engine API call answered 503, imageio still
 * up) costs the run time, not delivery attempts: the run waits with capped backoff, keeps its VM
 * lease renewed, and goes on with the same engine backup once the engine is back — success, in
 * the first delivery, nothing left open. The budget is shortened here (outage 12 s, lease TTL
 * 6 s, two deliveries with 0.5 s backoff: the old counting of tries failed this backup).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";

const MiB = 1048576;
const OUTAGE_MS = 12_000;
let p: Pipeline;

beforeAll(async () => {
  p = await startPipeline({ maxDeliver: 2, backoffMs: [500], settings: { engineOutageBudgetMs: 120_000 } });
});

afterAll(async () => {
  await p?.stop();
});

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("engine outage (lab)", () => {
  it("engine outage - every engine call answered 503 for longer than the lease TTL mid-backup: the run waits, keeps the VM lease, and succeeds in its first delivery", async () => {
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "eo01", disks: [{ alias: "eo01_d1", size: 48 * MiB }, { alias: "eo01_d2", size: 16 * MiB }], status: "up" });
    const [d1, d2] = vm.disks.map((d: { id: string }) => d.id) as [string, string];
    await control.writeGuestData(d1, { offset: 0, length: 32 * MiB, seed: 11 });
    await control.writeGuestData(d2, { offset: 0, length: 4 * MiB, seed: 12 });

    const id = await p.request("eo01");
    // The outage starts while the first disk is moving: the engine backup is READY, a transfer open.
    await until("the first progress of the run", () => p.seen.some((s) => s.subject === "transfer.progress" && s.event.correlationId === id), 180_000);
    control.faults.httpErrors(503, 1_000_000, "^/ovirt-engine/api");
    const outageStart = Date.now();

    // Well past the lease TTL (6 s): the lease is still the run's and live, so it was renewed.
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    const lease = await p.wiring.leases.get(vm.id);
    expect(lease?.runId).toBe(id);
    expect(Date.parse(lease!.expiresAt)).toBeGreaterThan(Date.now());
    expect(p.seen.some((s) => (s.subject === "backup.completed" || s.subject === "backup.failed") && s.event.correlationId === id)).toBe(false);
    control.faults.clear();
    const outageMs = Date.now() - outageStart;

    const out = await p.outcome(id, 180_000);
    expect(out.subject, JSON.stringify(out.event)).toBe("backup.completed");
    const waited = p.logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.correlationId === id && l.msg === "engine outage; waiting for the engine to come back");
    expect(waited.length).toBeGreaterThan(0);
    // One delivery did it all: no retry was spent on the outage.
    const deliveries = new Set(p.logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.correlationId === id && l.fn === "backup-requested").map((l) => l.deliveryCount));
    expect([...deliveries]).toEqual([1]);
    // The same engine backup before and after the outage.
    expect(new Set(out.disks.map((d) => d.backupId)).size).toBe(1);
    console.log(`engine outage: ${outageMs} ms of 503s, ${waited.length} waits logged, backup completed in delivery 1`);
    await until("the lease to go", async () => (await p.wiring.leases.get(vm.id)) === undefined);
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
  }, 400_000);
});
