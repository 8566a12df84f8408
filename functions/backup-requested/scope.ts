/** What the steps of one attempt share: the handler's deps, the delivery, and the run's journal record. */
import type { TransferProgress } from "../../contracts/transfer-progress.ts";
import type { BackupEngine, BackupStore, ChainReader, EngineVm, Transfers } from "../../pipeline/ports.ts";
import type { BackupRun, RunJournal } from "../../pipeline/run-journal.ts";
import type { Leases } from "../../pipeline/vm-lease.ts";
import type { SlotLimits, Slots } from "../../pipeline/engine-slots.ts";
import type { FullPolicy } from "../../domain/backup/decide.ts";

export interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface BackupRequestedDeps {
  readonly engines: (name: string) => BackupEngine | undefined;
  readonly chains: ChainReader;
  readonly runs: RunJournal;
  readonly leases: Leases;
  /**
   * Backups at once per engine (host, storage domain) across all processes (pipeline/engine-slots.ts):
   * taken before the engine backup starts, given back once its disks are out and it is closed.
   * Without it, no limit.
   */
  readonly slots?: Slots | undefined;
  readonly slotLimits?: SlotLimits | undefined;
  readonly transfers: Transfers;
  readonly store: BackupStore;
  readonly clock: () => Date;
  readonly log: Log;
  readonly policy: (vmName: string) => FullPolicy;
  /** This worker's id (lease owner). */
  readonly owner: string;
  /** Marks the engine objects of this deployment (pipeline/run-ids.ts engineDescription). */
  readonly deployment: string;
  /** imageio checksum block size (4 MiB). */
  readonly blockSize?: number;
  /** How often the lease is renewed and working() called. */
  readonly heartbeatMs?: number;
  /** The run of the VM's newest restore point (a request made while it was in flight is covered by it). */
  readonly lastRunOf?: (vmId: string) => Promise<string | undefined>;
  /** How long one engine call waits out an engine outage (default CONFIG_DEFAULTS.engineOutageBudgetMs). */
  readonly engineOutageBudgetMs?: number;
}

/** What the runtime gives one delivery. */
export interface DeliveryContext {
  publish(subject: string, event: { id: string } & Record<string, unknown>): Promise<void>;
  progress?(event: TransferProgress): void;
  working?(): void;
  readonly signal?: AbortSignal | undefined;
  /** True when this is the last delivery JetStream will make (then a transient failure is final). */
  readonly lastAttempt?: boolean | undefined;
  readonly log?: Log | undefined;
}

/** One attempt's view: the journal record is read and changed only through `run`/`change`. */
export class AttemptScope {
  #run: BackupRun;
  readonly deps: BackupRequestedDeps;
  readonly engine: BackupEngine;
  readonly vm: EngineVm;
  readonly ctx: DeliveryContext;
  readonly log: Log;
  constructor(
    deps: BackupRequestedDeps,
    engine: BackupEngine,
    vm: EngineVm,
    ctx: DeliveryContext,
    log: Log,
    run: BackupRun,
  ) {
    this.deps = deps;
    this.engine = engine;
    this.vm = vm;
    this.ctx = ctx;
    this.log = log;
    this.#run = run;
  }

  get run(): BackupRun {
    return this.#run;
  }

  /** Change the journal record (compare-and-set) and keep the stored result. */
  async change(fn: (r: BackupRun) => BackupRun): Promise<BackupRun> {
    const run = this.#run;
    this.#run = (await this.deps.runs.change(run.runId, (cur) => fn(cur ?? run))) ?? run;
    return this.#run;
  }

  /** Re-read the journal (after a step failed part-way). */
  async reload(): Promise<BackupRun> {
    this.#run = (await this.deps.runs.get(this.#run.runId)) ?? this.#run;
    return this.#run;
  }
}
