import { afterEach, describe, expect, it } from "vitest";
import { createEngineClient, type EngineClient } from "./client.ts";
import {
  BackupFailedError,
  BackupTimeoutError,
  CheckpointTimeoutError,
  DiskFailedError,
  SnapshotFailedError,
  TransferFailedError,
  TransferTimeoutError,
  VmStatusError,
} from "./errors.ts";
import { startFakeEngine, type FakeEngine, type Reply, type Route } from "./testing/fake-engine.ts";
import {
  createDisk,
  deleteCheckpoint,
  deleteSnapshot,
  finalizeBackup,
  finalizeTransfer,
  openTransfer,
  takeSnapshot,
  waitForBackupPhase,
  waitForDiskOk,
  waitForTransferFinished,
  waitForTransferReady,
  waitForVmStatus,
  withBackup,
} from "./waits.ts";

const URL_T = "https://host1:54322/images/ticket-secret-1";
const fast = { intervalMs: 10, timeoutMs: 2000 };

let engine: FakeEngine | undefined;
let client: EngineClient | undefined;
afterEach(async () => {
  await client?.close();
  await engine?.close();
  client = undefined;
  engine = undefined;
});

async function setup(route: Route) {
  engine = await startFakeEngine({ route });
  client = createEngineClient({
    url: engine.url,
    user: "admin@internal",
    password: "secret-pw",
    pollIntervalMs: 10,
    getRetries: 0,
  });
  return { engine, client };
}

/** Replies from a script, one per GET; the last one repeats. */
function script(...replies: Reply[]): () => Reply {
  let i = 0;
  return () => replies[Math.min(i++, replies.length - 1)]!;
}

const transfer = (phase: string, extra: Record<string, unknown> = {}): Reply => ({
  status: 200,
  json: { id: "t1", phase, image: { id: "d1" }, ...extra },
});
const ok = { status: 200, json: { status: "complete" } };

describe("engine waits", () => {
  it("engine waits - transfer create: initializing then transferring returns the URLs", async () => {
    const get = script(transfer("initializing"), transfer("initializing"), transfer("transferring", { transfer_url: URL_T }));
    const { engine: e, client: c } = await setup((r) => (r.method === "GET" ? get() : undefined));
    const t = await waitForTransferReady(c, "t1", fast);
    expect(t.transfer_url).toBe(URL_T);
    expect(e.calls("POST", "/imagetransfers/t1/cancel")).toHaveLength(0);
  });

  it("engine waits - transfer create: paused_system cancels and fails", async () => {
    const { engine: e, client: c } = await setup((r) =>
      r.method === "GET" ? transfer("paused_system") : r.path.endsWith("/cancel") ? ok : undefined,
    );
    const err = await waitForTransferReady(c, "t1", fast).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(TransferFailedError);
    expect((err as TransferFailedError).phase).toBe("paused_system");
    expect(e.calls("POST", "/imagetransfers/t1/cancel")).toHaveLength(1);
  });

  it("engine waits - transfer create: finished_failure and 404 fail without cancel", async () => {
    const { engine: e, client: c } = await setup((r) =>
      r.method === "GET" ? (r.path.endsWith("/gone") ? undefined : transfer("finished_failure")) : ok,
    );
    await expect(waitForTransferReady(c, "t1", fast)).rejects.toBeInstanceOf(TransferFailedError);
    await expect(waitForTransferReady(c, "gone", fast)).rejects.toThrow(/removed/);
    expect(e.calls("POST", /cancel$/)).toHaveLength(0);
  });

  it("engine waits - transfer create: other phases cancel and fail", async () => {
    const { engine: e, client: c } = await setup((r) => (r.method === "GET" ? transfer("cancelled_user") : ok));
    await expect(waitForTransferReady(c, "t1", fast)).rejects.toThrow(/unexpected phase/);
    expect(e.calls("POST", "/imagetransfers/t1/cancel")).toHaveLength(1);
  });

  it("engine waits - transfer create: a deadline cancels and throws TransferTimeoutError with the phase", async () => {
    const { engine: e, client: c } = await setup((r) => (r.method === "GET" ? transfer("initializing") : ok));
    const started = performance.now();
    const err = await waitForTransferReady(c, "t1", { intervalMs: 10, timeoutMs: 150 }).catch((x: unknown) => x);
    expect(performance.now() - started).toBeLessThan(1500);
    expect(err).toBeInstanceOf(TransferTimeoutError);
    expect((err as TransferTimeoutError).transferId).toBe("t1");
    expect((err as TransferTimeoutError).phase).toBe("initializing");
    expect((err as TransferTimeoutError).code).toBe("TRANSFER_TIMEOUT");
    expect(e.calls("POST", "/imagetransfers/t1/cancel")).toHaveLength(1);
  });

  it("engine waits - transfer create: abort cancels the transfer and rejects with the reason", async () => {
    const { engine: e, client: c } = await setup((r) => (r.method === "GET" ? transfer("initializing") : ok));
    const ac = new AbortController();
    const reason = new Error("shutting down");
    setTimeout(() => ac.abort(reason), 60);
    await expect(waitForTransferReady(c, "t1", { ...fast, signal: ac.signal })).rejects.toBe(reason);
    expect(e.calls("POST", "/imagetransfers/t1/cancel")).toHaveLength(1);
  });

  it("engine waits - transfer create: a 503 during polling does not end the wait", async () => {
    const get = script(transfer("initializing"), { status: 503, text: "busy" }, transfer("transferring", { transfer_url: URL_T }));
    const { client: c } = await setup((r) => (r.method === "GET" ? get() : undefined));
    expect((await waitForTransferReady(c, "t1", fast)).phase).toBe("transferring");
  });

  it("engine waits - openTransfer skips polling when the POST is already transferring", async () => {
    const { engine: e, client: c } = await setup((r) =>
      r.method === "POST" ? { ...transfer("transferring", { transfer_url: URL_T }), status: 201 } : undefined,
    );
    const t = await openTransfer(c, { direction: "download", diskId: "d1", backupId: "b1" }, fast);
    expect(t.transfer_url).toBe(URL_T);
    expect(e.calls("GET", "/imagetransfers/t1")).toHaveLength(0);
  });

  it("engine waits - transfer finalize: finalizing_success then finished_success", async () => {
    const get = script(transfer("transferring"), transfer("finalizing_success"), transfer("finished_success"));
    const { engine: e, client: c } = await setup((r) => (r.method === "GET" ? get() : ok));
    const out = await finalizeTransfer(c, { id: "t1", image: { id: "d1" }, direction: "download" }, fast);
    expect(out.transfer?.phase).toBe("finished_success");
    expect(e.calls("POST", "/imagetransfers/t1/finalize")).toHaveLength(1);
  });

  it("engine waits - transfer finalize: finished_failure and finished_cleanup fail", async () => {
    const { client: c } = await setup((r) => (r.method === "GET" ? transfer(r.path.endsWith("t1") ? "finished_failure" : "finished_cleanup") : ok));
    await expect(waitForTransferFinished(c, "t1", "d1", fast)).rejects.toBeInstanceOf(TransferFailedError);
    await expect(waitForTransferFinished(c, "t2", "d1", fast)).rejects.toThrow(/cancelled/);
  });

  it("engine waits - transfer finalize: 404 asks the disk (ok → success, gone → fail, locked → fail)", async () => {
    const { client: c } = await setup((r) => {
      if (r.path === "/disks/d-ok") return { status: 200, json: { id: "d-ok", provisioned_size: "1", status: "ok" } };
      if (r.path === "/disks/d-locked") return { status: 200, json: { id: "d-locked", provisioned_size: "1", status: "locked" } };
      return undefined;
    });
    expect((await waitForTransferFinished(c, "t1", "d-ok", fast)).transfer).toBeUndefined();
    await expect(waitForTransferFinished(c, "t1", "d-gone", fast)).rejects.toThrow(/disk was removed/);
    await expect(waitForTransferFinished(c, "t1", "d-locked", fast)).rejects.toThrow(/disk is locked/);
  });

  it("engine waits - finalizing an upload also waits for the disk to be ok", async () => {
    const disk = script(
      { status: 200, json: { id: "d1", provisioned_size: "1", status: "locked" } },
      { status: 200, json: { id: "d1", provisioned_size: "1", status: "ok" } },
    );
    const { engine: e, client: c } = await setup((r) => {
      if (r.path === "/imagetransfers/t1") return transfer("finished_success");
      if (r.path === "/disks/d1") return disk();
      return ok;
    });
    await finalizeTransfer(c, { id: "t1", image: { id: "d1" }, direction: "upload" }, fast);
    expect(e.calls("GET", "/disks/d1")).toHaveLength(2);
  });

  it("engine waits - backup: initializing → starting → ready", async () => {
    const get = script(
      { status: 200, json: { id: "b1", phase: "initializing" } },
      { status: 200, json: { id: "b1", phase: "starting" } },
      { status: 200, json: { id: "b1", phase: "ready", to_checkpoint_id: "cp1" } },
    );
    const { client: c } = await setup((r) => (r.method === "GET" ? get() : undefined));
    const b = await waitForBackupPhase(c, "vm1", "b1", "ready", fast);
    expect(b.to_checkpoint_id).toBe("cp1");
  });

  it("engine waits - backup: failed explains itself with the latest engine event", async () => {
    const { client: c } = await setup((r) => {
      if (r.path === "/events") {
        expect(r.query.get("search")).toBe("b1");
        return { status: 200, json: { event: [{ id: "9", description: "Backup b1 for VM web01 failed: bitmap missing" }] } };
      }
      return { status: 200, json: { id: "b1", phase: "failed" } };
    });
    const err = await waitForBackupPhase(c, "vm1", "b1", "ready", fast).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(BackupFailedError);
    expect((err as BackupFailedError).detail).toContain("bitmap missing");
    expect((err as BackupFailedError).code).toBe("BACKUP_FAILED");
  });

  it("engine waits - backup: a 404 fails, a stuck phase times out", async () => {
    const { client: c } = await setup((r) =>
      r.path.endsWith("/b-stuck") ? { status: 200, json: { id: "b-stuck", phase: "initializing" } } : undefined,
    );
    await expect(waitForBackupPhase(c, "vm1", "b-gone", "ready", fast)).rejects.toBeInstanceOf(BackupFailedError);
    const err = await waitForBackupPhase(c, "vm1", "b-stuck", "ready", { intervalMs: 10, timeoutMs: 100 }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(BackupTimeoutError);
    expect((err as BackupTimeoutError).phase).toBe("initializing");
  });

  it("engine waits - finalizeBackup retries 409 (open transfer) and waits for succeeded", async () => {
    let finalizes = 0;
    const get = script({ status: 200, json: { id: "b1", phase: "finalizing" } }, { status: 200, json: { id: "b1", phase: "succeeded" } });
    const { client: c } = await setup((r) => {
      if (r.method === "POST") {
        return ++finalizes < 3
          ? { status: 409, json: { reason: "Operation Failed", detail: "[Cannot stop VM backup. There is an active image transfer for VM backup]" } }
          : ok;
      }
      return get();
    });
    const b = await finalizeBackup(c, "vm1", "b1", fast);
    expect(b.phase).toBe("succeeded");
    expect(finalizes).toBe(3);
  });

  it("engine waits - finalizeBackup twice: 'already in' counts as requested", async () => {
    const { client: c } = await setup((r) =>
      r.method === "POST"
        ? { status: 400, json: { reason: "Operation Failed", detail: "[VM 'web01' backup 'b1' is already in 'SUCCEEDED' phase, no need to stop the backup again]" } }
        : { status: 200, json: { id: "b1", phase: "succeeded" } },
    );
    expect((await finalizeBackup(c, "vm1", "b1", fast)).phase).toBe("succeeded");
  });

  it("engine waits - withBackup finalizes when the work fails and rethrows the work's error", async () => {
    let phase = "initializing";
    const { engine: e, client: c } = await setup((r) => {
      if (r.method === "POST" && r.path === "/vms/vm1/backups") return { status: 201, json: { id: "b1", phase } };
      if (r.method === "POST" && r.path.endsWith("/finalize")) {
        phase = "succeeded";
        return ok;
      }
      if (r.path === "/vms/vm1/backups/b1/disks") return { status: 200, json: { disk: [{ id: "d1", provisioned_size: "1", backup_mode: "full" }] } };
      if (r.path === "/vms/vm1/backups/b1") {
        if (phase === "initializing") phase = "ready";
        return { status: 200, json: { id: "b1", phase } };
      }
      return undefined;
    });
    const boom = new Error("download failed");
    let seenModes: Array<string | undefined> = [];
    await expect(
      withBackup(c, "vm1", { diskIds: ["d1"], id: "b1" }, async ({ disks }) => {
        seenModes = disks.map((d) => d.backup_mode);
        throw boom;
      }, fast),
    ).rejects.toBe(boom);
    expect(seenModes).toEqual(["full"]);
    expect(e.calls("POST", "/vms/vm1/backups/b1/finalize")).toHaveLength(1);
  });

  it("engine waits - withBackup returns the work's result and the succeeded backup", async () => {
    let phase = "ready";
    const { client: c } = await setup((r) => {
      if (r.method === "POST" && r.path === "/vms/vm1/backups") return { status: 201, json: { id: "b1", phase: "initializing" } };
      if (r.method === "POST") {
        phase = "succeeded";
        return ok;
      }
      if (r.path.endsWith("/disks")) return { status: 200, json: {} };
      return { status: 200, json: { id: "b1", phase, to_checkpoint_id: "cp9" } };
    });
    const { result, backup } = await withBackup(c, "vm1", { diskIds: ["d1"] }, async (s) => s.backup.to_checkpoint_id, fast);
    expect(result).toBe("cp9");
    expect(backup.phase).toBe("succeeded");
  });

  it("engine waits - disks: locked → ok; illegal fails and createDisk removes it", async () => {
    const d1 = script(
      { status: 200, json: { id: "d1", provisioned_size: "1", status: "locked" } },
      { status: 200, json: { id: "d1", provisioned_size: "1", status: "ok" } },
    );
    const { engine: e, client: c } = await setup((r) => {
      if (r.path === "/disks/d1") return d1();
      if (r.method === "POST" && r.path === "/disks") return { status: 202, json: { id: "d2", provisioned_size: "1", status: "locked" } };
      if (r.method === "GET" && r.path === "/disks/d2") return { status: 200, json: { id: "d2", provisioned_size: "1", status: "illegal" } };
      if (r.method === "DELETE") return { status: 200, json: {} };
      return undefined;
    });
    expect((await waitForDiskOk(c, "d1", fast)).status).toBe("ok");
    const err = await createDisk(c, { name: "x", provisionedSize: 1, format: "cow", storageDomain: { id: "sd" } }, fast).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(DiskFailedError);
    expect(e.calls("DELETE", "/disks/d2")).toHaveLength(1);
  });

  it("engine waits - snapshots: create waits for ok; a vanished snapshot fails; delete waits for 404", async () => {
    let s1 = 0;
    let removed = 0;
    const { client: c } = await setup((r) => {
      if (r.method === "POST") return { status: 202, json: { id: r.json && (r.json as { description: string }).description === "bad" ? "s2" : "s1", snapshot_status: "locked" } };
      if (r.path === "/vms/vm1/snapshots/s1" && r.method === "GET") {
        if (removed > 0 && ++removed > 3) return undefined;
        return { status: 200, json: { id: "s1", snapshot_status: ++s1 < 3 ? "locked" : "ok" } };
      }
      if (r.method === "DELETE" && r.path === "/vms/vm1/snapshots/s1") {
        removed = 1;
        return { status: 200, json: {} };
      }
      return undefined;
    });
    expect((await takeSnapshot(c, "vm1", { description: "ferry" }, fast)).snapshot_status).toBe("ok");
    await expect(takeSnapshot(c, "vm1", { description: "bad" }, fast)).rejects.toBeInstanceOf(SnapshotFailedError);
    await deleteSnapshot(c, "vm1", "s1", fast);
    expect(removed).toBeGreaterThan(3);
  });

  it("engine waits - checkpoints: delete waits for 404; an unknown checkpoint counts as deleted; stuck times out", async () => {
    let polls = 0;
    const { client: c } = await setup((r) => {
      if (r.method === "DELETE" && r.path.endsWith("/cp-missing")) {
        return { status: 400, json: { reason: "Operation Failed", detail: "[Cannot remove checkpoint. Checkpoint ID cp-missing doesn't exist.]" } };
      }
      if (r.method === "DELETE") return { status: 200, json: {} };
      if (r.path.endsWith("/cp1")) return ++polls < 3 ? { status: 200, json: { id: "cp1", state: "created" } } : undefined;
      if (r.path.endsWith("/cp-stuck")) return { status: 200, json: { id: "cp-stuck", state: "invalid" } };
      return undefined;
    });
    await deleteCheckpoint(c, "vm1", "cp1", fast);
    expect(polls).toBe(3);
    await deleteCheckpoint(c, "vm1", "cp-missing", fast);
    await expect(deleteCheckpoint(c, "vm1", "cp-stuck", { intervalMs: 10, timeoutMs: 80 })).rejects.toBeInstanceOf(CheckpointTimeoutError);
  });

  it("engine waits - VM status: powering_up → up; a removed VM fails", async () => {
    const get = script(
      { status: 200, json: { id: "vm1", name: "a", status: "powering_up" } },
      { status: 200, json: { id: "vm1", name: "a", status: "up" } },
    );
    const { client: c } = await setup((r) => (r.path === "/vms/vm1" ? get() : undefined));
    expect((await waitForVmStatus(c, "vm1", "up", fast)).status).toBe("up");
    await expect(waitForVmStatus(c, "vm-gone", "up", fast)).rejects.toBeInstanceOf(VmStatusError);
  });
});
