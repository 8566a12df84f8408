/**
 * `ferry backup <vm> --wait` and `ferry status` against the running pipeline (real NATS, lab).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PassThrough } from "node:stream";
import { main } from "../cli/main.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";

const MiB = 1048576;
let p: Pipeline;

beforeAll(async () => {
  p = await startPipeline();
  const control = p.lab.engines.prd!.control;
  const vm = await control.createVm({ name: "cli01", disks: [{ alias: "cli01_d1", size: 16 * MiB }, { alias: "cli01_d2", size: 4 * MiB }], status: "up" });
  await control.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 12 * MiB, seed: 1 });
});

afterAll(async () => {
  await p?.stop();
});

async function ferry(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (b) => (out += String(b)));
  stderr.on("data", (b) => (err += String(b)));
  const code = await main(args, { stdout, stderr, env: { NATS_URL: p.nats.url }, cwd: p.dir, signal: new AbortController().signal });
  return { code, out, err };
}

describe("ferry backup / status (lab)", () => {
  it("ferry backup - --wait --json exits 0 with the backup.completed event", async () => {
    const r = await ferry("backup", "cli01", "--wait", "--json");
    expect(r.code, r.err).toBe(0);
    const ev = JSON.parse(r.out.trim()) as Record<string, unknown>;
    expect(ev).toMatchObject({ vm: "cli01", kind: "full" });
  });

  it("ferry backup - --wait prints per-disk progress and the outcome; --full forces a full", async () => {
    const r = await ferry("backup", "cli01", "--wait", "--full");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/backup of cli01 completed: restore point rp-\S+ \(full\)/);
    // Progress is per disk by alias, and the last line has every disk at 100% with its final size.
    const lines = r.err.trim().split("\n").filter((l) => l.startsWith("cli01: "));
    expect(lines.length, r.err).toBeGreaterThan(0);
    expect(lines.at(-1)).toMatch(/^cli01: cli01_d\d 100% [\d.]+ (B|KiB|MiB)  cli01_d\d 100% [\d.]+ (B|KiB|MiB)$/);
    expect(lines.at(-1)).toMatch(/cli01_d1 100% 1\d\.\d MiB/); // 12 MiB of guest data (+ metadata) in a full
  });

  it("ferry backup - an unknown VM exits 1 with the reason; an invalid name exits 4 and publishes nothing", async () => {
    const r = await ferry("backup", "nosuchvm", "--wait");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/VM_NOT_FOUND.*nosuchvm/);
    const bad = await ferry("backup", "../etc", "--wait");
    expect(bad.code).toBe(4);
    expect(bad.err).toMatch(/vm/);
  });

  it("ferry status - shows the last result per VM", async () => {
    const r = await ferry("status", "--json");
    expect(r.code, r.err).toBe(0);
    const rows = JSON.parse(r.out) as { vm: string; result: string; restorePoints: number; last?: { kind: string } }[];
    expect(rows.find((x) => x.vm === "cli01")).toMatchObject({ result: "ok", restorePoints: 2, last: { kind: "full" } });
    const human = await ferry("status");
    expect(human.out).toMatch(/cli01\s+ok\s+2 points\s+last #2 \S+ full/);
  });
});
