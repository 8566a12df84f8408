import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AuditType, type AuditTypeName } from "./audit.ts";
import { fault, NotFound } from "./http.ts";
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
  /** VM start: wait_for_launch (half) → powering_up (half) → up; shutdown: powering_down → down. */
  vmPowerMs: number;
  /** Finished transfers and backups are removed after these (real engine: 15 and 30 min). */
  successRetentionMs: number;
  failureRetentionMs: number;
  /** SSO/engine session inactivity (UserSessionTimeOutInterval, 30 min). */
  sessionIdleMs: number;
  /** Keep a copy of each backup's point-in-time image at finalize (for exportImage atBackup). */
  keepPointInTime: boolean;
  /**
   * At most this many backups keep their copies, and at most this many bytes (allocated) in all;
   * the oldest go first, the newest is always kept. Copies of every backup of a multi-GiB disk
   * once filled the machine's disk.
   */
  keepPointInTimeCount: number;
  keepPointInTimeBytes: number;
}

/** Free space of a storage domain the lab creates by default (1 TiB). */
export const DEFAULT_DOMAIN_BYTES = 1024 ** 4;

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
  keepPointInTimeCount: 32,
  keepPointInTimeBytes: 4 * 1024 ** 3,
});

/** Faults armed through the control API. */
export interface EngineFaults {
  /** Fail the next transfer (optionally of one direction) when it reaches this phase. */
  failTransfer: Array<{ phase: "initializing" | "transferring" | "finalizing"; direction?: "upload" | "download"; diskId?: string }>;
  /** Answer `status` this many times on API paths matching the regex. */
  httpErrors: Array<{ status: number; remaining: number; path: RegExp }>;
  /** Hold the next finalize in `finalizing` this long. */
  stallFinalize: Array<{ ms: number; target: "backup" | "transfer" }>;
  /** Transfers whose ticket must not be renewed (expired on purpose). */
  noRenew: Set<string>;
  /** The next start (of this VM, by name or id, or of any VM) ends `down` with an error. */
  failBoot: Array<{ vm?: string }>;
}

export class Engine {
  readonly faults: EngineFaults = { failTransfer: [], httpErrors: [], stallFinalize: [], noRenew: new Set(), failBoot: [] };
  private readonly timers = new Set<NodeJS.Timeout>();
  private saveTimer: NodeJS.Timeout | undefined;
  private saving: Promise<void> = Promise.resolve();
  private closed = false;
  /** Errors from background work (phase timers), kept for the control API and tests. */
  readonly backgroundErrors: string[] = [];
  baseUrl = "";

  readonly name: string;
  readonly st: EngineState;
  readonly storage: DiskStorage;
  /** Replaced when the CA rotates (the daemon's certificate comes from the engine CA). */
  imageio: ImageioPort;
  readonly timings: EngineTimings;
  readonly dataDir: string;
  readonly users: ReadonlyMap<string, string>;
  constructor(
    name: string,
    st: EngineState,
    storage: DiskStorage,
    imageio: ImageioPort,
    timings: EngineTimings,
    dataDir: string,
    users: ReadonlyMap<string, string>,
  ) {
    this.name = name;
    this.st = st;
    this.storage = storage;
    this.imageio = imageio;
    this.timings = timings;
    this.dataDir = dataDir;
    this.users = users;
  }

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

  // ---------------------------------------------------------------- MAC pool

  macInUse(mac: string): boolean {
    const m = mac.toLowerCase();
    return this.st.vms.some((v) => v.nics.some((n) => n.mac.toLowerCase() === m));
  }

  /** The next free address of the engine's MAC pool. */
  allocateMac(): string {
    const hex = (n: number) => n.toString(16).padStart(2, "0");
    for (let i = 0; i < 65536; i++) {
      const n = this.st.macPool.next++ % 65536;
      const mac = `${this.st.macPool.prefix}:${hex(n >> 8)}:${hex(n & 255)}`;
      if (!this.macInUse(mac)) return mac;
    }
    // EngineMessage MAC_POOL_NOT_ENOUGH_MAC_ADDRESSES [inferred wording].
    throw fault(409, "Not enough MAC addresses left in MAC Address Pool.");
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
      ...(o.vmId ? { clusterId: this.findVm(o.vmId)?.clusterId ?? this.st.ids.cluster } : {}),
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
    return Engine.normalizeState(JSON.parse(await readFile(p, "utf8")) as EngineState);
  }

  /** Fills what a state.json written by an older lab lacks (networks, clusters, NICs, space accounting). */
  static normalizeState(st: EngineState): EngineState {
    const fresh = Engine.freshState();
    // Disks of a lab from before space accounting took nothing from their domain.
    if (!st.macPool) for (const d of st.disks) d.allocatedBytes ??= 0;
    st.clusters ??= [{ id: st.ids.cluster, name: "Default", description: "The default server cluster" }];
    st.networks ??= [{ id: st.ids.network, name: "ovirtmgmt", description: "Management Network" }];
    st.vnicProfiles ??= [{ id: st.ids.vnicProfile, name: "ovirtmgmt", networkId: st.ids.network, portMirroring: false }];
    st.macPool ??= fresh.macPool;
    for (const sd of st.storageDomains) {
      sd.availableBytes ??= DEFAULT_DOMAIN_BYTES;
      sd.usedBytes ??= 0;
      sd.criticalSpaceGb ??= 5;
    }
    for (const vm of st.vms) {
      vm.nics ??= [];
      vm.cpuSockets ??= 1;
      vm.cpuThreads ??= 1;
      vm.bootDevices ??= ["hd"];
    }
    return st;
  }

  static freshState(): EngineState {
    const ids = {
      dataCenter: randomUUID(),
      cluster: randomUUID(),
      host: randomUUID(),
      network: randomUUID(),
      vnicProfile: randomUUID(),
      template: "00000000-0000-0000-0000-000000000000",
      instance: randomUUID(),
      adminUser: randomUUID(),
    };
    const sd = (name: string, storage: "nfs" | "iscsi") => ({
      id: randomUUID(),
      name,
      storage,
      availableBytes: DEFAULT_DOMAIN_BYTES,
      usedBytes: 0,
      criticalSpaceGb: 5,
    });
    const [b0, b1] = randomBytes(2);
    return {
      ids,
      clusters: [{ id: ids.cluster, name: "Default", description: "The default server cluster" }],
      networks: [{ id: ids.network, name: "ovirtmgmt", description: "Management Network" }],
      vnicProfiles: [{ id: ids.vnicProfile, name: "ovirtmgmt", networkId: ids.network, portMirroring: false }],
      // engine-setup generates a default pool 56:6f:XX:XX:00:00-56:6f:XX:XX:ff:ff [inferred].
      macPool: { prefix: ["56", "6f", b0!.toString(16).padStart(2, "0"), b1!.toString(16).padStart(2, "0")].join(":"), next: 0 },
      storageDomains: [sd("data", "nfs"), sd("data-block", "iscsi")],
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
