/** Events: the bus's commands, outcomes, failures and rejections, filterable by VM and kind. */
import type { FeedEvent } from "../bus-feed.ts";
import type { Times } from "../format.ts";
import { html, type SafeHtml } from "../html.ts";

export const EVENT_KINDS = {
  all: "everything",
  outcomes: "outcomes (*.completed, *.failed)",
  failures: "failures (*.failed)",
  rejections: "rejections (*.rejected)",
  commands: "commands (*.requested)",
  facts: "facts (disk.transferred, chain.updated, cert.*, ovirt.event)",
} as const;
export type EventKind = keyof typeof EVENT_KINDS;

export function eventMatches(e: FeedEvent, kind: EventKind): boolean {
  const s = e.subject;
  switch (kind) {
    case "all":
      return true;
    case "outcomes":
      return s.endsWith(".completed") || s.endsWith(".failed");
    case "failures":
      return s.endsWith(".failed");
    case "rejections":
      return s.endsWith(".rejected");
    case "commands":
      return s.endsWith(".requested") || s === "cert.expiring";
    case "facts":
      return !s.endsWith(".rejected") && !s.endsWith(".requested") && !s.endsWith(".completed") && !s.endsWith(".failed");
  }
}

function summary(e: FeedEvent): string {
  const d = e.data;
  const pick = (k: string) => (d[k] === undefined ? undefined : `${k}=${typeof d[k] === "object" ? JSON.stringify(d[k]).slice(0, 80) : String(d[k])}`);
  return ["code", "reason", "message", "mode", "kind", "restorePoint", "target", "name", "bytes", "seconds", "disk", "engine"].map(pick).filter(Boolean).join("  ");
}

export function eventsPage(events: readonly FeedEvent[], vms: readonly string[], filter: { vm: string; kind: EventKind }, limit: number, t: Times): SafeHtml {
  const shown = events.filter((e) => (!filter.vm || e.vm === filter.vm) && eventMatches(e, filter.kind)).slice(0, limit);
  return html`<h1>Events</h1>
<form class="filter" method="get" action="/events">
  <label>VM <select name="vm"><option value="">all</option>${vms.map((v) => html`<option value="${v}" ${v === filter.vm ? html`selected` : ""}>${v}</option>`)}</select></label>
  <label>Kind <select name="kind">${Object.entries(EVENT_KINDS).map(([k, t]) => html`<option value="${k}" ${k === filter.kind ? html`selected` : ""}>${t}</option>`)}</select></label>
  <button type="submit">Filter</button>
</form>
<p class="muted">${shown.length} shown (newest first, at most ${limit}).</p>
<div class="table-wrap"><table class="events"><thead><tr><th>Time</th><th>Subject</th><th>VM</th><th>Detail</th></tr></thead><tbody>
${shown.map(
  (e) => html`<tr class="${e.subject.endsWith(".failed") || e.subject.endsWith(".rejected") ? "problem" : ""}"><td data-label="Time">${t.when(e.time)}</td><td data-label="Subject"><code>${e.subject}</code></td>
<td data-label="VM">${e.vm ? html`<a href="/vm/${encodeURIComponent(e.vm)}">${e.vm}</a>` : ""}</td><td data-label="Detail" class="detail">${summary(e)}</td></tr>`,
)}
</tbody></table></div>`;
}
