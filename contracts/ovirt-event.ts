import { z } from "zod";
import { defineContract, type Infer } from "./define.ts";
import { engineName, envelope, id, isoTime, vmRef } from "./fields.ts";

/**
 * What happened on the engine, reduced to the kinds that change what Ferry must do next.
 * A chain-breaking kind makes the affected disks' next layer a full, with this event as the reason.
 */
export const ovirtEventKinds = [
  "snapshot-restored",
  "snapshot-committed",
  "disk-added",
  "disk-removed",
  "disk-resized",
  "disk-moved",
  "checkpoint-removed",
  "vm-removed",
  "vm-migrating",
  "vm-stopped",
] as const;
export const ovirtEventKind = z.enum(ovirtEventKinds);
export type OvirtEventKind = z.infer<typeof ovirtEventKind>;

/** Kinds after which the VM's (or the named disks') next backup layer must be a full. */
export const chainBreakingKinds: ReadonlySet<OvirtEventKind> = new Set([
  "snapshot-restored",
  "snapshot-committed",
  "disk-added",
  "disk-removed",
  "disk-resized",
  "disk-moved",
  "checkpoint-removed",
]);

const example = {
  id: "prd:event:4711",
  time: "2025-01-31T04:00:00Z",
  correlationId: "prd:event:4711",
  engine: "prd",
  source: "poller",
  kind: "snapshot-restored",
  vm: { id: "5ad2b4f1-9c31-4a4e-8c57-7d1d4c0b9e01", name: "web01" },
  engineEvent: { index: 4711, code: 48, severity: "normal", time: "2025-01-31T03:59:58Z", description: "VM web01 restored from Snapshot 'before-upgrade'." },
};

export const ovirtEvent = defineContract({
  subject: "ovirt.event",
  kind: "event",
  title: "ovirt.event",
  description:
    "Fact: something happened on an engine that matters to Ferry (a snapshot restored or committed, a disk added/removed/resized/moved, a checkpoint removed, a VM removed). Published by the engine-event poller (GET /events?from=) and by the hook endpoint (`ferry hooks serve`).",
  schema: z.looseObject({
    ...envelope,
    engine: engineName.describe("The engine the event happened on (name from the Ferry config)."),
    source: z.enum(["poller", "hook"]).describe("Who saw it: the engine-event poller, or an oVirt/VDSM hook posting to `ferry hooks serve`."),
    kind: ovirtEventKind.describe("What happened, reduced to the kinds Ferry acts on."),
    vm: z
      .union([
        z.object({ id: id.describe("VM id on the engine."), name: vmRef.optional().describe("VM name.") }),
        z.object({ id: id.optional().describe("VM id on the engine."), name: vmRef.describe("VM name.") }),
      ])
      .describe("The VM the event is about: its id, its name, or both."),
    disks: z.array(id).max(256).optional().describe("Disk ids the event is about; absent when it concerns the whole VM."),
    engineEvent: z
      .object({
        index: z.number().int().nonnegative().optional().describe("The engine's event index (the poller's position)."),
        id: id.optional().describe("The engine's event id."),
        code: z.number().int().optional().describe("The engine's audit log type code."),
        severity: z.string().max(32).optional(),
        time: isoTime.optional(),
        description: z.string().max(2000).describe("The engine's (or hook's) own words."),
      })
      .describe("The engine event (or hook report) this fact comes from, recorded as the reason of the next full."),
  }),
  examples: {
    valid: [example, { ...example, source: "hook", kind: "vm-migrating", vm: { name: "web01" }, engineEvent: { description: "before_vm_migrate_source on host h1" } }],
    invalid: [{}, { ...example, kind: "reboot" }, { ...example, vm: {} }, { ...example, engine: "a/b" }],
  },
});
export type OvirtEvent = Infer<typeof ovirtEvent>;
