/**
 * Five backup requests with different ids for one VM within a second (`ferry backup vm02 --wait`
 * five times): exactly one backup run and one restore point; every request ends with exactly one
 * outcome — the run's own backup.completed, or one for the same point pointing at that run
 * (coalesced) — never VM_BUSY failures, CHAIN_PARENT_MISSING or a needless full. Run with one
 * backup worker (the production default: the others are handled while the run is in flight or
 * after it) and with three (they race the first for the VM lease).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PassThrough } from "node:stream";
import { main } from "../cli/main.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";

const MiB = 1048576;

async function until(what: string, ok: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.each([1, 3])("coalescing (%i backup worker slots)", (slots) => {
  let p: Pipeline;
  let vmId: string;
  let diskIds: string[];

  beforeAll(async () => {
    p = await startPipeline({ backupConcurrency: slots });
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "vm02", disks: [{ alias: "vm02_d1", size: 16 * MiB }, { alias: "vm02_d2", size: 8 * MiB }], status: "up" });
    vmId = vm.id;
    diskIds = vm.disks.map((d: { id: string }) => d.id);
    await control.writeGuestData(diskIds[0]!, { offset: 0, length: 4 * MiB, pattern: 0x31 });
    const first = await p.backup("vm02", { timeoutMs: 180_000 });
    expect(first.subject, JSON.stringify(first.event)).toBe("backup.completed");
    await until("the first run's lease to go", async () => (await p.wiring.leases.get(vmId)) === undefined);
  }, 300_000);

  afterAll(async () => {
    await p?.stop();
  });

  it(`coalescing - five requests within a second (${slots} slot(s)): one run, one incremental point, one outcome each`, async () => {
    const client = p.wiring.engines.get("prd")!.client;
    const pointsBefore = (await p.wiring.chains.read(vmId))!.restorePoints.length;
    const backupsBefore = (await client.backups.list(vmId)).length;
    const seenBefore = p.seen.length;
    await p.lab.engines.prd!.control.writeGuestData(diskIds[1]!, { offset: MiB, length: MiB, pattern: 0x32 });

    const ids = await Promise.all([0, 1, 2, 3, 4].map((i) => p.request("vm02", { id: `c${slots}-${i}-${Date.now()}` })));
    const outcomes = await Promise.all(ids.map((id) => p.outcome(id, 300_000)));
    await until("the run's lease to go", async () => (await p.wiring.leases.get(vmId)) === undefined);

    for (const o of outcomes) expect(o.subject, JSON.stringify(o.event)).toBe("backup.completed");
    // One run covers all five: the same run id and restore point in every outcome.
    const runIds = new Set(outcomes.map((o) => o.event.runId));
    const points = new Set(outcomes.map((o) => o.event.restorePoint));
    expect(runIds.size, JSON.stringify(outcomes.map((o) => o.event))).toBe(1);
    expect(points.size).toBe(1);
    expect(ids).toContain([...runIds][0]);
    for (const o of outcomes) expect(o.event.kind).toBe("incremental");

    const chain = (await p.wiring.chains.read(vmId))!;
    expect(chain.restorePoints.length).toBe(pointsBefore + 1);
    expect(chain.restorePoints.at(-1)!.id).toBe([...points][0]);
    expect(chain.restorePoints.at(-1)!.kind).toBe("incremental");
    expect((await client.backups.list(vmId)).length).toBe(backupsBefore + 1);

    // Exactly one outcome per request, and no failure of any kind in between.
    const batch = p.seen.slice(seenBefore);
    for (const id of ids) {
      const mine = batch.filter((s) => (s.subject === "backup.completed" || s.subject === "backup.failed") && s.event.correlationId === id);
      // Distinct outcome events (a re-publish with the same id is the same outcome, deduplicated by JetStream).
      expect(new Set(mine.map((s) => `${s.subject}:${String(s.event.id)}`)).size, id).toBe(1);
    }
    expect(batch.filter((s) => s.subject === "backup.failed").map((s) => s.event.code)).toEqual([]);
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
  }, 400_000);
  it(`coalescing - \`ferry backup vm02 --wait\` twice at once (${slots} slot(s)): both exit 0 with the same restore point`, async () => {
    const ferry = async (...args: string[]) => {
      const stdout = new PassThrough();
      const stderr = new PassThrough();
      let out = "";
      let err = "";
      stdout.on("data", (b) => (out += String(b)));
      stderr.on("data", (b) => (err += String(b)));
      const code = await main(args, { stdout, stderr, env: { NATS_URL: p.nats.url }, cwd: p.dir, signal: new AbortController().signal });
      return { code, out, err };
    };
    const pointsBefore = (await p.wiring.chains.read(vmId))!.restorePoints.length;
    await p.lab.engines.prd!.control.writeGuestData(diskIds[0]!, { offset: 2 * MiB, length: MiB, pattern: 0x33 });
    const [a, b] = await Promise.all([ferry("backup", "vm02", "--wait", "--json"), ferry("backup", "vm02", "--wait", "--json")]);
    expect(a.code, a.err).toBe(0);
    expect(b.code, b.err).toBe(0);
    const ea = JSON.parse(a.out.trim()) as Record<string, unknown>;
    const eb = JSON.parse(b.out.trim()) as Record<string, unknown>;
    expect(ea.restorePoint).toBe(eb.restorePoint);
    expect(ea.runId).toBe(eb.runId);
    expect(ea.correlationId).not.toBe(eb.correlationId);
    await until("the run's lease to go", async () => (await p.wiring.leases.get(vmId)) === undefined);
    expect((await p.wiring.chains.read(vmId))!.restorePoints.length).toBe(pointsBefore + 1);
  }, 400_000);
});
