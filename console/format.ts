/** How the console writes sizes, times and ages (UTC, like the CLI's tables). */
import { formatDuration } from "../config/status.ts";

export { formatDuration };

export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** "2026-01-31 02:10 UTC". */
export function when(iso: string | undefined): string {
  if (!iso || Number.isNaN(Date.parse(iso))) return "–";
  return `${new Date(iso).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

export function ago(iso: string | undefined, now: Date): string {
  if (!iso || Number.isNaN(Date.parse(iso))) return "–";
  return `${formatDuration((now.getTime() - Date.parse(iso)) / 1000)} ago`;
}

export function seconds(s: number | undefined): string {
  return s === undefined ? "–" : s < 60 ? `${s.toFixed(1)} s` : formatDuration(s);
}
