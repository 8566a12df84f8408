/**
 * The backup store runs out of space during a backup (a 64 MiB tmpfs as the store): one final
 * backup.failed STORE_FULL naming the store path and its free bytes (no retry), no partial or
 * unrecorded layer left, the chain untouched, nothing open on the engine, the VM lease released —
 * and the next backup, once space is freed, is an incremental on the intact chain.
 * Mounting needs root (the test containers run as root).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm, rmdir, writeFile } from "node:fs/promises";
import { statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { startPipeline, type Pipeline } from "./backup-support.ts";
import { labState } from "./backup-lab.ts";

const run = promisify(execFile);
const MiB = 1048576;
let mnt: string;
let mounted = false;
let p: Pipeline;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error("test/store-full.test.ts mounts a tmpfs and needs root");
  mnt = await mkdtemp(join(tmpdir(), "ferry-full-"));
  await run("mount", ["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", mnt]);
  mounted = true;
  p = await startPipeline({ settings: { storePath: join(mnt, "store") } });
});

afterAll(async () => {
  await p?.stop();
  if (mounted) await run("umount", [mnt]);
  if (mnt) await rmdir(mnt).catch(() => rm(mnt, { recursive: true, force: true }));
});

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

describe("store full (tmpfs)", () => {
  it("store full - the store fills up mid-backup: one final STORE_FULL with the store path and free bytes, nothing partial, chain intact; after freeing space the next backup is an incremental", async () => {
    const store = join(mnt, "store");
    const control = p.lab.engines.prd!.control;
    const vm = await control.createVm({ name: "sf01", disks: [{ alias: "sf01_d1", size: 48 * MiB }, { alias: "sf01_d2", size: 16 * MiB }], status: "up" });
    const [d1, d2] = vm.disks.map((d: { id: string }) => d.id) as [string, string];
    await control.writeGuestData(d1, { offset: 0, length: 8 * MiB, seed: 21 });
    await control.writeGuestData(d2, { offset: 0, length: 4 * MiB, seed: 22 });
    const first = await p.backup("sf01", { timeoutMs: 180_000 });
    expect(first.subject, JSON.stringify(first.event)).toBe("backup.completed");
    const chainBefore = (await p.wiring.chains.read(vm.id))!;
    const manifestBefore = (await p.wiring.store.volume.readManifest("sf01"))!;

    // Leave about 6 MiB free, then change 24 MiB of the first disk: its incremental cannot fit.
    const free = () => { const s = statfsSync(mnt); return s.bavail * s.bsize; };
    const filler = join(mnt, "filler");
    await writeFile(filler, Buffer.alloc(free() - 6 * MiB, 1));
    await control.writeGuestData(d1, { offset: 16 * MiB, length: 24 * MiB, seed: 23 });

    const failed = await p.backup("sf01", { timeoutMs: 180_000 });
    expect(failed.subject, JSON.stringify(failed.event)).toBe("backup.failed");
    expect(failed.event.code).toBe("STORE_FULL");
    expect(failed.event.message).toContain(store);
    expect(failed.event.message).toMatch(/\(\d+ bytes free\)/);
    expect(failed.event.attempts).toBe(1); // final: no retry into a full store
    const outcomes = p.seen.filter((s) => (s.subject === "backup.failed" || s.subject === "backup.completed") && s.event.correlationId === failed.event.correlationId);
    expect(new Set(outcomes.map((s) => `${s.subject}:${String(s.event.id)}`)).size).toBe(1);
    console.log(`store full: ${String(failed.event.message)}`);

    // Nothing partial: every layer file under the VM's folder is one the manifest records.
    const recorded = new Set(manifestBefore.restorePoints.flatMap((rp) => rp.disks.map((d) => d.layer)));
    const layers = (await filesUnder(join(store, "sf01"))).map((f) => relative(store, f)).filter((f) => !f.includes("/ovf/") && !f.includes("/blockhashes/") && !f.endsWith(".json"));
    expect(layers.sort()).toEqual([...recorded].sort());
    // The chain is as it was, in KV and in the store; nothing open on the engine; the VM is free.
    const chainAfter = (await p.wiring.chains.read(vm.id))!;
    expect(chainAfter.restorePoints.map((rp) => rp.id)).toEqual(chainBefore.restorePoints.map((rp) => rp.id));
    expect(chainAfter.incoming ?? []).toEqual([]);
    expect((await p.wiring.store.volume.readManifest("sf01"))!.restorePoints.map((rp) => rp.id)).toEqual(manifestBefore.restorePoints.map((rp) => rp.id));
    expect(await labState(p)).toEqual({ openBackups: 0, openTransfers: 0, lockedDisks: 0 });
    expect(await p.wiring.leases.get(vm.id)).toBeUndefined();

    // Space freed: the next backup builds on the intact chain.
    await rm(filler);
    const next = await p.backup("sf01", { timeoutMs: 180_000 });
    expect(next.subject, JSON.stringify(next.event)).toBe("backup.completed");
    expect(next.event.kind).toBe("incremental");
    const chainNext = (await p.wiring.chains.read(vm.id))!;
    expect(chainNext.restorePoints.length).toBe(chainBefore.restorePoints.length + 1);
    expect(chainNext.restorePoints.at(-1)!.parentId).toBe(chainBefore.restorePoints.at(-1)!.id);
  }, 600_000);
});
