/**
 * The backup volume misbehaving: a stored layer corrupted before the next incremental, the
 * volume full mid-download (a small tmpfs), the volume read-only mid-run. Mounts need root;
 * each is undone when the world stops, whatever happened.
 */
import { execFile } from "node:child_process";
import { open, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { ChaosCase, CaseContext } from "../case.ts";
import { faultMidDownload, outcomeText } from "../steps.ts";
import { MiB, type World } from "../world.ts";

const run = promisify(execFile);
const ferryBin = fileURLToPath(new URL("../../cli/ferry.mjs", import.meta.url));

export class NeedsRootError extends Error {}

async function verify(storePath: string, vm: string, checkpoint: string): Promise<number> {
  return run(process.execPath, [ferryBin, "verify", vm, "--store", storePath, "--checkpoint", checkpoint, "--json"]).then(
    () => 0,
    (err: { code?: number }) => err.code ?? -1,
  );
}

async function layersOf(storePath: string, vm: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(join(storePath, vm), { withFileTypes: true })) {
    if (!d.isDirectory() || d.name === "ovf" || d.name === "blockhashes") continue;
    for (const f of await readdir(join(storePath, vm, d.name))) if (f.endsWith(".qcow2")) out.push(join(storePath, vm, d.name, f));
  }
  return out;
}

async function mountTmpfs(w: World, dir: string, size: string): Promise<void> {
  if (process.getuid?.() !== 0) throw new NeedsRootError("mounting a tmpfs store needs root");
  await run("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir]);
  // Unless the case unmounted it already.
  w.defer(async () => ((await readFile("/proc/mounts", "utf8")).includes(` ${dir} `) ? run("umount", ["-l", dir]) : undefined));
}

export const corruptLayer: ChaosCase = {
  name: "corrupt-layer",
  summary: "a stored layer corrupted before the next incremental: verify notices, the next point is a full with the reason",
  async run(w, ctx: CaseContext) {
    const first = await w.d.request("cx01", { mode: "full" });
    await w.d.outcome(first);
    const [layer] = await layersOf(w.d.storePath, "cx01");
    const size = (await stat(layer!)).size;
    const fh = await open(layer!, "r+");
    const junk = new Uint8Array(256 * 1024).map(() => Math.floor(ctx.random() * 256));
    const faultAt = performance.now();
    await fh.write(junk, 0, junk.length, Math.floor(size / 2));
    await fh.close();
    const problems: string[] = [];
    const noticed = await verify(w.d.storePath, "cx01", "latest");
    if (noticed !== 1) problems.push(`ferry verify of the corrupted point exited ${noticed}, expected 1`);
    await w.prd().control.writeGuestData(w.vms.cx01!.diskId, { offset: 0, length: 1 * MiB, seed: 99 });
    const next = await w.d.request("cx01");
    const out = await w.d.outcome(next);
    const dt = (await w.d.events()).find((e) => e.subject === "disk.transferred" && e.event.correlationId === next)?.event;
    if (dt?.mode !== "full" || !dt.reason) problems.push(`the point after the corruption is ${String(dt?.mode)} (reason: ${String(dt?.reason ?? "none")}), expected a full with the reason`);
    if (out.subject === "backup.completed" && (await verify(w.d.storePath, "cx01", "latest")) !== 0) problems.push("the new point does not verify");
    return {
      expect: { requests: [first, next] },
      faultAt,
      outcome: `${out.subject}; next point ${String(dt?.mode)} (${String(dt?.reason ?? "no reason")})`,
      problems,
      // The corrupted point stays corrupted on purpose; the new one is verified above.
      skipVerify: true,
    };
  },
};

export const storeFull: ChaosCase = {
  name: "store-full",
  summary: "the store volume (a 6 MiB tmpfs) fills mid-download: backup.failed with a code, no partial layer; room again → the next backup completes",
  followUp: "cx01",
  async run(w) {
    await mountTmpfs(w, w.d.storePath, "6m");
    w.prd().control.faults.throttleImageio(2 * MiB);
    const id = await w.d.request("cx01");
    const faultAt = performance.now();
    const out = await w.d.outcome(id, 240_000);
    w.prd().control.faults.clear();
    // Room again: the tmpfs goes, the store is the (empty) directory below it.
    await run("umount", [w.d.storePath]);
    return { expect: { requests: [id] }, faultAt, outcome: `${out.subject}${out.event.code ? `:${String(out.event.code)}` : ""}` };
  },
};

export const storeReadOnly: ChaosCase = {
  name: "store-read-only",
  summary: "the store turned read-only mid-download (a read-only bind mount over it; files already open stay writable), then writable again: the next backup completes and leaves no temp file",
  async run(w) {
    if (process.getuid?.() !== 0) throw new NeedsRootError("a read-only bind mount needs root");
    const dir = w.d.storePath;
    const r = await faultMidDownload(w, {
      async strike() {
        // A busy filesystem cannot be remounted read-only; a read-only bind mount over it can be made at any time.
        await run("mount", ["--bind", dir, dir]);
        w.defer(async () => ((await readFile("/proc/mounts", "utf8")).includes(` ${dir} `) ? run("umount", ["-l", dir]) : undefined));
        await run("mount", ["-o", "remount,bind,ro", dir]);
      },
      recover: () => run("umount", [dir]),
    });
    // Writable again: the next backup (holding the VM lease) removes what the failed run could not, and completes.
    const next = await w.d.request("cx01");
    const out = await w.d.outcome(next);
    return { ...r, expect: { requests: [...r.expect.requests, next], mustComplete: [next] }, outcome: `${r.outcome}; writable again: ${outcomeText(out)}` };
  },
};
