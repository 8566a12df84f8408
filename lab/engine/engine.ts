import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AuditType, type AuditTypeName } from "./audit.ts";
import { NotFound } from "./http.ts";
import type { ImageioPort } from "./imageio-port.ts";
import type { EngineState, EventSeverity, LabBackup, LabDisk, LabEvent, LabTransfer, LabVm } from "./model.ts";
import type { DiskStorage } from "./storage.ts";

/** How fast the simulated engine moves. Tests use the defaults; `ferry lab up` slows nothing down either. */
export interface EngineTimings {
  /** New disk: locked → ok. */
  diskCreateMs: number;
  /** Each backup phase step (initializing → starting → ready). */
  backupPhaseMs: number;
  /** Hybrid finalize: finalizing → succeeded (plus the snapshot merge). */
  backupFinalizeMs: number;
  /** Snapshot: locked → ok. */
  snapshotMs: number;
  /** 0: POST /imagetransfers already answers `transferring`; otherwise `initializing` for this long. */
  transferInitMs: number;
  /** Transfer finalize / cancel settling time. */
  transferFinalizeMs: number;
  /** How often the engine polls imageio tickets (activity, idle time, renewal). */
  monitorIntervalMs: number;
  /** ImageTransferClientTicketValidityInSeconds. */
  ticketValiditySec: number;
  /** Renew when this close to expiry (ImageTransferHostTicketRefreshAllowanceInSeconds). */
  ticketRefreshAllowanceSec: number;
  /** VM start/stop: powering_up → up, powering_down → down. */
  vmPowerMs: number;
  /** Finished transfers and backups are removed after these (real engine: 15 and 30 min). */
  successRetentionMs: number;
  failureRetentionMs: number;
  /** SSO/engine session inactivity (UserSessionTimeOutInterval, 30 min). */
  sessionIdleMs: number;
  /** Keep a copy of each backup's point-in-time image at finalize (for exportImage atBackup). */
  keepPointInTime: boolean;
}

export const DEFAULT_TIMINGS: EngineTimings = Object.freeze({
  diskCreateMs: 200,
  backupPhaseMs: 150,
  backupFinalizeMs: 150,
  snapshotMs: 200,
  transferInitMs: 0,
  transferFinalizeMs: 100,
  monitorIntervalMs: 250,
  ticketValiditySec: 300,
  ticketRefreshAllowanceSec: 240,
  vmPowerMs: 200,
  successRetentionMs: 15 * 60_000,
  failureRetentionMs: 30 * 60_000,
  sessionIdleMs: 30 * 60_000,
  keepPointInTime: true,
});

/** Faults armed through the control API. */
export interface EngineFaults {
  /** Fail the next transfer (optionally of one direction) when it reaches this phase. */
  failTransfer: Array<{ phase: "initializing" | "transferring" | "finalizing"; direction?: "upload" | "download" }>;
  /** Answer `status` this many times on API paths matching the regex. */
  httpErrors: Array<{ status: number; remaining: number; path: RegExp }>;
  /** Hold the next finalize in `finalizing` this long. */
  stallFinalize: Array<{ ms: number; target: "backup" | "transfer" }>;
  /** Transfers whose ticket must not be renewed (expired on purpose). */
  noRenew: Set<string>;
}

export class Engine {
  readonly faults: EngineFaults = { failTransfer: [], httpErrors: [], stallFinalize: [], noRenew: new Set() };
  private readonly timers = new Set<NodeJS.Timeout>();
  private saveTimer: NodeJS.Timeout | undefined;
  private saving: Promise<void> = Promise.resolve();
  private closed = false;
  /** Errors from background work (phase timers), kept for the control API and tests. */
  readonly backgroundErrors: string[] = [];
  baseUrl = "";

  constructor(
    readonly name: string,
    readonly st: EngineState,
    readonly storage: DiskStorage,
    /** Replaced when the CA rotates (the daemon's certificate comes from the engine CA). */
    public imageio: ImageioPort,
    readonly timings: EngineTimings,
    readonly dataDir: string,
    readonly users: ReadonlyMap<string, string>,
  ) {}

  // ---------------------------------------------------------------- lookups

  findVm(id: string): LabVm | undefined {
    return this.st.vms.find((v) => v.id === id);
  }
  vm(id: string): LabVm {
    const vm = this.findVm(id);
    if (!vm) throw new NotFound();
    return vm;
  }
  findDisk(id: string): LabDisk | undefined {
    return this.st.disks.find((d) => d.id === id);
  }
  disk(id: string): LabDisk {
    const d = this.findDisk(id);
    if (!d) throw new NotFound();
    return d;
  }
  vmDisks(vm: LabVm): LabDisk[] {
    return vm.attachments.map((a) => this.findDisk(a.diskId)).filter((d): d is LabDisk => d !== undefined);
  }
  /** The VM a disk is attached to (a disk has at most one unless shareable). */
  vmOfDisk(diskId: string): LabVm | undefined {
    return this.st.vms.find((v) => v.attachments.some((a) => a.diskId === diskId));
  }
  /** Backups of the VM that are not finished (the VM-level "during a backup" lock). */
  openBackups(vmId: string): LabBackup[] {
    return this.st.backups.filter((b) => b.vmId === vmId && b.phase !== "succeeded" && b.phase !== "failed");
  }
  openTransfers(): LabTransfer[] {
    return this.st.transfers.filter((t) => !t.phase.startsWith("finished_"));
  }

  // ---------------------------------------------------------------- audit log

  audit(
    type: AuditTypeName,
    description: string,
    o: { severity?: EventSeverity; vmId?: string; correlationId?: string; storageDomainId?: string; customData?: string } = {},
  ): LabEvent {
    return this.addEvent({
      code: AuditType[type],
      severity: o.severity ?? "normal",
      description,
      origin: "oVirt",
      ...(o.vmId ? { vmId: o.vmId } : {}),
      ...(o.correlationId ? { correlationId: o.correlationId } : {}),
      ...(o.storageDomainId ? { storageDomainId: o.storageDomainId } : {}),
      ...(o.customData ? { customData: o.customData } : {}),
      ...(o.vmId ? { clusterId: this.st.ids.cluster } : {}),
    });
  }

  addEvent(e: Omit<LabEvent, "id" | "index" | "time">): LabEvent {
    const id = this.st.nextEventId++;
    const event: LabEvent = { ...e, id, index: id, time: Date.now() };
    this.st.events.push(event);
    this.save();
    return event;
  }

  // ---------------------------------------------------------------- background work

  /** Run `fn` after `ms`, tracked so stop() cancels it; failures land in backgroundErrors. */
  later(ms: number, fn: () => Promise<void> | void): void {
    if (this.closed) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (this.closed) return;
      Promise.resolve()
        .then(fn)
        .catch((err: unknown) => {
          this.backgroundErrors.push(err instanceof Error ? (err.stack ?? err.message) : String(err));
        })
        .finally(() => this.save());
    }, ms);
    this.timers.add(t);
  }

  every(ms: number, fn: () => Promise<void> | void): void {
    let busy = false;
    const t = setInterval(() => {
      if (busy || this.closed) return;
      busy = true;
      Promise.resolve()
        .then(fn)
        .catch((err: unknown) => {
          this.backgroundErrors.push(err instanceof Error ? (err.stack ?? err.message) : String(err));
        })
        .finally(() => {
          busy = false;
        });
    }, ms);
    this.timers.add(t);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.saveTimer) clearTimeout(this.saveTimer);
    await this.saving;
    await this.writeState();
  }

  // ---------------------------------------------------------------- persistence

  get statePath(): string {
    return join(this.dataDir, "state.json");
  }

  /** Debounced write of state.json (the lab's state lives under its data dir). */
  save(): void {
    if (this.closed || this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      this.saving = this.saving.then(() => this.writeState()).catch(() => undefined);
    }, 100);
  }

  private async writeState(): Promise<void> {
    const tmp = `${this.statePath}.tmp`;
    await writeFile(tmp, JSON.stringify(this.st));
    await rename(tmp, this.statePath);
  }

  static async loadState(dataDir: string): Promise<EngineState | undefined> {
    const p = join(dataDir, "state.json");
    if (!existsSync(p)) return undefined;
    return JSON.parse(await readFile(p, "utf8")) as EngineState;
  }

  static freshState(): EngineState {
    return {
      ids: {
        dataCenter: randomUUID(),
        cluster: randomUUID(),
        host: randomUUID(),
        network: randomUUID(),
        vnicProfile: randomUUID(),
        template: "00000000-0000-0000-0000-000000000000",
        instance: randomUUID(),
        adminUser: randomUUID(),
      },
      storageDomains: [
        { id: randomUUID(), name: "data", storage: "nfs" },
        { id: randomUUID(), name: "data-block", storage: "iscsi" },
      ],
      vms: [],
      disks: [],
      snapshots: [],
      checkpoints: [],
      backups: [],
      transfers: [],
      events: [],
      nextEventId: 1,
    };
  }
}
