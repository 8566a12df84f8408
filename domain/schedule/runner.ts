/**
 * One pass of the scheduler over ports (no I/O here): for every enabled VM, the slots due in
 * (from, to], each published once as backup.requested with msgID = `<vm>:<slot>`.
 *
 * Two layers keep a slot from becoming two backups:
 * - the msgID: JetStream drops a second publish of the same id within FERRY_COMMANDS' duplicate
 *   window (1 hour), which covers overlapping cron runs and two schedulers at once;
 * - a claim per slot (KV, kept for days): a run whose window reaches further back than the
 *   duplicate window (catching up after downtime) skips slots already claimed.
 * A slot is published first and claimed after, so a crash between the two can at worst repeat a
 * slot (one extra incremental) but never lose one.
 */
import { compileSchedule, dueSlots, slotClaimKey, slotIso, slotKey, type Schedule } from "./slots.ts";

export interface ScheduledVm {
  name: string;
  engine?: string;
  enabled?: boolean;
  schedule: Schedule;
}

export interface SlotClaims {
  /** Whether the slot was already published by an earlier run. */
  has(key: string): Promise<boolean>;
  /** Record the slot; false when someone else recorded it first. */
  claim(key: string, value: Record<string, unknown>): Promise<boolean>;
}

export interface BackupRequest {
  id: string;
  time: string;
  correlationId: string;
  vm: string;
  engine?: string;
  mode: "auto";
  reason: string;
}

export interface SlotPublisher {
  publish(event: BackupRequest, msgId: string): Promise<{ duplicate: boolean; seq?: number }>;
}

export type SlotStatus = "due" | "published" | "duplicate" | "claimed" | "failed";

export interface SlotResult {
  vm: string;
  slot: string;
  key: string;
  status: SlotStatus;
  error?: string;
}

export interface ScheduleRun {
  vms: readonly ScheduledVm[];
  from: Date;
  to: Date;
  now: Date;
  timeZone?: string;
  /** Without a publisher nothing is published: every due slot is reported as 'due'. */
  publisher?: SlotPublisher;
  claims?: SlotClaims;
  maxWindowMs?: number;
}

export async function runSchedule(run: ScheduleRun): Promise<SlotResult[]> {
  const out: SlotResult[] = [];
  for (const vm of run.vms) {
    if (vm.enabled === false) continue;
    const compiled = compileSchedule(vm.schedule);
    const slots = dueSlots(compiled, run.from, run.to, {
      ...(run.timeZone ? { timeZone: run.timeZone } : {}),
      ...(run.maxWindowMs ? { maxWindowMs: run.maxWindowMs } : {}),
    });
    for (const slot of slots) {
      const key = slotKey(vm.name, slot);
      const r: SlotResult = { vm: vm.name, slot: slotIso(slot), key, status: "due" };
      out.push(r);
      if (!run.publisher) continue;
      const claimKey = slotClaimKey(vm.name, slot);
      try {
        if (run.claims && (await run.claims.has(claimKey))) {
          r.status = "claimed";
          continue;
        }
        const ack = await run.publisher.publish(
          {
            id: key,
            time: run.now.toISOString(),
            correlationId: key,
            vm: vm.name,
            ...(vm.engine ? { engine: vm.engine } : {}),
            mode: "auto",
            reason: `scheduled (${compiled.description}) for ${slotIso(slot)}`,
          },
          key,
        );
        r.status = ack.duplicate ? "duplicate" : "published";
        await run.claims?.claim(claimKey, { vm: vm.name, slot: slotIso(slot), key, at: run.now.toISOString(), ...(ack.seq ? { seq: ack.seq } : {}) });
      } catch (err) {
        r.status = "failed";
        r.error = err instanceof Error ? err.message : String(err);
      }
    }
  }
  return out;
}
