/** One readable line per bus event, for the demo's live output. */
import { mib } from "./report.ts";
import type { BusEvent } from "./bus.ts";

function short(v: unknown, n = 12): string {
  return typeof v === "string" ? (v.length > n ? `${v.slice(0, n)}…` : v) : String(v);
}

export function describeEvent(e: BusEvent, aliases: ReadonlyMap<string, string>): string {
  const d = e.data;
  const diskName = (id: unknown) => aliases.get(String(id)) ?? short(id, 8);
  switch (e.subject) {
    case "backup.requested": {
      // The request as sent, without the envelope a CLI may add.
      const { id: _id, time: _time, correlationId: _c, ...body } = d;
      return JSON.stringify(body);
    }
    case "disk.transferred": {
      const disk = d.disk as { id?: string; alias?: string } | undefined;
      const layer = d.layer as { path?: string; size?: number; parent?: string } | undefined;
      const checksum = d.checksum as { value?: string } | undefined;
      return `${disk?.alias ?? diskName(disk?.id)}: ${String(d.mode)} layer ${layer?.path ?? "?"} (${mib(layer?.size ?? 0)} on disk${layer?.parent ? ", backed by the previous layer" : ""}), sha256 ${short(checksum?.value, 16)}`;
    }
    case "chain.updated": {
      const rp = d.restorePoint as { id?: string; kind?: string; disks?: unknown[] } | undefined;
      return `restore point ${rp?.id ?? "?"} (${rp?.kind ?? "?"}, ${rp?.disks?.length ?? 0} disk(s)) recorded in the chain and the store`;
    }
    case "backup.completed": {
      const removed = (d.retention as { removed?: string[] } | undefined)?.removed ?? [];
      return `${String(d.vm)}: ${String(d.kind)} restore point ${String(d.restorePoint)}, ${mib(Number(d.bytes ?? 0))} stored in ${Number(d.seconds ?? 0).toFixed(1)} s, retention removed ${removed.length ? removed.join(", ") : "nothing"}`;
    }
    case "backup.failed":
      return `${String(d.vm)}: ${String(d.code)}: ${String(d.message)}`;
    case "transfer.progress": {
      const total = Number(d.total ?? 0);
      const pct = total > 0 ? Math.min(100, Math.floor((Number(d.bytes ?? 0) / total) * 100)) : 100;
      return `${String(d.vm)} ${diskName(d.disk)}: ${String(d.phase)} ${pct}% (${mib(Number(d.bytes ?? 0))} of ${mib(total)})`;
    }
    default:
      if (e.subject.endsWith(".rejected")) return `${String(d.reason)} (payload ${short(d.payload, 60)})`;
      return JSON.stringify(d).slice(0, 160);
  }
}

/** Progress lines at most every `everyMs` per disk, so a long transfer does not flood the terminal. */
export function progressThrottle(everyMs: number): (e: BusEvent) => boolean {
  const last = new Map<string, number>();
  return (e) => {
    if (e.subject !== "transfer.progress") return true;
    const key = String(e.data.disk);
    const prev = last.get(key) ?? 0;
    if (e.at - prev < everyMs) return false;
    last.set(key, e.at);
    return true;
  };
}
