/**
 * The engine client against the lab engine (TLS with its CA, SSO, the JSON conventions, faults),
 * and the backup flow end to end through the engine and imageio clients: full backup start →
 * ready → transfer → read → finalize, then an incremental one from its checkpoint.
 */
import { createHash, randomUUID, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openImageio } from "../adapters/imageio/mod.ts";
import {
  AuthError,
  EngineConflictError,
  EngineFaultError,
  NotFoundError,
  TransferFailedError,
  createDisk,
  createEngineClient,
  deleteCheckpoint,
  deleteSnapshot,
  fetchEngineCa,
  finalizeBackup,
  finalizeTransfer,
  openTransfer,
  takeSnapshot,
  waitForBackupPhase,
  waitForVmStatus,
  withBackup,
  type EngineClient,
} from "../adapters/ovirt/mod.ts";
import { startLab, type Lab, type LabEngine } from "../lab/mod.ts";
import { errorText } from "./harness/error-text.ts";

const MiB = 1024 * 1024;
const fast = { intervalMs: 50, timeoutMs: 30_000 };

let dir: string;
let lab: Lab;
let prd: LabEngine;
let engine: EngineClient;
let vm: { id: string; name: string; disks: Array<{ id: string; alias: string }> };

function blockChecksum(data: Buffer): string {
  const outer = createHash("sha256");
  for (let off = 0; off < data.length; off += 4 * MiB) {
    outer.update(createHash("sha256").update(data.subarray(off, off + 4 * MiB)).digest());
  }
  return outer.digest("hex");
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-ovirt-lab-"));
  lab = await startLab({ dataDir: dir, engines: ["prd"] });
  prd = lab.engines.prd!;
  engine = createEngineClient({
    url: prd.url,
    user: prd.user,
    password: prd.password,
    caPem: prd.caPem,
    pollIntervalMs: 50,
    correlationId: "ovirt-lab-test",
  });
  vm = await prd.control.createVm({
    name: "web01",
    status: "up",
    disks: [
      { alias: "web01_os", size: 16 * MiB, format: "cow" },
      { alias: "web01_raw", size: 4 * MiB, format: "raw" },
    ],
  });
  await prd.control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 2 * MiB, seed: 1 });
  await prd.control.writeGuestData(vm.disks[0]!.id, { offset: 9 * MiB, length: 512 * 1024, pattern: 0x42 });
  await prd.control.writeGuestData(vm.disks[1]!.id, { offset: MiB, length: MiB, pattern: 0x11 });
}, 60_000);

afterAll(async () => {
  await engine?.close();
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("engine client against the lab", () => {
  it("engine client lab - logs in over TLS with the lab CA and reads the API root", async () => {
    const v = await engine.version();
    expect(v.major).toBe(4);
    expect(typeof v.full).toBe("string");
    const root = await engine.apiRoot();
    expect(root.product_info?.name).toBeTruthy();
  });

  it("engine client lab - a wrong password is an AuthError that does not carry the password", async () => {
    const bad = createEngineClient({ url: prd.url, user: prd.user, password: "not-the-Password-123", caPem: prd.caPem });
    try {
      const err = await bad.login().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AuthError);
      expect((err as AuthError).oauthError).toBe("access_denied");
      expect(errorText(err)).not.toContain("not-the-Password-123");
    } finally {
      await bad.close();
    }
    for (const s of [String(engine), inspect(engine, { depth: 10, showHidden: true }), JSON.stringify(engine)]) {
      expect(s).not.toContain(prd.password);
    }
  });

  it("engine client lab - finds the VM by name, reads its OVF and its disks as real numbers", async () => {
    const found = await engine.vms.findByName("web01");
    expect(found?.id).toBe(vm.id);
    expect(found?.status).toBe("up");
    expect(await engine.vms.findByName("no-such-vm")).toBeUndefined();
    const ovf = await engine.vms.getOvf(vm.id);
    expect(ovf).toContain("Envelope");
    const disks = await engine.diskAttachments.listWithDisks(vm.id);
    expect(disks.map((d) => d.disk.id).sort()).toEqual(vm.disks.map((d) => d.id).sort());
    const os = disks.find((d) => d.disk.id === vm.disks[0]!.id)!;
    expect(os.disk.provisioned_size).toBe(16 * MiB);
    expect(typeof os.attachment.active).toBe("boolean");
    expect(os.disk.format).toBe("cow");
    await expect(engine.vms.get(randomUUID())).rejects.toBeInstanceOf(NotFoundError);
  });

  it("engine client lab - full then incremental backup through the engine and imageio clients", async () => {
    const diskIds = vm.disks.map((d) => d.id);
    const backupId = randomUUID();
    const full = await withBackup(engine, vm.id, { diskIds, id: backupId, description: "ferry test full" }, async ({ backup, disks }) => {
      expect(backup.id).toBe(backupId);
      expect(disks.every((d) => d.backup_mode === "full")).toBe(true);
      const os = disks.find((d) => d.id === vm.disks[0]!.id)!;
      const t = await openTransfer(engine, { direction: "download", diskId: os.id, backupId: backup.id, inactivityTimeout: 120 }, fast);
      try {
        expect(t.phase).toBe("transferring");
        const io = await openImageio(t.transfer_url!, { caPem: prd.caPem, proxyUrl: t.proxy_url, maxConnections: 2 });
        try {
          const extents = await io.extents("zero");
          expect(io.size).toBe(16 * MiB);
          expect(extents.some((e) => !e.zero)).toBe(true);
          const head = await io.read(9 * MiB, 4096);
          expect(head.every((b) => b === 0x42)).toBe(true);
          const sum = await io.checksum();
          const pit = await prd.control.exportImage(os.id, join(dir, "full.raw"), { format: "raw", atBackup: backup.id });
          expect(sum.checksum).toBe(blockChecksum(await readFile(pit.path)));
        } finally {
          await io.close();
        }
      } finally {
        await finalizeTransfer(engine, t, fast);
      }
      return backup.to_checkpoint_id;
    }, fast);
    expect(full.backup.phase).toBe("succeeded");
    const checkpointId = full.result;
    expect(checkpointId).toBeTruthy();
    expect((await engine.checkpoints.list(vm.id)).map((c) => c.id)).toContain(checkpointId);

    await prd.control.writeGuestData(vm.disks[0]!.id, { offset: 12 * MiB, length: 256 * 1024, pattern: 0x77 });
    const incr = await withBackup(engine, vm.id, { diskIds, fromCheckpointId: checkpointId! }, async ({ backup, disks }) => {
      const modes = Object.fromEntries(disks.map((d) => [d.id, d.backup_mode]));
      expect(modes[vm.disks[0]!.id]).toBe("incremental");
      expect(modes[vm.disks[1]!.id]).toBe("full"); // raw disks are never incremental
      const t = await openTransfer(engine, { direction: "download", diskId: vm.disks[0]!.id, backupId: backup.id }, fast);
      try {
        const io = await openImageio(t.transfer_url!, { caPem: prd.caPem });
        try {
          const dirty = (await io.extents("dirty")).filter((e) => e.dirty);
          expect(dirty.length).toBeGreaterThan(0);
          const bytes = dirty.reduce((n, e) => n + e.length, 0);
          expect(bytes).toBeLessThan(2 * MiB);
          expect(dirty.some((e) => e.start <= 12 * MiB && 12 * MiB < e.start + e.length)).toBe(true);
        } finally {
          await io.close();
        }
      } finally {
        await finalizeTransfer(engine, t, fast);
      }
      return backup.from_checkpoint_id;
    }, fast);
    expect(incr.result).toBe(checkpointId);
    expect(incr.backup.phase).toBe("succeeded");
  });

  it("engine client lab - an unknown checkpoint is a 400 fault with the engine's detail", async () => {
    const missing = randomUUID();
    const err = await engine.backups
      .start(vm.id, { diskIds: [vm.disks[0]!.id], fromCheckpointId: missing })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineFaultError);
    expect((err as EngineFaultError).status).toBe(400);
    expect((err as EngineFaultError).detail).toContain(`Checkpoint ID ${missing} doesn't exist`);
  });

  it("engine client lab - a second backup while one is open is a 409 conflict; finalize releases it", async () => {
    const first = await engine.backups.start(vm.id, { diskIds: [vm.disks[0]!.id] });
    try {
      await waitForBackupPhase(engine, vm.id, first.id, "ready", fast);
      const err = await engine.backups.start(vm.id, { diskIds: [vm.disks[0]!.id] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EngineConflictError);
      expect((err as EngineConflictError).detail).toMatch(/during a backup operation/);
    } finally {
      const done = await finalizeBackup(engine, vm.id, first.id, fast);
      expect(done.phase).toBe("succeeded");
    }
    // Finalizing again is harmless.
    expect((await finalizeBackup(engine, vm.id, first.id, fast)).phase).toBe("succeeded");
  });

  it("engine client lab - a transfer failed by the engine is cancelled and reported", async () => {
    const b = await engine.backups.start(vm.id, { diskIds: [vm.disks[0]!.id] });
    try {
      await waitForBackupPhase(engine, vm.id, b.id, "ready", fast);
      prd.control.faults.failNextTransfer("initializing", "download");
      const err = await openTransfer(engine, { direction: "download", diskId: vm.disks[0]!.id, backupId: b.id }, fast).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TransferFailedError);
    } finally {
      prd.control.faults.clear();
      await finalizeBackup(engine, vm.id, b.id, fast);
    }
    expect(prd.control.status().openTransfers.filter((t) => !t.phase.startsWith("finished"))).toEqual([]);
  });

  it("engine client lab - upload into a new disk: create, wait ok, transfer, finalize, disk ok", async () => {
    const sd = (await engine.storageDomains.list()).find((s) => s.type === "data" || s.name)!;
    const disk = await createDisk(
      engine,
      { name: "restored", provisionedSize: 4 * MiB, format: "cow", backup: "incremental", storageDomain: { id: sd.id } },
      fast,
    );
    expect(disk.status).toBe("ok");
    const t = await openTransfer(engine, { direction: "upload", diskId: disk.id }, fast);
    const io = await openImageio(t.transfer_url!, { caPem: prd.caPem, proxyUrl: t.proxy_url });
    try {
      await io.write(0, Buffer.alloc(MiB, 0x33));
      await io.flush();
    } finally {
      await io.close();
    }
    const out = await finalizeTransfer(engine, t, fast);
    expect(out.phase).toBe("finished_success");
    expect((await engine.disks.get(disk.id)).status).toBe("ok");
    const exported = await prd.control.exportImage(disk.id, join(dir, "restored.raw"), { format: "raw" });
    const data = await readFile(exported.path);
    expect(data.subarray(0, MiB).every((b) => b === 0x33)).toBe(true);
    await engine.disks.remove(disk.id);
  });

  it("engine client lab - snapshot: take without memory, list its disks, download a volume, delete", async () => {
    const snap = await takeSnapshot(engine, vm.id, { description: "ferry snapshot test", diskIds: [vm.disks[0]!.id] }, fast);
    expect(snap.snapshot_status).toBe("ok");
    const disks = await engine.snapshots.disks(vm.id, snap.id);
    const volume = disks.find((d) => d.id === vm.disks[0]!.id)?.image_id;
    expect(volume).toBeTruthy();
    const t = await openTransfer(engine, { direction: "download", snapshotId: volume! }, fast);
    try {
      const io = await openImageio(t.transfer_url!, { caPem: prd.caPem });
      try {
        expect((await io.read(9 * MiB, 512)).every((b) => b === 0x42)).toBe(true);
      } finally {
        await io.close();
      }
    } finally {
      await finalizeTransfer(engine, t, { ...fast, diskId: vm.disks[0]!.id });
    }
    await deleteSnapshot(engine, vm.id, snap.id, fast);
    expect((await engine.snapshots.list(vm.id)).map((s) => s.id)).not.toContain(snap.id);
  });

  it("engine client lab - checkpoints are deleted and waited for", async () => {
    const before = await engine.checkpoints.list(vm.id);
    expect(before.length).toBeGreaterThan(0);
    const oldest = before[0]!;
    await deleteCheckpoint(engine, vm.id, oldest.id, fast);
    await expect(engine.checkpoints.get(vm.id, oldest.id)).rejects.toBeInstanceOf(NotFoundError);
    await deleteCheckpoint(engine, vm.id, oldest.id, fast); // already gone: fine
  });

  it("engine client lab - events: post an alert, then find it from an index and by search", async () => {
    const [latest] = await engine.events.list({ max: 1 });
    const from = latest?.index ?? 0;
    const marker = `ferry-test-${randomUUID()}`;
    const posted = await engine.events.post({ description: `Backup of web01 failed (${marker})`, severity: "alert", vmId: vm.id });
    expect(posted.origin).toBe("ferry");
    const again = await engine.events.post({ description: `second (${marker})`, severity: "normal" });
    expect(again.custom_id).not.toBe(posted.custom_id);
    const newer = await engine.events.list({ from });
    expect(newer.map((e) => e.description)).toEqual(expect.arrayContaining([`Backup of web01 failed (${marker})`]));
    expect(newer.every((e) => (e.index ?? 0) > from)).toBe(true);
  });

  it("engine client lab - revoked tokens are renewed once, transparently", async () => {
    await engine.vms.get(vm.id);
    expect(prd.control.revokeTokens()).toBeGreaterThan(0);
    expect((await engine.vms.get(vm.id)).id).toBe(vm.id);
  });

  it("engine client lab - 503s on a GET are retried; on a POST they surface as transient", async () => {
    prd.control.faults.httpErrors(503, 2, `/vms/${vm.id}$`);
    expect((await engine.vms.get(vm.id)).id).toBe(vm.id);
    prd.control.faults.httpErrors(503, 1, "/events$");
    const err = await engine.events.post({ description: "x", severity: "normal" }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe("ENGINE_SERVER");
    prd.control.faults.clear();
  });

  it("engine client lab - VM from OVF: create with a new name, start, stop, remove", async () => {
    const ovf = await engine.vms.getOvf(vm.id);
    const cluster = (await engine.vms.get(vm.id)).cluster!;
    const created = await engine.vms.createFromOvf({ ovf, cluster: { id: cluster.id }, name: "web01-restored" });
    expect(created.id).not.toBe(vm.id);
    expect(created.name).toBe("web01-restored");
    await engine.vms.start(created.id);
    await waitForVmStatus(engine, created.id, "up", fast);
    await engine.vms.stop(created.id);
    await waitForVmStatus(engine, created.id, "down", fast);
    await engine.vms.remove(created.id, { detachOnly: true });
    await expect(engine.vms.get(created.id)).rejects.toBeInstanceOf(NotFoundError);
  });

  it("engine client lab - networks, vNIC profiles, the VM's NICs, CPU topology and boot order parse as real values", async () => {
    const nics = await engine.nics.list(vm.id);
    expect(nics.map((n) => n.name)).toEqual(["nic1"]);
    expect(typeof nics[0]!.plugged).toBe("boolean");
    const mgmt = await engine.networks.findByName("ovirtmgmt");
    const profile = (await engine.vnicProfiles.list()).find((p) => p.id === nics[0]!.vnic_profile?.id);
    expect(profile?.network?.id).toBe(mgmt?.id);
    const v = await engine.vms.get(vm.id);
    expect(v.cpu?.topology).toEqual({ sockets: 1, cores: 1, threads: 1 });
    expect(v.os?.boot?.devices).toEqual(["hd"]);
    const sds = await engine.storageDomains.list();
    expect(sds.length).toBeGreaterThan(1);
    expect(sds.every((sd) => typeof sd.available === "number" && sd.available % 1024 ** 3 === 0)).toBe(true);
  });

  it("engine client lab - the CA from pki-resource matches over http and https", async () => {
    const plain = await fetchEngineCa(prd.plainUrl);
    const verified = await fetchEngineCa(prd.url, { caPem: prd.caPem });
    expect(plain.transport).toBe("http");
    expect(verified.transport).toBe("https-verified");
    expect(plain.fingerprint256).toBe(verified.fingerprint256);
    expect(plain.fingerprint256).toBe(new X509Certificate(prd.caPem).fingerprint256);
    expect(plain.isCa).toBe(true);
  });
});
