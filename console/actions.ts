/**
 * What an operator can do in the console, each one the same validated command the CLI
 * publishes (adapters/nats/publish-command.ts: contract check, then JetStream with the id as
 * Nats-Msg-Id): back up now (backup.requested, like `ferry backup [--full]`), restore a point
 * and run a restore test (restore.requested, like `ferry restore [--test]`). The restore plan is
 * pipeline/restore-plan.ts's preflight (what `ferry restore --dry-run` prints). Verifying a point
 * reads the store here, as `ferry verify` does (Ferry has no bus command for it).
 *
 * Input is checked before anything happens; a refusal is an ActionInputError with one line and
 * changes nothing.
 */
import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import { CommandInvalidError, publishCommand } from "../adapters/nats/publish-command.ts";
import { createEngineClient } from "../adapters/ovirt/mod.ts";
import { openStore, StoreError, type VerifyReport } from "../adapters/store/mod.ts";
import { backupRequested, type BackupRequested } from "../contracts/backup-requested.ts";
import { restoreRequested, type RestoreRequested } from "../contracts/restore-requested.ts";
import { ChainError, isSegment } from "../domain/chain/mod.ts";
import type { EngineSettings } from "../pipeline/composition.ts";
import { createRestoreEngine } from "../pipeline/restore-engine.ts";
import { planRestore, RestorePreflightError, type RestorePlan, type RestoreSettings } from "../pipeline/restore-plan.ts";
import type { BusFeed } from "./bus-feed.ts";

export class ActionInputError extends Error {
  override readonly name = "ActionInputError";
}

/** An engine the console plans restores on: the same settings the functions get. */
export type ActionEngine = EngineSettings;

/** The restore form, as submitted (strings from the browser); vm, name and start as restore.requested has them. */
export interface RestoreForm extends Pick<RestoreRequested, "vm" | "name" | "start"> {
  /** Friendly number, 'latest' or a point id. */
  readonly point: string;
  readonly target: string;
  /** One `NETWORK=PROFILE` per line. */
  readonly networks?: string | undefined;
  readonly storageDomain?: string | undefined;
  readonly cluster?: string | undefined;
  readonly test?: boolean | undefined;
}

/** The preflight's plan as the confirm page shows it (without the OVF it carries for the restore). */
export type PlanView = Omit<RestorePlan, "ovf" | "ovfVm">;

export type PlanResult = { ok: true; plan: PlanView } | { ok: false; problems: string[] };

export interface Actions {
  backup(vm: string, mode: "auto" | "full"): Promise<BackupRequested>;
  restoreCommand(form: RestoreForm): RestoreRequested;
  plan(form: RestoreForm): Promise<PlanResult>;
  restore(form: RestoreForm): Promise<RestoreRequested>;
  verify(vm: string, point: string): Promise<VerifyReport>;
  /** Engines a restore may target. */
  readonly targets: readonly string[];
}

export interface ActionsOptions {
  readonly nc: NatsConnection;
  readonly feed: BusFeed;
  readonly storeRoot: string;
  readonly engines: Readonly<Record<string, ActionEngine>>;
  readonly restore: RestoreSettings;
  /** The engine a VM lives on (vms.<vm>.engine), put in the backup command like `ferry backup --engine`. */
  readonly engineOf: (vm: string) => string | undefined;
  readonly clock?: () => Date;
}

const PROFILE_LINE = /^([^=\s][^=]*)=([^=]*[^=\s])$/;

function newId(): string {
  return `console-${randomUUID()}`;
}

function checkVm(vm: string): void {
  if (!isSegment(vm)) throw new ActionInputError(`'${vm.slice(0, 80)}' is not a valid VM name`);
}

export function createActions(o: ActionsOptions): Actions {
  const clock = o.clock ?? (() => new Date());
  const store = openStore({ root: o.storeRoot });

  const publish = async <T extends { id?: string | undefined }>(contract: Parameters<typeof publishCommand<T>>[1], command: T & { id: string }): Promise<T & { id: string }> => {
    try {
      return (await publishCommand(o.nc, contract, command)).command;
    } catch (err) {
      if (err instanceof CommandInvalidError) throw new ActionInputError(err.message);
      throw err;
    }
  };

  const restoreCommand = (f: RestoreForm): RestoreRequested => {
    checkVm(f.vm);
    if (!o.engines[f.target]) throw new ActionInputError(`engine '${f.target.slice(0, 64)}' is not in the config (engines: ${Object.keys(o.engines).join(", ") || "none"})`);
    const vnicProfiles: Record<string, string> = {};
    for (const line of (f.networks ?? "").split(/\r?\n/).map((l) => l.trim()).filter(Boolean)) {
      const m = PROFILE_LINE.exec(line);
      if (!m) throw new ActionInputError(`network mapping '${line.slice(0, 80)}' is not NETWORK=PROFILE`);
      vnicProfiles[m[1]!.trim()] = m[2]!.trim();
    }
    const mappings = {
      ...(Object.keys(vnicProfiles).length ? { vnicProfiles } : {}),
      ...(f.storageDomain?.trim() ? { storageDomains: { "*": f.storageDomain.trim() } } : {}),
      ...(f.cluster?.trim() ? { clusters: { "*": f.cluster.trim() } } : {}),
    };
    const point = f.point.trim() || "latest";
    const id = newId();
    const command = {
      id, time: clock().toISOString(), correlationId: id, vm: f.vm,
      ...(point === "latest" ? {} : /^\d+$/.test(point) ? { checkpoint: Number(point) } : { restorePoint: point }),
      target: f.target,
      ...(f.name?.trim() && !f.test ? { name: f.name.trim() } : {}),
      ...(f.start && !f.test ? { start: true } : {}),
      ...(Object.keys(mappings).length ? { mappings } : {}),
      ...(f.test ? { mode: "test" as const } : {}),
    };
    const v = restoreRequested.validate(command);
    if (!v.ok) throw new ActionInputError(`invalid restore.requested: ${v.reason}`);
    return v.value;
  };

  return {
    targets: Object.keys(o.engines),
    async backup(vm, mode) {
      checkVm(vm);
      if (mode !== "auto" && mode !== "full") throw new ActionInputError(`mode must be auto or full`);
      const id = newId();
      const engine = o.engineOf(vm);
      const command: BackupRequested & { id: string } = { id, time: clock().toISOString(), correlationId: id, vm, mode, ...(engine ? { engine } : {}) };
      const sent = await publish(backupRequested, command);
      o.feed.noteRequested("backup", id, vm, { mode });
      return sent;
    },
    restoreCommand,
    async plan(f) {
      const req = restoreCommand(f);
      const engine = o.engines[req.target ?? "dr"]!;
      const client = createEngineClient({ url: engine.url, user: engine.user, password: engine.password, caPem: engine.caPem, insecure: engine.insecure ?? false, correlationId: "ferry-console-plan" });
      try {
        const plan = await planRestore(
          { store, engine: createRestoreEngine(client, { name: req.target!, caPem: engine.caPem, insecure: engine.insecure }) },
          {
            vm: req.vm,
            point: req.restorePoint ?? req.checkpoint ?? "latest",
            target: req.target!,
            name: req.mode === "test" ? `${req.vm}-restoretest-…` : (req.name ?? `${req.vm}${o.restore.nameSuffix}`),
            replace: req.replace ?? o.restore.replaceExisting,
            disks: req.disks,
            mappings: req.mappings,
            cluster: o.restore.cluster,
            storageDomain: o.restore.storageDomain,
          },
        );
        const { ovf: _ovf, ovfVm: _ovfVm, ...shown } = plan;
        return { ok: true, plan: shown };
      } catch (err) {
        if (err instanceof RestorePreflightError) return { ok: false, problems: [...err.problems] };
        if (err instanceof StoreError || err instanceof ChainError) return { ok: false, problems: [err.message] };
        throw err;
      } finally {
        await client.close().catch(() => undefined);
      }
    },
    async restore(f) {
      const command = restoreCommand(f);
      const sent = await publish(restoreRequested, { ...command, id: command.id! });
      o.feed.noteRequested("restore", sent.id, sent.vm, { mode: sent.mode ?? "restore", target: sent.target });
      return sent;
    },
    async verify(vm, point) {
      checkVm(vm);
      const ref = point.trim() || "latest";
      try {
        return await store.verify(vm, /^\d+$/.test(ref) ? Number(ref) : ref, { record: true });
      } catch (err) {
        if (err instanceof ChainError || err instanceof StoreError) throw new ActionInputError(err.message);
        throw err;
      }
    },
  };
}
