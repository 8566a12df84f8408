/**
 * How the console writes sizes, times and ages. Times are the wall clock of the config's
 * `timeZone` — the zone of the schedules, retention and `ferry status` — with the zone named
 * on every one, so a page never mixes zones and never leaves one to guess.
 */
import { formatDuration } from "../config/status.ts";
import { localDateKey, localTime } from "../domain/schedule/mod.ts";

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

export interface Times {
  /** The IANA zone every time is written in. */
  readonly zone: string;
  /** "2026-01-31 03:10 Europe/Berlin" for an ISO time or epoch milliseconds; "–" for none. */
  when(t: string | number | undefined): string;
}

/** Times in `zone` (already checked by the config schema: an IANA name Intl knows). */
export function timesIn(zone: string): Times {
  return {
    zone,
    when(t) {
      const ms = typeof t === "number" ? t : t ? Date.parse(t) : Number.NaN;
      if (!Number.isFinite(ms)) return "–";
      const l = localTime(new Date(ms), zone);
      return `${localDateKey(l)} ${String(l.hour).padStart(2, "0")}:${String(l.minute).padStart(2, "0")} ${zone}`;
    },
  };
}

export function ago(iso: string | undefined, now: Date): string {
  if (!iso || Number.isNaN(Date.parse(iso))) return "–";
  return `${formatDuration((now.getTime() - Date.parse(iso)) / 1000)} ago`;
}

export function seconds(s: number | undefined): string {
  return s === undefined ? "–" : s < 60 ? `${s.toFixed(1)} s` : formatDuration(s);
}
