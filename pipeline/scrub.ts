/**
 * The scheduled scrub (issue 11): each VM's newest restore point is verified once per interval
 * (default a week) — `qemu-img check` of its chain and every block against the recorded digests,
 * as `ferry verify` does — so rot is found before a restore needs the data. The VMs are spread
 * over the interval by a stable hash of the VM id (each VM has its own slot), and the reconciler
 * runs at most one scrub per pass. Any verification counts (an operator's `ferry verify` too).
 *
 * A failure is recorded on the point (markVerified, in the store's manifest): pipeline/chain-view
 * turns it into ChainSummary.broken, so the VM's next backup is a full one with the reason; and
 * one alert goes to the engine audit log (custom_id per failed verification, so a retry of the
 * post is refused as a duplicate). The scrub runs under the VM lease: no backup or retention of
 * the VM runs meanwhile.
 */
import { createHash } from "node:crypto";
import { StoreError, type Store } from "../adapters/store/mod.ts";
import { TransientError } from "../contracts/errors.ts";
import { visiblePoints, type ChainRecord } from "../domain/chain/mod.ts";
import { customIdFor } from "./run-ids.ts";
import { VmBusyError, type Leases } from "./vm-lease.ts";
import type { BackupEngine } from "./ports.ts";

export interface ScrubDeps {
  readonly store: Pick<Store, "listVms" | "readManifest" | "verify" | "markVerified">;
  readonly leases: Pick<Leases, "acquire" | "ttlMs">;
  /** The engine whose audit log gets the alert (the point's run's engine, else the default). */
  readonly engineFor: (runId: string | undefined) => Promise<Pick<BackupEngine, "postEvent"> | undefined>;
  /** Each VM's newest point is verified once per this many ms (CONFIG_DEFAULTS.scrubEveryDays). */
  readonly everyMs: number;
  readonly owner: string;
  readonly clock: () => Date;
  readonly log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

export interface ScrubResult {
  readonly vm: string;
  readonly vmId: string;
  readonly pointId: string;
  readonly seq: number;
  readonly ok: boolean;
  readonly detail?: string | undefined;
}

/** The start of the VM's latest slot at or before `now`: its offset in the interval comes from a hash of its id. */
export function lastSlot(vmId: string, everyMs: number, now: Date): number {
  const offset = Math.floor((createHash("sha256").update(vmId).digest().readUInt32BE(0) / 2 ** 32) * everyMs);
  return Math.floor((now.getTime() - offset) / everyMs) * everyMs + offset;
}

/** When the VM's chain was last verified (any point), else its oldest point's time; undefined: nothing to verify. */
function lastScrubOf(record: ChainRecord): number | undefined {
  const points = visiblePoints(record);
  if (!points.length) return undefined;
  const verified = points.flatMap((p) => (p.verified ? [Date.parse(p.verified.time)] : []));
  return verified.length ? Math.max(...verified) : Date.parse(points[0]!.time);
}

/** Due: no verification since the VM's latest slot began. */
export function scrubDue(record: ChainRecord, everyMs: number, now: Date): boolean {
  const last = lastScrubOf(record);
  return last !== undefined && last < lastSlot(record.vm.id, everyMs, now);
}

export type Scrubber = ReturnType<typeof createScrubber>;

export function createScrubber(deps: ScrubDeps) {
  /**
   * Verify the VM's newest point under its lease and record the verdict; undefined when busy or
   * raced, or (`onlyIfDue`) when another process scrubbed it meanwhile.
   */
  async function scrubVm(vmName: string, o: { onlyIfDue?: boolean; signal?: AbortSignal | undefined } = {}): Promise<ScrubResult | undefined> {
    const record = await deps.store.readManifest(vmName);
    const point = record ? visiblePoints(record).at(-1) : undefined;
    if (!record || !point) return undefined;
    const now = deps.clock();
    let lease;
    try {
      lease = await deps.leases.acquire({ vmId: record.vm.id, runId: `scrub-${point.id}-${now.getTime()}`, owner: deps.owner, step: "scrub" });
    } catch (err) {
      if (err instanceof VmBusyError) return undefined; // a backup runs: next pass
      throw err;
    }
    // Another reconciler may have scrubbed it between our look and the lease: read again under it.
    const fresh = o.onlyIfDue ? await deps.store.readManifest(vmName).catch(() => undefined) : record;
    if (o.onlyIfDue && (!fresh || !scrubDue(fresh, deps.everyMs, now))) {
      await lease.release();
      return undefined;
    }
    const beat = setInterval(() => void lease.renew().catch(() => undefined), Math.max(500, Math.floor(deps.leases.ttlMs / 3)));
    let ok: boolean;
    let detail: string | undefined;
    try {
      try {
        const report = await deps.store.verify(vmName, point.id, { record: true, ...(o.signal ? { signal: o.signal } : {}) });
        ok = report.ok;
        detail = report.disks.flatMap((d) => d.problems.map((p) => `${d.diskId}: ${p}`)).join("; ").slice(0, 2000) || undefined;
      } catch (err) {
        // A layer missing, mismatched or hostile is a failed verification too; busy, raced or
        // cut short by the process stopping is not (it is due again in the next process).
        if (!(err instanceof StoreError) || o.signal?.aborted) throw err;
        ok = false;
        detail = err.message.slice(0, 2000);
        await deps.store.markVerified(vmName, point.id, { time: deps.clock().toISOString(), ok, detail });
      }
    } catch (err) {
      if (err instanceof TransientError) {
        deps.log.warn({ err, vm: vmName }, "scheduled scrub put off (the store was busy or the point changed)");
        return undefined;
      }
      throw err;
    } finally {
      clearInterval(beat);
      await lease.release();
    }
    const result: ScrubResult = { vm: vmName, vmId: record.vm.id, pointId: point.id, seq: point.seq, ok, ...(detail ? { detail } : {}) };
    if (ok) {
      deps.log.info({ ...result }, "scheduled scrub verified the newest restore point");
      return result;
    }
    deps.log.warn({ ...result }, "scheduled scrub: the newest restore point failed verification; the next backup is a full one");
    const engine = await deps.engineFor(point.runId).catch(() => undefined);
    await engine
      ?.postEvent({
        description: `Ferry: scheduled verification of VM ${vmName} restore point ${point.seq} failed${detail ? `: ${detail}` : ""}; its chain is not built on, the next backup is a full one`.slice(0, 1000),
        severity: "alert",
        customId: customIdFor(`scrub:${record.vm.id}:${point.id}:${now.toISOString()}`, "failed"),
        vmId: record.vm.id,
      })
      .catch((err: unknown) => deps.log.warn({ err, vm: vmName }, "could not post the scrub alert to the engine audit log"));
    return result;
  }

  return {
    scrubVm,
    /**
     * Scrub the most overdue VM (one per call); undefined when none is due or the due ones are
     * busy. `signal` (the process stopping) cuts the verification short; the lease is released.
     */
    async scrubNext(signal?: AbortSignal): Promise<ScrubResult | undefined> {
      const now = deps.clock();
      const due: { vm: string; since: number }[] = [];
      for (const vm of await deps.store.listVms()) {
        const record = await deps.store.readManifest(vm).catch(() => undefined);
        if (record && scrubDue(record, deps.everyMs, now)) due.push({ vm, since: lastScrubOf(record)! });
      }
      for (const { vm } of due.sort((a, b) => a.since - b.since)) {
        signal?.throwIfAborted();
        const r = await scrubVm(vm, { onlyIfDue: true, signal });
        if (r) return r;
      }
      return undefined;
    },
  };
}
