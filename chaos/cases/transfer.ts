/**
 * `ferry transfer download|upload` interrupted by SIGINT / SIGTERM mid-transfer (imageio
 * throttled): exit 130 / 143 with "interrupted", no partial output, no `ferry-dl-*` / `ferry-src-*`
 * temp dir, no qemu-nbd left. The case then finalizes the transfer as an operator would, so the
 * engine must end clean too.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { RawApi } from "../../lab/test-support.ts";
import type { ChaosCase } from "../case.ts";
import { sleep, StopWaitingError, until } from "../steps.ts";
import { MiB, type World } from "../world.ts";

const ferryBin = fileURLToPath(new URL("../../cli/ferry.mjs", import.meta.url));
export class TransferEndedError extends StopWaitingError {}

const EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

async function interrupted(w: World, direction: "download" | "upload", signal: "SIGINT" | "SIGTERM") {
  const api = new RawApi(w.prd());
  const d = w.d;
  try {
    let image = "";
    if (direction === "upload") {
      // A source image: the VM's disk as it is now, exported by the lab.
      image = join(d.tmp, "..", "source.qcow2");
      await w.prd().control.exportImage(w.vms.cx01!.diskId, image, { format: "qcow2" });
    }
    // An upload goes to a new disk of a VM that is down (the engine refuses a running VM's disk).
    if (direction === "upload") {
      await w.prd().control.setVmStatus(w.vms.cx01!.id, "down");
      await until("cx01 down", () => w.prd().engine.st.vms.find((v) => v.id === w.vms.cx01!.id)?.status === "down", 60_000, 100);
    }
    const disk = direction === "upload" ? (await w.prd().control.addDisk(w.vms.cx01!.id, { alias: "cx01_up", size: 64 * MiB })).id : w.vms.cx01!.diskId;
    if (direction === "upload") await until("the new disk", async () => (await api.get(`/disks/${disk}`)).json?.status === "ok");
    // A download reads a running VM's disk through a backup, as Ferry does.
    let backupId: string | undefined;
    if (direction === "download") {
      const b = await api.post(`/vms/${w.vms.cx01!.id}/backups`, { disks: { disk: [{ id: disk }] } });
      if (b.status !== 201) throw new Error(`backup start: ${b.status} ${b.text.slice(0, 200)}`);
      backupId = String(b.json.id);
      await until("the backup ready", async () => (await api.get(`/vms/${w.vms.cx01!.id}/backups/${backupId}`)).json?.phase === "ready", 120_000, 200);
    }
    const created = await api.post("/imagetransfers", { disk: { id: disk }, direction, format: "raw", inactivity_timeout: "120", ...(backupId ? { backup: { id: backupId } } : {}) });
    if (created.status !== 201) throw new Error(`transfer: ${created.status} ${created.text.slice(0, 200)}`);
    const t = created.json as { id: string; transfer_url: string };
    w.prd().control.faults.throttleImageio(256 * 1024);
    const out = join(d.storePath, "cli-transfer", "out.qcow2");
    const args = direction === "download" ? ["transfer", "download", t.transfer_url, out, "--ca", w.prd().caFile] : ["transfer", "upload", image, t.transfer_url, "--ca", w.prd().caFile, "--disk-is-zero"];
    await import("node:fs/promises").then((fs) => fs.mkdir(join(d.storePath, "cli-transfer"), { recursive: true }));
    const child = spawn(process.execPath, [ferryBin, ...args], { env: { ...process.env, TMPDIR: d.tmp }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const ticket = () => w.prd().engine.st.transfers.find((x) => x.id === t.id)?.ticketId;
    // Mid-transfer: a download has read 1 MiB through imageio; an upload (imageio counts no
    // written bytes) has its source served by qemu-nbd (ferry-src-*) for 3 s.
    await until(
      "the transfer under way",
      async () => {
        if (child.exitCode !== null) throw new TransferEndedError(`ferry transfer ${direction} ended (${child.exitCode}) before the fault: ${stderr.slice(-400)}`);
        if (direction === "download") {
          const id = ticket();
          return ((id ? w.prd().engine.imageio.getTicket(id)?.transferred : 0) ?? 0) >= 1 * MiB;
        }
        return (await readdir(d.tmp)).some((n) => n.startsWith("ferry-src-"));
      },
      180_000,
      100,
    );
    if (direction === "upload") await sleep(3000);
    const faultAt = performance.now();
    child.kill(signal);
    const code = await exited;
    w.prd().control.faults.clear();
    const problems: string[] = [];
    if (code !== EXIT[signal]) problems.push(`exit ${code}, expected ${EXIT[signal]} (stderr: ${stderr.slice(-300)})`);
    if (!/interrupted/.test(stderr)) problems.push(`stderr does not say 'interrupted': ${stderr.slice(-200)}`);
    if (existsSync(out)) problems.push(`the partial output ${out} is left`);
    // The operator's side: cancel the transfer (an interrupted one is not a good copy).
    await api.post(`/imagetransfers/${t.id}/cancel`, {});
    await until("the transfer finished", async () => String((await api.get(`/imagetransfers/${t.id}`)).json?.phase ?? "finished_").startsWith("finished_"), 60_000, 200);
    if (backupId) {
      await api.post(`/vms/${w.vms.cx01!.id}/backups/${backupId}/finalize`, {});
      await until("the backup finished", async () => ["succeeded", "failed"].includes(String((await api.get(`/vms/${w.vms.cx01!.id}/backups/${backupId}`)).json?.phase)), 60_000, 200);
    }
    return { expect: { requests: [] }, faultAt, outcome: `exit ${code}`, problems };
  } finally {
    await api.close();
  }
}

export const transferSigint: ChaosCase = {
  name: "transfer-download-sigint",
  summary: "ferry transfer download interrupted by SIGINT mid-transfer",
  run: (w) => interrupted(w, "download", "SIGINT"),
};

export const transferSigterm: ChaosCase = {
  name: "transfer-download-sigterm",
  summary: "ferry transfer download interrupted by SIGTERM mid-transfer",
  run: (w) => interrupted(w, "download", "SIGTERM"),
};

export const uploadSigterm: ChaosCase = {
  name: "transfer-upload-sigterm",
  summary: "ferry transfer upload interrupted by SIGTERM mid-transfer",
  run: (w) => interrupted(w, "upload", "SIGTERM"),
};
