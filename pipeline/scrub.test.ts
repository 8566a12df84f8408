import { describe, expect, it } from "vitest";
import { addRestorePoint, digestsPath, emptyChain, layerPath, markVerified, type ChainRecord } from "../domain/chain/mod.ts";
import { lastSlot, scrubDue } from "./scrub.ts";

const DAY = 86_400_000;
const WEEK = 7 * DAY;
const VM = { id: "0b7c7a4e-6d8e-4a52-9a3b-2f1e6c1d9a10", name: "web01" };

function chainWith(times: string[]): ChainRecord {
  let r = emptyChain(VM, new Date(times[0]!));
  let parent: string | undefined;
  for (const [i, time] of times.entries()) {
    const key = `cp${i}`;
    const kind = parent ? "incremental" : "full";
    const layer = layerPath(VM.name, "d1", time, key, kind);
    r = addRestorePoint(r, {
      id: `rp${i}`, time, checkpointId: key,
      disks: [{ diskId: "d1", alias: "d1", virtualSize: 1 << 20, layer, ...(parent ? { parentLayer: parent } : {}), kind, size: 1, checksum: { algorithm: "sha256", blockSize: 4 << 20, value: "a".repeat(64) }, digestsFile: digestsPath(VM.name, key, "d1") }],
    }, new Date(time));
    parent = layer;
  }
  return r;
}

describe("scheduled scrub slots", () => {
  it("scrub slots - each VM's slot is stable, at most one interval back, and VMs spread over the week", () => {
    const now = new Date("2026-03-04T05:06:07Z");
    const slot = lastSlot(VM.id, WEEK, now);
    expect(slot).toBeLessThanOrEqual(now.getTime());
    expect(now.getTime() - slot).toBeLessThan(WEEK);
    // Same id, same slot phase a week later.
    expect(lastSlot(VM.id, WEEK, new Date(now.getTime() + WEEK))).toBe(slot + WEEK);
    const days = new Set(Array.from({ length: 70 }, (_, i) => Math.floor(((lastSlot(`vm-${i}`, WEEK, now) % WEEK) + WEEK) % WEEK / DAY)));
    expect(days.size).toBe(7);
  });

  it("scrub due - a chain not verified since its slot is due; one verified after it is not; no points, nothing to do", () => {
    const now = new Date("2026-03-20T00:00:00Z");
    const slot = lastSlot(VM.id, WEEK, now);
    const old = chainWith([new Date(slot - 3 * DAY).toISOString(), new Date(slot - 2 * DAY).toISOString()]);
    expect(scrubDue(old, WEEK, now)).toBe(true);
    const verifiedAfter = markVerified(old, "rp0", { time: new Date(slot + 1000).toISOString(), ok: true });
    expect(scrubDue(verifiedAfter, WEEK, now)).toBe(false);
    const verifiedBefore = markVerified(old, "rp1", { time: new Date(slot - 1000).toISOString(), ok: true });
    expect(scrubDue(verifiedBefore, WEEK, now)).toBe(true);
    // A chain whose first point came after the slot waits for its next slot.
    expect(scrubDue(chainWith([new Date(slot + 1000).toISOString()]), WEEK, now)).toBe(false);
    expect(scrubDue(emptyChain(VM, now), WEEK, now)).toBe(false);
  });
});
