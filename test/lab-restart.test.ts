/**
 * The lab restarts with its state: same ports, same CA and credentials, same VMs and disk data, a
 * backup that was open comes back failed (VM_BACKUP_FAILED_UNMONITORED). And it keeps a bounded
 * number of point-in-time copies (they once filled this machine's disk).
 */
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLab, type Lab } from "../lab/mod.ts";
import { FAST_TIMINGS, RawApi } from "../lab/test-support.ts";

const MiB = 1024 * 1024;
let dir: string;
let lab: Lab | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-lab-restart-"));
});

afterAll(async () => {
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

const start = (keep = 2) => startLab({ dataDir: dir, engines: ["prd"], engineOptions: { timings: { ...FAST_TIMINGS, keepPointInTimeCount: keep } } });

async function backup(api: RawApi, vmId: string, diskId: string, finalize = true): Promise<string> {
  const r = await api.post(`/vms/${vmId}/backups`, { disks: { disk: [{ id: diskId }] } });
  expect(r.status, r.text).toBe(201);
  await api.waitFor(`/vms/${vmId}/backups/${r.json.id}`, (j) => j.phase === "ready");
  if (finalize) {
    expect((await api.post(`/vms/${vmId}/backups/${r.json.id}/finalize`, {})).status).toBe(200);
    await api.waitFor(`/vms/${vmId}/backups/${r.json.id}`, (j) => j.phase === "succeeded");
  }
  return String(r.json.id);
}

describe("lab restart with state", () => {
  it("lab restart - same URL, CA and password; VMs and data kept; an open backup is failed after the restart", async () => {
    lab = await start();
    const prd = lab.engines.prd!;
    const vm = await prd.control.createVm({ name: "rs01", disks: [{ alias: "rs01_d1", size: 4 * MiB }], status: "up" });
    const written = await prd.control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: MiB, seed: 7 });
    const before = { url: prd.url, plainUrl: prd.plainUrl, caPem: prd.caPem, password: prd.password, imageioUrl: prd.imageioUrl };
    let api = new RawApi(prd);
    const open = await backup(api, vm.id, vm.disks[0]!.id, false);
    await api.close();
    await lab.stop();

    lab = await start();
    const again = lab.engines.prd!;
    expect({ url: again.url, plainUrl: again.plainUrl, caPem: again.caPem, password: again.password, imageioUrl: again.imageioUrl }).toEqual(before);
    // A client that trusted the old CA still connects (RawApi verifies with the CA it was given).
    api = new RawApi(again, { ca: before.caPem });
    const vms = (await api.get("/vms")).json.vm as { name: string; id: string }[];
    expect(vms.map((v) => v.name)).toEqual(["rs01"]);
    const b = (await api.get(`/vms/${vm.id}/backups/${open}`)).json;
    expect(b.phase).toBe("failed");
    const out = join(dir, "rs01.raw");
    await again.control.exportImage(vm.disks[0]!.id, out, { format: "raw" });
    const { createHash } = await import("node:crypto");
    const { readFile } = await import("node:fs/promises");
    expect(createHash("sha256").update((await readFile(out)).subarray(0, MiB)).digest("hex")).toBe(written.sha256);
    await api.close();
  }, 60_000);

  it("lab kept copies - at most keepPointInTimeCount backups keep their point-in-time copy, the newest always", async () => {
    const prd = lab!.engines.prd!;
    const vm = await prd.control.createVm({ name: "rs02", disks: [{ alias: "rs02_d1", size: 4 * MiB }], status: "up" });
    const api = new RawApi(prd);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      await prd.control.writeGuestData(vm.disks[0]!.id, { offset: i * MiB, length: 65536, seed: i + 1 });
      ids.push(await backup(api, vm.id, vm.disks[0]!.id));
    }
    await api.close();
    const pit = join(dir, "prd", "point-in-time");
    expect(existsSync(pit)).toBe(true);
    expect(readdirSync(pit).sort()).toEqual(ids.slice(-2).sort());
    // The newest is exportable; a dropped one says so (404), not a wrong image.
    await prd.control.exportImage(vm.disks[0]!.id, join(dir, "new.raw"), { format: "raw", atBackup: ids[3]! });
    await expect(prd.control.exportImage(vm.disks[0]!.id, join(dir, "old.raw"), { format: "raw", atBackup: ids[0]! })).rejects.toThrow(/point-in-time/);
  }, 60_000);
});
