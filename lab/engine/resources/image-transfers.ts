import { randomUUID } from "node:crypto";
import { stat, truncate } from "node:fs/promises";
import { rm } from "node:fs/promises";
import { qemuImg, type QemuNbdServer } from "../../../adapters/qemu/mod.ts";
import type { Engine } from "../engine.ts";
import {
  actionDone,
  cannot,
  created,
  fault,
  HttpFault,
  incomplete,
  isUuid,
  NotFound,
  obj,
  ok,
  readBool,
  readEnum,
  readInt,
  str,
  type Ctx,
} from "../http.ts";
import { collection, encodeTransfer } from "../json.ts";
import { DISK_FORMATS, TIMEOUT_POLICIES, type LabDisk, type LabTransfer, type TransferPhase } from "../model.ts";
import type { Router } from "../router.ts";
import { BitmapMissingError } from "../storage.ts";
import { deleteDisk } from "./disks.ts";

/**
 * Image transfers (ovirt-api.md §6): a qemu-nbd export of the right volume, a ticket on the lab
 * imageio daemon, the phase machine of TransferDiskImageCommand, ticket polling for activity,
 * renewal and the inactivity policy, and the consequences for the disk (upload failure deletes it).
 */
interface Session {
  nbd?: QemuNbdServer;
  temp: string[];
  ticketExpiresAt: number;
  ticks: number;
  failAt?: "initializing" | "transferring" | "finalizing";
}

const FINISHED: TransferPhase[] = ["finished_success", "finished_failure", "finished_cleanup"];
const isFinished = (t: LabTransfer) => FINISHED.includes(t.phase);

export class Transfers {
  private readonly sessions = new Map<string, Session>();

  private readonly e: Engine;
  constructor(e: Engine) {
    this.e = e;
    e.every(e.timings.monitorIntervalMs, () => this.monitor());
  }

  private session(t: LabTransfer): Session {
    let s = this.sessions.get(t.id);
    if (!s) {
      s = { temp: [], ticketExpiresAt: 0, ticks: 0 };
      this.sessions.set(t.id, s);
    }
    return s;
  }

  private setPhase(t: LabTransfer, phase: TransferPhase): void {
    if (isFinished(t)) return; // changes out of a finished phase are ignored
    t.phase = phase;
    t.updatedAt = Date.now();
    if (isFinished(t)) t.finishedAt = t.updatedAt;
    this.e.save();
  }

  create(ctx: Ctx): Promise<LabTransfer> {
    const e = this.e;
    const b = obj(ctx.body);
    const direction = readEnum(b.direction, ["upload", "download"] as const, "ImageTransferDirection") ?? "upload";
    const targets = ["disk", "snapshot", "image"].filter((k) => b[k] !== undefined);
    if (!targets.length) {
      if (direction === "download") throw cannot(400, "transfer", "Virtual Disk", "image not specified for download");
      throw incomplete("ImageTransfer", ["disk.id|snapshot.id|image.id"], "add");
    }
    if (targets.length > 1) throw cannot(400, "transfer", "Virtual Disk", "Only one of disk, snapshot or image may be specified.");
    const target = targets[0]!;
    const targetId = str(obj(b[target]).id)?.toLowerCase();
    if (!targetId) throw incomplete("ImageTransfer", [`${target}.id`], "add");
    let disk: LabDisk | undefined;
    let volumeId: string | undefined;
    if (target === "snapshot") {
      disk = e.st.disks.find((d) => d.volumes.some((v) => v.id === targetId));
      if (!disk) throw new HttpFault(404, "Operation Failed", `Entity not found: ${targetId}`);
      volumeId = targetId;
    } else {
      disk = e.findDisk(targetId);
      if (!disk) throw new HttpFault(404, "Operation Failed", `Entity not found: ${targetId}`);
    }
    const format = readEnum(b.format, DISK_FORMATS, "DiskFormat") ?? disk.format;
    const inactivityTimeout = readInt(b.inactivity_timeout, "inactivity_timeout") ?? 60;
    const timeoutPolicy = readEnum(b.timeout_policy, TIMEOUT_POLICIES, "ImageTransferTimeoutPolicy") ?? "legacy";
    const shallow = readBool(b.shallow) ?? false;
    let backupId: string | undefined;
    if (b.backup !== undefined) {
      backupId = str(obj(b.backup).id)?.toLowerCase();
      if (format === "cow") throw cannot(400, "transfer", "Virtual Disk", "The specified format is not applicable for VM backup.");
      const backup = e.st.backups.find((x) => x.id === backupId);
      if (!backup || !backup.diskIds.includes(disk.id)) throw cannot(400, "transfer", "Virtual Disk", "The specified VM backup does not exist.");
      if (backup.phase !== "ready") {
        throw cannot(409, "transfer", "Virtual Disk", `The VM backup is not in READY phase, backup phase is ${backup.phase.toUpperCase()}.`);
      }
      if (direction !== "download") throw cannot(400, "transfer", "Virtual Disk", "A VM backup can only be downloaded.");
    }
    if (shallow && (format !== "raw" || direction !== "download")) {
      throw cannot(400, "transfer", "Virtual Disk", "Shallow transfer is supported only for raw format downloads.");
    }
    const busy = disk.transferId ? e.st.transfers.find((x) => x.id === disk.transferId && !isFinished(x)) : undefined;
    if (busy) throw cannot(409, "transfer", "Virtual Disk", `Disk ${disk.alias} is being transferred.`);
    if (disk.status === "illegal") throw cannot(409, "transfer", "Virtual Disk", `Disk ${disk.alias} is in illegal status.`);
    if (disk.status === "locked") throw cannot(409, "transfer", "Virtual Disk", "Disk is locked. Please try again later.");
    const vm = e.vmOfDisk(disk.id);
    const plugged = vm?.attachments.find((a) => a.diskId === disk.id)?.active ?? false;
    if (vm && vm.status !== "down" && plugged && !backupId && target !== "snapshot") {
      throw cannot(
        409,
        "transfer",
        "Virtual Disk",
        `Disk ${disk.alias} is plugged into the running VM ${vm.name}; it can only be transferred as part of a backup or from a snapshot.`,
      );
    }
    if (target === "snapshot" && direction === "upload") throw cannot(400, "transfer", "Virtual Disk", "Uploading to a snapshot disk is not supported.");
    const now = Date.now();
    const t: LabTransfer = {
      id: randomUUID(),
      direction,
      format,
      backend: format === "raw" || backupId ? "nbd" : "file",
      shallow,
      phase: "initializing",
      diskId: disk.id,
      inactivityTimeout,
      timeoutPolicy,
      active: false,
      transferred: 0,
      createdAt: now,
      updatedAt: now,
      ...(backupId ? { backupId } : {}),
      ...(volumeId ? { volumeId } : {}),
      ...(ctx.correlationId ? { correlationId: ctx.correlationId } : {}),
    };
    e.st.transfers.push(t);
    disk.transferId = t.id;
    disk.status = "locked";
    disk.lockReason = "transfer";
    const armed = e.faults.failTransfer.findIndex((f) => (!f.direction || f.direction === direction) && (!f.diskId || f.diskId === disk.id));
    if (armed >= 0) this.session(t).failAt = e.faults.failTransfer.splice(armed, 1)[0]!.phase;
    e.audit("TRANSFER_IMAGE_INITIATED", `Image ${direction === "upload" ? "Upload" : "Download"} with disk ${disk.alias} was initiated by admin@internal-authz.`, {
      ...(vm ? { vmId: vm.id } : {}),
      ...(ctx.correlationId ? { correlationId: ctx.correlationId } : {}),
    });
    e.save();
    // The session starts synchronously for an existing disk, so the POST may already say `transferring`.
    if (e.timings.transferInitMs <= 0) return this.startSession(t).then(() => t);
    e.later(e.timings.transferInitMs, () => this.startSession(t));
    return Promise.resolve(t);
  }

  /** Export the volume over NBD and add the imageio ticket; → transferring (or a system failure). */
  private async startSession(t: LabTransfer): Promise<void> {
    const e = this.e;
    if (t.phase !== "initializing" && t.phase !== "resuming") return;
    const s = this.session(t);
    const disk = e.findDisk(t.diskId);
    if (!disk) return this.failSystem(t, "the disk no longer exists");
    if (s.failAt === "initializing") {
      delete s.failAt;
      return this.failSystem(t, "injected failure: could not prepare the image (lab fault)");
    }
    try {
      let volumeId = t.volumeId ?? disk.volumes[disk.volumes.length - 1]!.id;
      let bitmap: string | undefined;
      let dirty = false;
      if (t.backupId) {
        const backup = e.st.backups.find((b) => b.id === t.backupId)!;
        volumeId = backup.frozen[disk.id] ?? volumeId;
        if (backup.diskModes[disk.id] === "incremental" && backup.fromCheckpointId) {
          bitmap = backup.fromCheckpointId;
          dirty = true;
        }
      }
      const name = t.id;
      let size = disk.provisionedSize;
      const fileBytes = t.backend === "file";
      if (fileBytes) {
        const vol = disk.volumes.find((v) => v.id === volumeId)!;
        if (t.direction === "upload") {
          // FILE upload of qcow2: room for the image plus metadata (QCOW_OVERHEAD_FACTOR).
          size = vol.format === "qcow2" ? Math.ceil(disk.provisionedSize * 1.1) + 1024 * 1024 : disk.provisionedSize;
          await truncate(vol.path, size);
        } else {
          size = (await stat(vol.path)).size;
        }
      }
      await e.storage.withDisk(disk.id, async () => {
        const served = await e.storage.serve(disk, volumeId, {
          name,
          readOnly: t.direction === "download",
          ...(bitmap ? { bitmap } : {}),
          shallow: t.shallow,
          fileBytes,
        });
        s.nbd = served.server;
        s.temp = served.temp;
      });
      const ticketId = randomUUID();
      await e.imageio.addTicket({
        uuid: ticketId,
        size,
        ops: t.direction === "upload" ? ["write"] : ["read"],
        timeout: e.timings.ticketValiditySec,
        url: `nbd:unix:${s.nbd!.socket}:exportname=${name}`,
        inactivityTimeout: t.inactivityTimeout,
        transferId: t.id,
        sparse: disk.sparse,
        dirty,
      });
      s.ticketExpiresAt = Date.now() + e.timings.ticketValiditySec * 1000;
      s.ticks = 0;
      t.ticketId = ticketId;
      t.transferUrl = `${e.imageio.url}/images/${ticketId}`;
      t.proxyUrl = `${e.imageio.url.replace("127.0.0.1", "localhost")}/images/${ticketId}`;
      this.setPhase(t, "transferring");
    } catch (err) {
      await this.stopSession(t);
      const why = err instanceof BitmapMissingError ? `Bitmap does not exist: ${err.message}` : (err as Error).message;
      this.failSystem(t, why);
    }
  }

  /** Remove the ticket, stop qemu-nbd, delete throw-away overlays. */
  private async stopSession(t: LabTransfer): Promise<void> {
    const s = this.sessions.get(t.id);
    if (t.ticketId) {
      await this.e.imageio.removeTicket(t.ticketId).catch(() => undefined);
    }
    if (s?.nbd) {
      await s.nbd.stop();
      delete s.nbd;
    }
    if (s) {
      await Promise.all(s.temp.map((p) => rm(p, { force: true })));
      s.temp = [];
    }
    t.active = false;
  }

  /** A failure in the system: uploads pause, downloads are cancelled (§6.3). */
  private failSystem(t: LabTransfer, why: string): void {
    const e = this.e;
    t.failure = why;
    const disk = e.findDisk(t.diskId);
    const vm = e.vmOfDisk(t.diskId);
    if (t.direction === "upload") {
      this.setPhase(t, "paused_system");
      e.audit("TRANSFER_IMAGE_PAUSED_BY_SYSTEM", `Upload of disk ${disk?.alias ?? t.diskId} was paused by the system: ${why}.`, {
        severity: "warning",
        ...(vm ? { vmId: vm.id } : {}),
        ...(t.correlationId ? { correlationId: t.correlationId } : {}),
      });
      void this.stopSession(t);
      return;
    }
    this.setPhase(t, "cancelled_system");
    void this.endWithFailure(t, why);
  }

  /** cancelled_system / failed finalize → finalizing_failure → finished_failure; an upload's disk is deleted. */
  private async endWithFailure(t: LabTransfer, why: string): Promise<void> {
    const e = this.e;
    this.setPhase(t, "finalizing_failure");
    await this.stopSession(t);
    const disk = e.findDisk(t.diskId);
    const vm = e.vmOfDisk(t.diskId);
    if (disk) {
      if (t.direction === "upload") {
        await deleteDisk(e, disk, t.correlationId);
      } else {
        this.unlock(disk, t);
      }
    }
    this.setPhase(t, "finished_failure");
    e.audit("TRANSFER_IMAGE_FAILED", `Image ${t.direction === "upload" ? "Upload" : "Download"} with disk ${disk?.alias ?? t.diskId} failed: ${why}.`, {
      severity: "error",
      ...(vm ? { vmId: vm.id } : {}),
      ...(t.correlationId ? { correlationId: t.correlationId } : {}),
    });
  }

  private unlock(disk: LabDisk, t: LabTransfer): void {
    if (disk.transferId === t.id) delete disk.transferId;
    if (disk.lockReason === "transfer") {
      disk.status = "ok";
      delete disk.lockReason;
    }
  }

  finalize(t: LabTransfer): void {
    if (!["transferring", "paused_user", "paused_system", "resuming"].includes(t.phase)) return;
    this.setPhase(t, "finalizing_success");
    const stall = this.e.faults.stallFinalize.findIndex((s) => s.target === "transfer");
    const extra = stall >= 0 ? this.e.faults.stallFinalize.splice(stall, 1)[0]!.ms : 0;
    this.e.later(this.e.timings.transferFinalizeMs + extra, () => this.completeFinalize(t));
  }

  private async completeFinalize(t: LabTransfer): Promise<void> {
    const e = this.e;
    await this.stopSession(t);
    const s = this.sessions.get(t.id);
    if (s?.failAt === "finalizing") {
      delete s.failAt;
      return this.endWithFailure(t, "injected failure while finalizing (lab fault)");
    }
    const disk = e.findDisk(t.diskId);
    if (!disk) return this.endWithFailure(t, "the disk no longer exists");
    if (t.direction === "upload") {
      const problem = await this.verifyUpload(t, disk);
      if (problem) return this.endWithFailure(t, problem);
    }
    this.unlock(disk, t);
    this.setPhase(t, "finished_success");
    const vm = e.vmOfDisk(disk.id);
    e.audit("TRANSFER_IMAGE_SUCCEEDED", `Image ${t.direction === "upload" ? "Upload" : "Download"} with disk ${disk.alias} succeeded.`, {
      ...(vm ? { vmId: vm.id } : {}),
      ...(t.correlationId ? { correlationId: t.correlationId } : {}),
    });
  }

  /** VerifyUntrustedVolume: a qcow2 volume must be valid and have no backing file. */
  private async verifyUpload(t: LabTransfer, disk: LabDisk): Promise<string | undefined> {
    const vol = disk.volumes[disk.volumes.length - 1]!;
    if (vol.format !== "qcow2") return undefined;
    try {
      const info = await qemuImg.info(vol.path, { format: "qcow2", untrusted: true });
      if (t.backend === "file" && info.backingFilename) return "the uploaded image has a backing file";
      if (info.virtualSize > disk.provisionedSize) return "the uploaded image is larger than the disk";
      if (disk.volumes.length === 1) await qemuImg.check(vol.path, { format: "qcow2", untrusted: true });
      return undefined;
    } catch (err) {
      return `image verification failed: ${(err as Error).message}`;
    }
  }

  cancel(t: LabTransfer): void {
    if (isFinished(t) || t.phase.startsWith("finalizing") || t.phase.startsWith("cancelled")) return;
    this.setPhase(t, "cancelled_user");
    this.e.later(this.e.timings.transferFinalizeMs, async () => {
      this.setPhase(t, "finalizing_cleanup");
      await this.stopSession(t);
      const disk = this.e.findDisk(t.diskId);
      if (disk) {
        if (t.direction === "upload") await deleteDisk(this.e, disk, t.correlationId);
        else this.unlock(disk, t);
      }
      this.setPhase(t, "finished_cleanup");
      this.e.audit("TRANSFER_IMAGE_CANCELLED", `Image ${t.direction === "upload" ? "Upload" : "Download"} with disk ${disk?.alias ?? t.diskId} was cancelled.`, {
        ...(t.correlationId ? { correlationId: t.correlationId } : {}),
      });
    });
  }

  pause(t: LabTransfer): void {
    if (t.direction === "download") throw fault(400, "Cannot pause image download.");
    if (t.phase !== "transferring") return;
    this.setPhase(t, "paused_user");
  }

  resume(t: LabTransfer): void {
    if (t.phase !== "paused_user" && t.phase !== "paused_system") {
      throw cannot(409, "resume", "Virtual Disk", `The image transfer is not paused (phase ${t.phase}).`);
    }
    const hadSession = !!this.sessions.get(t.id)?.nbd;
    this.setPhase(t, "resuming");
    this.e.later(50, async () => {
      if (hadSession) this.setPhase(t, "transferring");
      else await this.startSession(t);
    });
  }

  extend(t: LabTransfer): void {
    t.updatedAt = Date.now();
  }

  /** The engine's ticket poller: activity, idle time, renewal, inactivity policy, armed faults. */
  private async monitor(): Promise<void> {
    const e = this.e;
    const nowMs = Date.now();
    for (const t of e.st.transfers) {
      if (t.phase !== "transferring" || !t.ticketId) continue;
      const s = this.session(t);
      s.ticks++;
      const info = e.imageio.getTicket(t.ticketId);
      if (!info) {
        this.failSystem(t, "the imageio ticket disappeared");
        continue;
      }
      t.active = info.active;
      if (info.transferred !== undefined) t.transferred = info.transferred;
      if (s.failAt === "transferring" && ((info.transferred ?? 0) > 0 || info.active || s.ticks >= 20)) {
        delete s.failAt;
        this.failSystem(t, "injected failure during the transfer (lab fault)");
        continue;
      }
      const expired = info.canceled || nowMs >= s.ticketExpiresAt;
      if (expired) {
        this.failSystem(t, "the image ticket expired and could not be renewed");
        continue;
      }
      if (!e.faults.noRenew.has(t.id) && nowMs >= s.ticketExpiresAt - e.timings.ticketRefreshAllowanceSec * 1000) {
        await e.imageio.extendTicket(t.ticketId, e.timings.ticketValiditySec);
        s.ticketExpiresAt = nowMs + e.timings.ticketValiditySec * 1000;
      }
      if (t.inactivityTimeout > 0 && !info.active && info.idle_time > t.inactivityTimeout) {
        const pause = t.timeoutPolicy === "pause" || (t.timeoutPolicy === "legacy" && t.direction === "upload");
        const vm = e.vmOfDisk(t.diskId);
        if (pause) {
          e.audit("UPLOAD_IMAGE_PAUSED_BY_SYSTEM_TIMEOUT", `Transfer ${t.id} was paused by the system: no activity for ${info.idle_time} s.`, {
            severity: "warning",
            ...(vm ? { vmId: vm.id } : {}),
          });
          t.failure = "inactivity timeout";
          this.setPhase(t, "paused_system");
        } else {
          e.audit("DOWNLOAD_IMAGE_CANCELED_TIMEOUT", `Transfer ${t.id} was cancelled by the system: no activity for ${info.idle_time} s.`, {
            severity: "warning",
            ...(vm ? { vmId: vm.id } : {}),
          });
          this.setPhase(t, "cancelled_system");
          void this.endWithFailure(t, "inactivity timeout");
        }
      }
    }
    // Finished entities are kept 15 min (success) / 30 min (failure), then GET gives 404.
    e.st.transfers = e.st.transfers.filter((t) => {
      if (!t.finishedAt) return true;
      const keep = t.phase === "finished_success" ? e.timings.successRetentionMs : e.timings.failureRetentionMs;
      return nowMs - t.finishedAt < keep;
    });
    e.st.backups = e.st.backups.filter((b) => {
      if (!b.finishedAt) return true;
      const keep = b.phase === "succeeded" ? e.timings.successRetentionMs : e.timings.failureRetentionMs;
      return nowMs - b.finishedAt < keep;
    });
  }

  /** Make a transfer's ticket expire now and block its renewal (control API fault). */
  async expireTicket(t: LabTransfer): Promise<void> {
    this.e.faults.noRenew.add(t.id);
    const s = this.session(t);
    s.ticketExpiresAt = Date.now();
    if (t.ticketId) {
      if (this.e.imageio.faults) this.e.imageio.faults.expire(t.ticketId);
      else await this.e.imageio.extendTicket(t.ticketId, 0);
    }
  }

  /** Stop every session (lab shutdown). */
  async closeAll(): Promise<void> {
    for (const t of this.e.st.transfers) await this.stopSession(t);
  }
}

export function registerImageTransfers(r: Router, e: Engine, transfers: Transfers): void {
  const idOf = (ctx: Ctx) => {
    const id = ctx.params.id;
    if (!isUuid(id)) throw new NotFound();
    return id.toLowerCase();
  };
  const find = (ctx: Ctx) => {
    const t = e.st.transfers.find((x) => x.id === idOf(ctx));
    if (!t) throw new NotFound();
    return t;
  };

  r.get("/imagetransfers", () => ok(collection("image_transfer", e.st.transfers.map((t) => encodeTransfer(t, e.st.ids.host)))));
  r.post("/imagetransfers", async (ctx) => created(encodeTransfer(await transfers.create(ctx), e.st.ids.host), e.baseUrl));
  r.get("/imagetransfers/:id", (ctx) => ok(encodeTransfer(find(ctx), e.st.ids.host)));

  const action = (name: "finalize" | "cancel" | "pause" | "resume" | "extend") =>
    r.post(`/imagetransfers/:id/${name}`, (ctx) => {
      const id = idOf(ctx);
      const t = e.st.transfers.find((x) => x.id === id);
      // TransferImageStatusCommand answers 200 for a well-formed id it no longer knows.
      if (!t) return actionDone(ctx);
      transfers[name](t);
      return actionDone(ctx);
    });
  action("finalize");
  action("cancel");
  action("pause");
  action("resume");
  action("extend");
}
