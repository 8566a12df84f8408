/** Runs: live runs with per-disk progress (updated by /live, server-sent events), and the last finished ones. */
import type { FeedRun } from "../bus-feed.ts";
import { bytes, seconds, type Times } from "../format.ts";
import { html, type SafeHtml } from "../html.ts";
import { isLive, runCard, runLabel } from "./run-card.ts";

export const FINISHED_SHOWN = 30;

export function runsPage(runs: readonly FeedRun[], t: Times): SafeHtml {
  const live = runs.filter(isLive);
  const finished = runs.filter((r) => !isLive(r)).slice(0, FINISHED_SHOWN);
  return html`<h1>Runs</h1>
<h2>Live</h2>
<section id="live-runs" aria-live="polite">
${live.length ? live.map((r) => runCard(r, t)) : html`<p class="muted empty">Nothing running.</p>`}
</section>
<h2>Last ${FINISHED_SHOWN} finished</h2>
<div class="table-wrap"><table class="finished"><thead><tr><th>Finished</th><th>VM</th><th>Run</th><th>Result</th><th>Duration</th><th>Bytes</th></tr></thead>
<tbody id="finished-runs">
${finished.map((r) => finishedRow(r, t))}
</tbody></table></div>`;
}

export function finishedRow(r: FeedRun, t: Times): SafeHtml {
  return html`<tr><td data-label="Finished">${t.when(r.finishedAt ?? r.updatedAt)}</td><td data-label="VM"><a href="/vm/${encodeURIComponent(r.vm)}">${r.vm}</a></td>
<td data-label="Run">${runLabel(r)}</td>
<td data-label="Result"><span class="badge ${r.state}">${r.state}</span>${r.code ? html` <code>${r.code}</code>` : ""}</td>
<td data-label="Duration">${seconds(r.seconds)}</td><td data-label="Bytes">${bytes(r.bytes)}</td></tr>`;
}
