/**
 * Coalescing: a backup.requested for a VM whose backup run is in flight does not start a second
 * run (one run per VM) and is not retried against the VM lease until that run is over (which
 * used to end in VM_BUSY failures and needless fulls). It joins the run in flight instead: the
 * request is listed in the run's journal (`coalesced`) and acknowledged, and gets its one outcome
 * from that run — backup.completed naming the run's restore point (runId = the covering run) when
 * disk-transferred records the point, or backup.failed with the run's code when it fails for
 * good. A request that arrives after the point is recorded but while the run still holds the VM
 * (retention) is covered by that point at once.
 *
 * Every step is one compare-and-set on the run's journal record, so a request is either listed
 * before the point is recorded (and disk-transferred, which sets `recordedAt` in the same kind
 * of write, sees it) or finds `recordedAt` set — never lost in between.
 */
import type { BackupRequested } from "../contracts/backup-requested.ts";
import type { BackupRun, CoalescedRequest, RunJournal } from "./run-journal.ts";

export type Coalesced =
  /** Listed on the run in flight: its outcome comes with the run's. */
  | { readonly kind: "joined"; readonly run: BackupRun }
  /** The run in flight already recorded its point: that point answers the request now. */
  | { readonly kind: "covered"; readonly run: BackupRun }
  /** The lease holder is no live run (failed, abandoned, unknown) or not a full one for a full request: the request waits for the VM. */
  | { readonly kind: "not-live" };

const ENDED = new Set(["failed", "abandoned"]);

export function requestOf(req: BackupRequested, now: Date): CoalescedRequest {
  return { id: req.id!, correlationId: req.correlationId ?? req.id!, time: req.time ?? now.toISOString() };
}

/** Join request `r` to run `runId` (the VM lease holder), or learn that its point already covers it. */
export async function coalesceInto(runs: RunJournal, runId: string, r: CoalescedRequest, o: { full?: boolean } = {}): Promise<Coalesced> {
  let verdict: Coalesced = { kind: "not-live" };
  await runs.change(runId, (cur) => {
    verdict = { kind: "not-live" };
    if (!cur || ENDED.has(cur.phase)) return undefined;
    // A full backup asked for is covered only by a full one (a run still deciding is no answer).
    if (o.full && cur.mode !== "full") return undefined;
    if (cur.recordedAt) {
      verdict = { kind: "covered", run: cur };
      return undefined;
    }
    verdict = { kind: "joined", run: cur };
    if (cur.coalesced?.some((c) => c.id === r.id)) return undefined; // a redelivery
    return { ...cur, coalesced: [...(cur.coalesced ?? []), r] };
  });
  return verdict;
}

/**
 * disk-transferred committed the run's point: mark the run recorded (once) and return it with the
 * requests it covers. Idempotent: a redelivery gets the same list (the outcomes' ids dedupe).
 */
export async function markRecorded(runs: RunJournal, runId: string, now: Date): Promise<BackupRun | undefined> {
  let seen: BackupRun | undefined;
  const stored = await runs.change(runId, (cur) => {
    seen = cur;
    if (!cur || cur.recordedAt) return undefined;
    return { ...cur, recordedAt: now.toISOString() };
  });
  return stored ?? seen;
}

/** backup.completed for a coalesced request, from the run that covers it. */
export function coveredCompletion(run: BackupRun, r: CoalescedRequest, now: Date): { id: string } & Record<string, unknown> {
  const events = run.disks.map((d) => d.event as { mode?: string; layer?: { size?: number } } | undefined);
  const bytes = events.reduce((n, e) => n + (e?.layer?.size ?? 0), 0);
  return {
    id: `${r.id}:backup.completed`,
    time: now.toISOString(),
    correlationId: r.correlationId,
    vm: run.vm.name,
    vmId: run.vm.id,
    runId: run.runId,
    restorePoint: run.restorePoint!,
    kind: events.length > 0 && events.every((e) => e?.mode === "incremental") ? "incremental" : "full",
    bytes,
    seconds: Math.max(0, (now.getTime() - Date.parse(r.time)) / 1000),
    retention: { removed: [] },
  };
}

/** backup.failed for a coalesced request whose covering run failed for good (runId = that run: one alert). */
export function coveredFailure(run: BackupRun, r: CoalescedRequest, code: string, message: string, now: Date): { id: string } & Record<string, unknown> {
  return {
    id: `${r.id}:backup.failed`,
    time: now.toISOString(),
    correlationId: r.correlationId,
    vm: run.vm.name,
    vmId: run.vm.id,
    engine: run.engine,
    runId: run.runId,
    code,
    message: `this request was coalesced into backup run ${run.runId} of VM ${run.vm.name}, which failed: ${message}`.slice(0, 2000),
  };
}
