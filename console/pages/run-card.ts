/**
 * One run as the Runs page and the live stream show it: VM, kind, state and a progress bar per
 * disk. The SSE endpoint sends this same fragment on every change, so the page and the live
 * update can never disagree.
 */
import type { FeedRun } from "../bus-feed.ts";
import { html, type SafeHtml } from "../html.ts";
import { bytes, seconds, type Times } from "../format.ts";

/** A DOM id safe for any correlation id. */
export function runDomId(key: string): string {
  return `run-${Buffer.from(key).toString("base64url")}`;
}

export function isLive(r: FeedRun): boolean {
  return r.state === "requested" || r.state === "running";
}

/** A completed run moved every disk, also one with nothing to move (an incremental without changes: 0 of 0). */
function pct(r: FeedRun, done: number, total: number): number {
  if (r.state === "completed") return 100;
  return total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 0;
}

/** "backup (full)", "restore → dr", "restore test → dr", "replication → dr": the same words on every page. */
export function runLabel(r: FeedRun): string {
  if (r.kind === "backup") return `backup${r.mode ? ` (${r.mode})` : ""}`;
  return `${r.mode === "test" ? "restore test" : r.mode === "replicate" ? "replication" : "restore"}${r.target ? ` → ${r.target}` : ""}`;
}

export function runCard(r: FeedRun, t: Times): SafeHtml {
  const done = r.disks.reduce((n, d) => n + d.bytes, 0);
  const total = r.disks.reduce((n, d) => n + d.total, 0);
  const label = runLabel(r);
  return html`<article class="run ${r.state}" id="${runDomId(r.key)}" data-state="${r.state}" data-vm="${r.vm}">
  <header><a href="/vm/${encodeURIComponent(r.vm)}">${r.vm}</a> <span class="kind">${label}</span> <span class="badge ${r.state}">${r.state}</span>
  ${r.disks.length ? html`<span class="muted">${bytes(done)} of ${bytes(total)}</span>` : ""}</header>
  ${r.disks.length === 0 && isLive(r) ? html`<p class="muted">waiting for the first disk…</p>` : ""}
  ${r.disks.map(
    (d) => html`<div class="disk"><label>${d.alias ?? d.disk} <span class="muted">${d.phase}</span> <span class="pct">${pct(r, d.bytes, d.total)}%</span></label>
    <progress max="100" value="${pct(r, d.bytes, d.total)}" aria-label="${d.alias ?? d.disk}" data-disk="${d.disk}"></progress></div>`,
  )}
  ${isLive(r)
    ? ""
    : html`<p class="outcome">${r.state === "completed"
        ? html`done ${t.when(r.finishedAt)}${r.seconds !== undefined ? html`, ${seconds(r.seconds)}` : ""}${r.bytes !== undefined ? html`, ${bytes(r.bytes)}` : ""}${r.restorePoint ? html` — restore point ${r.restorePoint}` : ""}`
        : html`<strong>${r.code ?? r.state}</strong>: ${r.message ?? ""}`}</p>`}
</article>`;
}
