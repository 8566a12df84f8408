/**
 * restore.requested → a verified VM (or floating disks) on the target engine → restore.completed.
 *
 * 1. Preflight (pipeline/restore-plan.ts): the point from the store, the target's cluster,
 *    storage domain, vNIC profiles, free space and name checked before anything is changed.
 * 2. Disks: each created (sparse qcow2, incremental backup enabled, initial size from qemu-img
 *    measure) under an id journaled BEFORE the create, uploaded through imageio (the chain merged by
 *    qemu-nbd), then verified with imageio's own checksum of the new disk against the point's.
 * 3. VM: imported from the point's OVF with the new disk ids (so the engine attaches them with the
 *    OVF's interfaces and boot flags), NICs mapped to the target's vNIC profiles, started if asked.
 *    `replace`: the old (powered-off) VM is removed only once the new disks are verified.
 * 4. Mode test: the VM gets a temporary name, is started and must reach `up`; the verdict is
 *    recorded on the restore point, and the VM and its disks are removed whatever happened.
 *
 * Anything a failed attempt created is removed (journal), so a failure leaves no disk, VM or lock
 * behind and any previous DR VM untouched; a redelivery starts clean. A log of every step goes to
 * `<store>/restore-logs/`.
 */
import { appendFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { PermanentError, errorCode, isPermanent } from "../../contracts/errors.ts";
import type { RestoreRequested } from "../../contracts/restore-requested.ts";
import type { TransferProgress } from "../../contracts/transfer-progress.ts";
import { redactText } from "../../adapters/secrets.ts";
import type { ResolvedPoint } from "../../adapters/store/mod.ts";
import { withDiskIds } from "../../domain/ovf/read.ts";
import { customIdFor, compactTime } from "../../pipeline/run-ids.ts";
import { planRestore, type PlannedDisk, type RestorePlan, type RestoreSettings } from "../../pipeline/restore-plan.ts";
import { newDiskId, type RestoreEngine } from "../../pipeline/restore-engine.ts";
import type { RestoreJournal, RestoreRun, RestoreRunDisk } from "../../pipeline/restore-journal.ts";
import { undoRestore } from "../../pipeline/restore-undo.ts";
import { changedRanges, type Replicas } from "../../pipeline/replica.ts";
import type { Leases } from "../../pipeline/vm-lease.ts";

export interface RestoreDeps {
  readonly engines: (name: string) => RestoreEngine | undefined;
  readonly store: {
    resolvePoint(vmName: string, ref: number | string, o?: { signal?: AbortSignal }): Promise<ResolvedPoint>;
    markVerified(vmName: string, pointId: string, v: { time: string; ok: boolean; detail?: string }, what?: "verified" | "bootTested"): Promise<unknown>;
    readDigests(rel: string): Promise<Buffer | undefined>;
    absolute(rel: string): string;
    /** Directory of the restore logs (created by the store). */
    readonly logDir: string;
  };
  readonly journal: RestoreJournal;
  readonly leases: Leases;
  /** dataplane upload of a qcow2 chain into a transfer; returns its imageio-compatible checksum. */
  readonly upload: (o: {
    image: string;
    transferUrl: string;
    caPem?: string | undefined;
    onProgress: (bytes: number, total: number) => void;
    signal?: AbortSignal | undefined;
    /** The target disk is new (reads as zeroes): zero ranges are skipped. */
    fresh: boolean;
    /** Only these byte ranges (refresh in place); no local checksum then. */
    only?: readonly { offset: number; length: number }[] | undefined;
  }) => Promise<{ bytes: number; checksum: string }>;
  /** Which restore point the standing DR copy of each VM holds (mode replicate). */
  readonly replicas: Replicas;
  /** imageio's checksum of a (download) transfer. */
  readonly checksum: (o: { transferUrl: string; caPem?: string | undefined; blockSize: number; signal?: AbortSignal | undefined }) => Promise<string>;
  readonly measure?: (image: string, signal?: AbortSignal) => Promise<number>;
  readonly settings: RestoreSettings;
  readonly owner: string;
  readonly clock: () => Date;
  readonly log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void };
  readonly heartbeatMs?: number;
}

export interface RestoreContext {
  readonly signal?: AbortSignal | undefined;
  readonly lastAttempt?: boolean | undefined;
  working?(): void;
  progress?(event: TransferProgress): void;
}

export class RestoreVerifyError extends PermanentError {
  constructor(alias: string, what: string, got: string, want: string) {
    super("RESTORE_VERIFY_MISMATCH", `disk ${alias}: ${what} checksum ${got.slice(0, 16)}… differs from the restore point's ${want.slice(0, 16)}…`, { alias });
  }
}

/** The restored VM did not reach `up` (mode test records this as the verdict). */
export class BootFailedError extends PermanentError {
  constructor(name: string, why: string) {
    super("RESTORE_BOOT_FAILED", `the restored VM ${name} did not boot: ${redactText(why)}`, { name });
  }
}

export function createRestoreHandler(deps: RestoreDeps) {
  const heartbeatMs = deps.heartbeatMs ?? Math.min(15_000, Math.floor(deps.leases.ttlMs / 4));

  return async function handleRestore(req: RestoreRequested & { id: string; correlationId: string }, ctx: RestoreContext = {}) {
    const started = deps.clock();
    const target = req.target ?? "dr";
    const mode = req.mode ?? "restore";
    const engine = deps.engines(target);
    if (!engine) throw new PermanentError("UNKNOWN_ENGINE", `engine '${target}' is not in the config`, { engine: target });
    const runId = req.id;
    const name =
      mode === "test" ? `${req.vm}-restoretest-${customIdFor(runId, "test").toString(36).slice(0, 5)}`
      : (req.name ?? `${req.vm}${mode === "replicate" ? deps.settings.replicaSuffix : deps.settings.nameSuffix}`);
    const replace = mode === "replicate" ? true : (req.replace ?? deps.settings.replaceExisting);
    const logFile = join(deps.store.logDir, `${compactTime(started.toISOString())}-${req.vm}-${runId.replace(/[^A-Za-z0-9._-]/g, "_")}.log`);
    let logDir: Promise<unknown> | undefined;
    const note = async (step: string, o: object = {}) => {
      // The store creates restore-logs/ only when initialised; a running pipeline may not have.
      logDir ??= mkdir(deps.store.logDir, { recursive: true, mode: 0o700 });
      await logDir.catch(() => undefined);
      await appendFile(logFile, `${JSON.stringify({ time: deps.clock().toISOString(), runId, step, ...o })}\n`, { mode: 0o600 }).catch((err: unknown) => {
        deps.log.warn({ err, logFile }, "could not write the restore log");
      });
    };

    // One restore per target VM name at a time (a second request for it waits, VM_BUSY).
    const lease = await deps.leases.acquire({ vmId: `restore.${target}.${name}`, runId, owner: deps.owner, step: "restore-requested" });
    const beat = setInterval(() => {
      ctx.working?.();
      lease.renew().catch((err: unknown) => deps.log.warn({ err, name }, "restore lease renewal failed"));
    }, heartbeatMs);
    let run: RestoreRun | undefined;
    const change = async (fn: (r: RestoreRun) => RestoreRun) => (run = (await deps.journal.change(runId, (cur) => fn(cur ?? run!))) ?? run);
    try {
      run = await deps.journal.change(runId, (cur) =>
        cur ?? {
          runId, kind: "restore", target, vm: { name: req.vm }, name, mode, owner: deps.owner, correlationId: req.correlationId, phase: "started", attempt: 0,
          startedAt: started.toISOString(), updatedAt: started.toISOString(), disks: [], transfers: [],
        },
      );
      if (run!.phase === "done" && run!.completed) return [{ subject: "restore.completed", event: run!.completed as { id: string } & Record<string, unknown> }];
      // A previous attempt of this run died part-way: remove what it made, then start clean.
      if (run!.disks.length || run!.vmId || run!.transfers.some((t) => t.state === "open")) {
        await note("cleanup of an interrupted attempt", { disks: run!.disks.map((d) => d.id), vmId: run!.vmId });
        deps.log.info({ runId, disks: run!.disks.length, transfers: run!.transfers.filter((t) => t.state === "open").length, vmId: run!.vmId }, "removing what an interrupted restore attempt created");
        await undo(engine, run!);
      }
      await change((r) => ({ ...r, phase: "started", attempt: r.attempt + 1, owner: deps.owner, disks: [], transfers: [], vmId: undefined, error: undefined }));
      if (mode === "replicate") {
        const refreshed = await refreshReplica(engine);
        if (refreshed) return [{ subject: "restore.completed", event: refreshed }];
      }

      const plan = await planRestore(
        { store: deps.store, engine, ...(deps.measure ? { measure: deps.measure } : {}), signal: ctx.signal },
        {
          vm: req.vm, point: req.restorePoint ?? req.checkpoint ?? "latest", target, name, replace, disks: req.disks, mappings: req.mappings,
          cluster: deps.settings.cluster, storageDomain: deps.settings.storageDomain,
        },
      );
      await note("preflight ok", { point: plan.point, cluster: plan.cluster.name, storageDomain: plan.storageDomain.name, bytes: plan.requiredBytes, disks: plan.disks.map((d) => d.alias) });
      deps.log.info({ vm: req.vm, point: plan.point.number, target, name, mode }, "restore preflight ok");

      await change((r) => ({ ...r, phase: "disks" }));
      let uploaded = 0;
      for (const d of plan.disks) uploaded += await restoreDisk(engine, plan, d);

      let vmId: string | undefined;
      let bootTest: { ok: boolean; seconds: number; why?: string } | undefined;
      if (!req.disks?.length) {
        if (plan.replaces) {
          await note("removing the VM being replaced", { vmId: plan.replaces.id });
          await engine.removeVm(plan.replaces.id);
        }
        vmId = await createVm(engine, plan);
        const start = mode === "test" || (mode === "restore" && (req.start ?? deps.settings.start));
        if (start) {
          const t0 = performance.now();
          try {
            await engine.startVm(vmId, { timeoutMs: deps.settings.bootTimeoutMs, signal: ctx.signal });
            bootTest = { ok: true, seconds: (performance.now() - t0) / 1000 };
          } catch (err) {
            if (mode !== "test") throw new BootFailedError(name, err instanceof Error ? err.message : String(err));
            bootTest = { ok: false, seconds: (performance.now() - t0) / 1000, why: redactText(err instanceof Error ? err.message : String(err)).slice(0, 1000) };
          }
          await note("started", bootTest);
        }
      }
      if (mode === "test") {
        const { ok, why } = bootTest!;
        await deps.store.markVerified(req.vm, plan.point.id, { time: deps.clock().toISOString(), ok, ...(why ? { detail: why } : {}) }, "bootTested");
        await undo(engine, run!);
        await note("restore test done, VM and disks removed", { ok: bootTest!.ok });
        // The verdict is recorded and nothing is left; a boot that failed fails the run (one alert).
        if (!ok) throw new BootFailedError(name, why ?? "it did not reach up");
      }
      if (mode === "replicate" && vmId) {
        await deps.replicas.put({ vm: req.vm, target, name, vmId, point: plan.point.id, disks: run!.disks.map((d) => ({ sourceId: d.sourceId, alias: d.alias, id: d.id, checksum: d.checksum ?? "" })) });
      }
      const seconds = (deps.clock().getTime() - started.getTime()) / 1000;
      const completed = {
        id: `${runId}:restore.completed`,
        time: deps.clock().toISOString(),
        correlationId: req.correlationId,
        vm: req.vm,
        runId,
        restorePoint: plan.point.id,
        target,
        mode,
        name,
        ...(vmId && mode !== "test" ? { vmId } : {}),
        ...(bootTest && mode !== "test" ? { started: bootTest.ok } : {}),
        bytes: uploaded,
        seconds,
        disks: run!.disks.map((d) => ({ alias: d.alias, sourceId: d.sourceId, ...(mode === "test" ? {} : { id: d.id }), checksum: d.checksum ?? "" })),
        ...(bootTest && mode === "test" ? { bootTest: { ok: bootTest.ok, seconds: bootTest.seconds, ...(bootTest.why ? { detail: bootTest.why } : {}) } } : {}),
      };
      await change((r) => ({ ...r, phase: "done", completed }));
      await note("done", { seconds, bytes: uploaded });
      return [{ subject: "restore.completed", event: completed }];
    } catch (err) {
      const final = isPermanent(err) || ctx.lastAttempt === true;
      await note("failed", { code: errorCode(err), message: redactText(err instanceof Error ? err.message : String(err)), final });
      if (run && run.phase !== "done") {
        // Whatever happened, nothing half-made stays on the target; a retry starts clean.
        await undo(engine, run).catch((e: unknown) => deps.log.error({ err: e, runId }, "could not remove what the failed restore created; the next attempt retries"));
        if (final) await change((r) => ({ ...r, phase: "failed", error: { code: errorCode(err), message: redactText(err instanceof Error ? err.message : String(err)) } })).catch(() => undefined);
      }
      throw err;
    } finally {
      clearInterval(beat);
      await lease.release().catch(() => undefined);
    }

    /**
     * Mode replicate, in place: the standing DR copy (powered off, never a running VM) gets only
     * what changed since the point it holds; a DR disk whose checksum is not the one Ferry left
     * (changed behind Ferry's back) gets a full upload. undefined: no usable copy (missing, other
     * disks than the point's, or no state) — the caller restores it whole, replacing what is there.
     */
    async function refreshReplica(e: RestoreEngine): Promise<({ id: string } & Record<string, unknown>) | undefined> {
      const existing = await e.findVm(name);
      if (existing && existing.status !== "down") {
        throw new PermanentError("REPLICA_RUNNING", `the DR copy ${name} on ${target} is ${existing.status}; a running VM is never overwritten (stop it, or remove it to have it rebuilt)`, { name, target });
      }
      const state = await deps.replicas.get(target, req.vm);
      const to = await deps.store.resolvePoint(req.vm, req.restorePoint ?? req.checkpoint ?? "latest", ctx.signal ? { signal: ctx.signal } : {});
      const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));
      if (!existing || !state || state.vmId !== existing.id || !same(state.disks.map((d) => d.sourceId), to.disks.map((d) => d.disk.diskId))) {
        await note("no usable DR copy: a full restore replaces it", { existing: existing?.id, state: state?.point });
        return undefined;
      }
      const attached = new Set(await e.attachedDiskIds(existing.id));
      if (!state.disks.every((d) => attached.has(d.id))) {
        await note("the DR copy lost a disk: a full restore replaces it");
        return undefined;
      }
      if (state.point === to.point.id) await note("the DR copy already holds this point; checking it");
      let uploaded = 0;
      const disks: RestoreRunDisk[] = [];
      for (const s of state.disks) {
        const d = to.disks.find((x) => x.disk.diskId === s.sourceId)!;
        const now = await withTransfer(e, s.id, "download", (url) => deps.checksum({ transferUrl: url, caPem: e.caPem, blockSize: d.disk.checksum.blockSize, signal: ctx.signal }));
        let only: readonly { offset: number; length: number }[] | undefined;
        if (now !== s.checksum) {
          await note("the DR disk was changed behind Ferry's back: full upload", { alias: s.alias, id: s.id, found: now, expected: s.checksum });
          deps.log.warn({ vm: req.vm, disk: s.alias, target }, "DR disk changed outside Ferry; uploading it whole");
        } else {
          only = await changedRanges(deps.store, req.vm, state.point, to, s.sourceId, ctx.signal);
        }
        if (!only || only.length) {
          const up = await withTransfer(e, s.id, "upload", (url) =>
            deps.upload({ image: d.top, transferUrl: url, caPem: e.caPem, signal: ctx.signal, fresh: false, only, onProgress: progressOf(s.id, s.alias) }),
          );
          uploaded += up.bytes;
          await note("DR disk refreshed", { alias: s.alias, id: s.id, bytes: up.bytes, ranges: only?.length ?? "all" });
        }
        const sum = await withTransfer(e, s.id, "download", (url) => deps.checksum({ transferUrl: url, caPem: e.caPem, blockSize: d.disk.checksum.blockSize, signal: ctx.signal }));
        if (sum !== d.disk.checksum.value) throw new RestoreVerifyError(s.alias, "the refreshed DR disk's", sum, d.disk.checksum.value);
        disks.push({ sourceId: s.sourceId, alias: s.alias, id: s.id, state: "verified", checksum: sum });
      }
      await deps.replicas.put({ vm: req.vm, target, name, vmId: existing.id, point: to.point.id, disks: disks.map((d) => ({ sourceId: d.sourceId, alias: d.alias, id: d.id, checksum: d.checksum! })) });
      const seconds = (deps.clock().getTime() - started.getTime()) / 1000;
      const completed = {
        id: `${runId}:restore.completed`, time: deps.clock().toISOString(), correlationId: req.correlationId, vm: req.vm, runId,
        restorePoint: to.point.id, target, mode, name, vmId: existing.id, bytes: uploaded, seconds,
        disks: disks.map((d) => ({ alias: d.alias, sourceId: d.sourceId, id: d.id, checksum: d.checksum! })),
      };
      // The copy's disks are Ferry's to keep: nothing here is undone on a later failure.
      await change((r) => ({ ...r, phase: "done", completed }));
      await note("DR copy refreshed", { point: to.point.id, bytes: uploaded, seconds });
      return completed;
    }

    function progressOf(diskId: string, alias: string) {
      let last = 0;
      return (bytes: number, total: number) => {
        const now = Date.now();
        if (now - last < 1000 && bytes < total) return;
        last = now;
        ctx.progress?.({ id: `${runId}:${diskId}:${now}`, time: new Date(now).toISOString(), correlationId: req.correlationId, runId, vm: req.vm, disk: diskId, alias, bytes, total, phase: "upload" });
      };
    }

    /** Create, upload and verify one disk; returns the bytes uploaded. */
    async function restoreDisk(e: RestoreEngine, plan: RestorePlan, d: PlannedDisk): Promise<number> {
      const id = newDiskId();
      const setDisk = (x: RestoreRunDisk) => change((r) => ({ ...r, disks: [...r.disks.filter((y) => y.id !== x.id), x] }));
      const disk: RestoreRunDisk = { sourceId: d.sourceId, alias: d.alias, id, state: "creating" };
      await setDisk(disk); // journaled before the create: a crash in between still names it
      await e.createDisk({ id, alias: d.alias, provisionedSize: d.virtualSize, initialSize: d.requiredBytes, storageDomainId: plan.storageDomain.id, signal: ctx.signal });
      await setDisk({ ...disk, state: "created" });

      const up = await withTransfer(e, id, "upload", async (url) => {
        let last = 0;
        return deps.upload({
          image: d.top, transferUrl: url, caPem: e.caPem, signal: ctx.signal, fresh: true,
          onProgress: (bytes, total) => {
            const now = Date.now();
            if (now - last < 1000 && bytes < total) return;
            last = now;
            ctx.progress?.({ id: `${runId}:${id}:${now}`, time: new Date(now).toISOString(), correlationId: req.correlationId, runId, vm: req.vm, disk: id, alias: d.alias, bytes, total, phase: "upload" });
          },
        });
      });
      // What was read from the store is what the point recorded (else the store is damaged).
      if (up.checksum !== d.checksum.value) throw new RestoreVerifyError(d.alias, "the stored chain's", up.checksum, d.checksum.value);
      await setDisk({ ...disk, state: "uploaded" });

      // imageio's own checksum of the disk now on the target.
      const sum = await withTransfer(e, id, "download", (url) => deps.checksum({ transferUrl: url, caPem: e.caPem, blockSize: d.checksum.blockSize, signal: ctx.signal }));
      if (sum !== d.checksum.value) throw new RestoreVerifyError(d.alias, "the restored disk's", sum, d.checksum.value);
      await setDisk({ ...disk, state: "verified", checksum: sum });
      await note("disk restored and verified", { alias: d.alias, id, bytes: up.bytes, checksum: sum });
      return up.bytes;
    }

    async function withTransfer<T>(e: RestoreEngine, diskId: string, direction: "upload" | "download", fn: (url: string) => Promise<T>): Promise<T> {
      const t = await e.openTransfer(diskId, direction, ctx.signal);
      await change((r) => ({ ...r, transfers: [...r.transfers, { id: t.id, diskId, state: "open" }] }));
      let result: T;
      try {
        result = await fn(t.transferUrl);
      } catch (err) {
        await e.cancelTransfer(t.id).catch(() => undefined);
        throw err;
      }
      await e.finalizeTransfer(t.id, diskId, direction, ctx.signal);
      await change((r) => ({ ...r, transfers: r.transfers.map((x) => (x.id === t.id ? { ...x, state: "closed" as const } : x)) }));
      return result;
    }

    /** Import the OVF with the new disk ids, attach what the import did not, map the NICs. */
    async function createVm(e: RestoreEngine, plan: RestorePlan): Promise<string> {
      const ids = new Map(run!.disks.map((d) => [d.sourceId, d.id]));
      await change((r) => ({ ...r, phase: "vm" }));
      const vm = await e.createVmFromOvf({ clusterId: plan.cluster.id, name: plan.name, ovf: withDiskIds(plan.ovf, ids), signal: ctx.signal });
      await change((r) => ({ ...r, vmId: vm.id }));
      const attached = new Set(await e.attachedDiskIds(vm.id));
      for (const d of plan.disks) {
        const id = ids.get(d.sourceId)!;
        if (!attached.has(id)) await e.attachDisk(vm.id, { diskId: id, interface: d.interface as never, bootable: d.bootable, active: true });
      }
      for (const nic of await e.nics(vm.id)) {
        const want = plan.nics.find((n) => n.name === nic.name)?.vnicProfile?.id ?? null;
        if ((nic.vnicProfileId ?? null) !== want) await e.setNicProfile(vm.id, nic.id, want);
      }
      await note("VM created", { vmId: vm.id, name: plan.name, disks: [...ids.values()], nics: plan.nics });
      return vm.id;
    }
  };

  function undo(engine: RestoreEngine, run: RestoreRun): Promise<void> {
    return undoRestore(engine, run, deps.journal);
  }

}
