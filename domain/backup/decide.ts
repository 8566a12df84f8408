/**
 * The pure decisions of a backup run: full or incremental, which disks, and why.
 * No I/O here, so every rule of issue 4 (fallbacks with reasons) is unit-testable.
 */
import { localDateKey, localTime } from "../schedule/zoned.ts";

export type RequestedMode = "auto" | "full" | "incremental";
export type LayerMode = "full" | "incremental";

/** Full-backup rules of the VM's policy (config: policies.*.full). All optional. */
export interface FullPolicy {
  /** ISO weekday of the weekly full: 1 = Monday .. 7 = Sunday. */
  readonly weeklyFullDay?: number | undefined;
  /** Most layers in a chain, the full included: the next backup is full when the chain has this many. */
  readonly maxChainLength?: number | undefined;
  /** A full is taken when the last full is at least this many days old. */
  readonly fullEveryDays?: number | undefined;
  /**
   * IANA zone whose calendar days weeklyFullDay counts (the config's timeZone, the one the
   * schedules are read in, so a Monday 00:30 slot in Berlin is a Monday). Default UTC.
   */
  readonly timeZone?: string | undefined;
}

/** What the decision needs to know about the VM's chain in Ferry's store. */
export interface ChainSummary {
  /** The newest restore point, if any. */
  readonly last?: { readonly id: string; readonly time: string; readonly checkpointId?: string | undefined } | undefined;
  /** Time of the newest full restore point. */
  readonly lastFullTime?: string | undefined;
  /** Incrementals taken since the newest full. */
  readonly incrementalsSinceFull: number;
  /** Why the current chain must not be built on (a point of it failed verification). */
  readonly broken?: string | undefined;
  /** Checkpoint ids Ferry created (from its restore points). */
  readonly ownCheckpoints: readonly string[];
}

export interface EngineCheckpoint {
  readonly id: string;
  readonly state: "created" | "invalid" | string;
  readonly description?: string | undefined;
}

export interface ModeDecision {
  readonly mode: LayerMode;
  readonly fromCheckpointId?: string | undefined;
  /** Why a full was taken (absent for a plain incremental). */
  readonly reason?: string | undefined;
  /** Invalid checkpoints Ferry owns and should delete before the full. */
  readonly removeCheckpoints: readonly string[];
}

/** Ferry marks its engine objects with this description prefix (the reconciler finds them by it). */
export const FERRY_DESCRIPTION_PREFIX = "ferry:";

const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] as const;

export function isOwnCheckpoint(cp: EngineCheckpoint, chain: ChainSummary): boolean {
  return chain.ownCheckpoints.includes(cp.id) || (cp.description ?? "").startsWith(FERRY_DESCRIPTION_PREFIX);
}


export function decideMode(input: {
  readonly requested: RequestedMode;
  readonly chain: ChainSummary;
  readonly checkpoints: readonly EngineCheckpoint[];
  readonly policy: FullPolicy;
  readonly now: Date;
  /** False when the engine/cluster has no incremental backup (then the caller falls back further). */
  readonly incrementalSupported: boolean;
}): ModeDecision {
  const { requested, chain, checkpoints, policy, now } = input;
  const invalidOwn = checkpoints.filter((c) => c.state === "invalid" && isOwnCheckpoint(c, chain)).map((c) => c.id);
  const full = (reason: string): ModeDecision => ({ mode: "full", reason, removeCheckpoints: invalidOwn });

  if (requested === "full") return full("full backup requested");
  const last = chain.last;
  if (!last) return full("first backup of this VM (no chain yet)");
  if (chain.broken) return full(chain.broken);
  if (!input.incrementalSupported) return full("incremental backup is not available on this engine or cluster");
  if (!last.checkpointId) return full(`the last restore point ${last.id} has no engine checkpoint`);
  const cp = checkpoints.find((c) => c.id === last.checkpointId);
  if (!cp) return full(`checkpoint ${last.checkpointId} no longer exists on the engine`);
  if (cp.state !== "created") {
    return full(`checkpoint ${last.checkpointId} is ${cp.state} on the engine (snapshot restored or committed)`);
  }
  if (requested === "auto") {
    // maxChainLength counts the layers of a chain, the full one included (config: policies.full).
    if (policy.maxChainLength !== undefined && chain.incrementalsSinceFull + 1 >= policy.maxChainLength) {
      return full(`the chain has ${chain.incrementalsSinceFull + 1} layers (max ${policy.maxChainLength})`);
    }
    const lastFull = chain.lastFullTime ? new Date(chain.lastFullTime) : undefined;
    if (policy.fullEveryDays !== undefined && lastFull) {
      const days = (now.getTime() - lastFull.getTime()) / 86_400_000;
      if (days >= policy.fullEveryDays) {
        return full(`the last full is ${Math.floor(days)} days old (full every ${policy.fullEveryDays} days)`);
      }
    }
    // The local calendar day of `now` and of the last full, in the configured zone.
    const zone = policy.timeZone ?? "UTC";
    const today = localTime(now, zone);
    if (policy.weeklyFullDay !== undefined && today.weekday === policy.weeklyFullDay) {
      if (!lastFull || localDateKey(localTime(lastFull, zone)) !== localDateKey(today)) {
        return full(`weekly full day (${WEEKDAYS[policy.weeklyFullDay - 1] ?? policy.weeklyFullDay})`);
      }
    }
  }
  return { mode: "incremental", fromCheckpointId: last.checkpointId, removeCheckpoints: invalidOwn };
}

/** A VM disk as the engine describes it (ovirt-api.md §4.5), reduced to what the plan needs. */
export interface EngineDisk {
  readonly id: string;
  readonly alias: string;
  readonly format: "cow" | "raw" | string;
  readonly qcowVersion?: string | undefined;
  readonly backup?: "incremental" | "none" | string | undefined;
  readonly contentType?: string | undefined;
  readonly storageType?: string | undefined;
  readonly shareable?: boolean | undefined;
  readonly provisionedSize: number;
  /** The storage domains holding the disk (for per-domain backup limits). */
  readonly storageDomainIds?: readonly string[] | undefined;
}

export interface DiskPlan {
  readonly included: readonly EngineDisk[];
  readonly skipped: readonly { readonly id: string; readonly alias: string; readonly reason: string }[];
  /** Disks that can never be incremental, with the way to enable it (one warning each per run). */
  readonly fullOnly: readonly { readonly id: string; readonly alias: string; readonly reason: string }[];
}

/** Which disks a backup takes (ovirt-api.md §4.5: data content, image storage, not shareable). */
export function planDisks(disks: readonly EngineDisk[]): DiskPlan {
  const included: EngineDisk[] = [];
  const skipped: { id: string; alias: string; reason: string }[] = [];
  const fullOnly: { id: string; alias: string; reason: string }[] = [];
  for (const d of disks) {
    const content = d.contentType ?? "data";
    const storage = d.storageType ?? "image";
    if (content !== "data") skipped.push({ id: d.id, alias: d.alias, reason: `content type ${content} is not VM data` });
    else if (storage !== "image") skipped.push({ id: d.id, alias: d.alias, reason: `${storage} storage (not an image) cannot be backed up` });
    else if (d.shareable) skipped.push({ id: d.id, alias: d.alias, reason: "shareable disk (no consistent point in time)" });
    else {
      included.push(d);
      const why = fullOnlyReason(d);
      if (why) fullOnly.push({ id: d.id, alias: d.alias, reason: why });
    }
  }
  return { included, skipped, fullOnly };
}

/** Why a disk can only get full copies, with how to fix it; undefined when incremental is possible. */
export function fullOnlyReason(d: EngineDisk): string | undefined {
  if (d.format === "raw") {
    return `disk ${d.alias} is raw: a full copy is taken every time; incremental backup needs a qcow2 (cow) disk with backup=incremental (move/convert the disk to qcow2, then PUT /disks/${d.id} {"backup":"incremental"})`;
  }
  if (d.qcowVersion === "qcow2_v2") {
    return `disk ${d.alias} is qcow2 v2 (compat 0.10) and cannot store checkpoints: a full copy is taken every time; enable incremental with the VM down: PUT /disks/${d.id} {"qcow_version":"qcow2_v3"} and then {"backup":"incremental"}`;
  }
  if (d.backup !== undefined && d.backup !== "incremental") {
    return `disk ${d.alias} has incremental backup disabled: a full copy is taken every time; enable it with PUT /disks/${d.id} {"backup":"incremental"}`;
  }
  return undefined;
}

/**
 * The layer mode of one disk inside a backup: the engine's per-disk backup_mode decides
 * (a new disk in an incremental backup is full), and a disk Ferry has no previous layer for
 * must be full too.
 */
export function diskLayerMode(input: {
  readonly backupMode: LayerMode;
  readonly engineBackupMode?: string | undefined;
  readonly previousLayer?: string | undefined;
  readonly alias: string;
  readonly fromCheckpointId?: string | undefined;
}): { mode: LayerMode; reason?: string } {
  if (input.backupMode === "full") return { mode: "full" };
  if (input.engineBackupMode !== undefined && input.engineBackupMode !== "incremental") {
    return { mode: "full", reason: `disk ${input.alias} is not in checkpoint ${input.fromCheckpointId ?? "?"} (new disk): full layer, new chain` };
  }
  if (!input.previousLayer) {
    return { mode: "full", reason: `no previous layer of disk ${input.alias} in the store: full layer, new chain` };
  }
  return { mode: "incremental" };
}
