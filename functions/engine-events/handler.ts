/**
 * The chain guard's consumer of `ovirt.event` (from the poller or the hook endpoint): a
 * chain-breaking event marks the VM so its next backup is a full with the event as the reason
 * (pipeline/chain-guard.ts; backup-requested sees it through pipeline/chain-view.ts); a removed VM
 * is marked so `ferry schedule` skips it, and reported once (one log line, one `backup.failed`
 * VM_REMOVED, which functions/alerts posts to the engine's audit log).
 *
 * Only VMs Ferry backs up on that engine are acted on: the VM is found by id in the chains, else
 * by name, and its configured engine must be the event's (a DR copy's events never touch the
 * production VM's chain).
 */
import { backupFailed, chainBreakingKinds, type OvirtEvent } from "../../contracts/mod.ts";
import { summarizeChain, type ChainRecord } from "../../domain/chain/mod.ts";
import type { ChainGuard } from "../../pipeline/chain-guard.ts";
import type { HandlerContext, Outcome, Received } from "../runtime/mod.ts";

export interface EngineEventDeps {
  readonly guard: Pick<ChainGuard, "markFull" | "markRemoved" | "removed">;
  readonly chains: {
    read(vmId: string): Promise<ChainRecord | undefined>;
    list(): Promise<readonly ChainRecord[]>;
  };
  /** The engine a VM is backed up from (config vms.<name>.engine, default 'prd'). */
  readonly engineOf: (vmName: string) => string;
  readonly clock: () => Date;
}

/** The reason text of the full an engine event causes (the restore point's `reason`). */
export function eventReason(e: Pick<OvirtEvent, "engine" | "source" | "engineEvent">): string {
  const ev = e.engineEvent;
  const what = ev.index !== undefined ? `engine event ${ev.index}${ev.code !== undefined ? ` (${ev.code})` : ""}` : `${e.source} event${ev.code !== undefined ? ` (${ev.code})` : ""}`;
  return `${what} on ${e.engine}: ${ev.description}`.slice(0, 1000);
}

export function createEngineEventHandler(deps: EngineEventDeps) {
  /** The chain of the VM the event is about, when Ferry backs it up from this engine. */
  const chainOf = async (event: OvirtEvent): Promise<ChainRecord | undefined> => {
    let record = event.vm.id ? await deps.chains.read(event.vm.id) : undefined;
    if (!record && event.vm.name && !event.vm.id) record = (await deps.chains.list()).find((r) => r.vm.name === event.vm.name);
    if (!record || deps.engineOf(record.vm.name) !== event.engine) return undefined;
    return record;
  };

  return async (event: Received<OvirtEvent, Record<never, never>>, ctx: HandlerContext): Promise<Outcome> => {
    const log = ctx.log.child({ engine: event.engine, kind: event.kind, source: event.source, index: event.engineEvent.index });
    const reason = eventReason(event);

    if (chainBreakingKinds.has(event.kind)) {
      const record = await chainOf(event);
      if (!record) {
        log.debug({ vm: event.vm }, "engine event about a VM Ferry has no chain of on this engine: nothing to guard");
        return {};
      }
      const { mark, changed } = await deps.guard.markFull({
        vm: record.vm,
        reason,
        kind: event.kind,
        engine: event.engine,
        ...(event.disks?.length ? { disks: event.disks } : {}),
        eventId: event.id,
        now: deps.clock(),
        lastFullTime: summarizeChain(record).lastFullTime,
      });
      if (changed) log.info({ vm: record.vm.name, reason: mark.reason, more: mark.more }, "chain guard: the next backup of this VM is a full");
      return {};
    }

    if (event.kind === "vm-removed") {
      const name = event.vm.name ?? (event.vm.id ? (await deps.chains.read(event.vm.id))?.vm.name : undefined);
      if (!name || deps.engineOf(name) !== event.engine) {
        log.debug({ vm: event.vm }, "removed VM is not one Ferry backs up from this engine");
        return {};
      }
      const before = await deps.guard.removed(name);
      // Reported once: a later report of the same removal (the hook, a redelivery) is acked silently.
      if (before && before.event !== event.id) return {};
      const message = `VM ${name} was removed from engine ${event.engine} (${reason}); Ferry no longer schedules its backups. Its restore points stay in the store; remove vms.${name} from the config when they are no longer needed.`;
      log.warn({ vm: name }, message);
      // Published before the mark: a crash in between reports again with the same msgID (deduplicated).
      await ctx.publish(
        ctx.emit(backupFailed, { vm: name, code: "VM_REMOVED", message: message.slice(0, 2000), step: "ovirt.event", engine: event.engine }, { id: `${event.id}:vm-removed` }),
      );
      await deps.guard.markRemoved({ vm: { ...(event.vm.id ? { id: event.vm.id } : {}), name }, engine: event.engine, reason, recordedAt: deps.clock().toISOString(), event: event.id });
      return {};
    }

    log.debug({}, "engine event kind not acted on");
    return {};
  };
}
