/** A VM: its status, restore points (chain graph, per-disk detail, verified, boot-tested), the DR copy and the history of its runs. */
import type { FeedRun } from "../bus-feed.ts";
import { chainGraph } from "../charts.ts";
import type { VmFacts } from "../facts.ts";
import { ago, bytes, formatDuration, seconds, type Times } from "../format.ts";
import { html, type SafeHtml } from "../html.ts";
import type { Session } from "../sessions.ts";
import { runLabel } from "./run-card.ts";

function verdict(v: { ok: boolean; time: string; detail?: string } | undefined, now: Date): SafeHtml {
  if (!v) return html`<span class="muted">–</span>`;
  return html`<span class="badge ${v.ok ? "ok" : "failed"}" title="${v.detail ?? ""}">${v.ok ? "ok" : "failed"}</span> <span class="muted">${ago(v.time, now)}</span>`;
}

function history(runs: readonly FeedRun[], t: Times): SafeHtml {
  if (runs.length === 0) return html`<p class="muted">No runs of this VM in the bus's recent events.</p>`;
  return html`<div class="table-wrap"><table class="history"><thead><tr><th>Started</th><th>Run</th><th>Result</th><th>Duration</th><th>Bytes</th><th>Events</th></tr></thead><tbody>
${runs.map(
  (r) => html`<tr><td data-label="Started">${t.when(r.requestedAt ?? r.events[0]?.time)}</td>
<td data-label="Run">${runLabel(r)}</td>
<td data-label="Result"><span class="badge ${r.state}">${r.state}</span>${r.code ? html` <code>${r.code}</code>` : ""}${r.message && r.state !== "completed" ? html` <span class="reason">${r.message}</span>` : ""}</td>
<td data-label="Duration">${seconds(r.seconds)}</td><td data-label="Bytes">${bytes(r.bytes)}</td>
<td data-label="Events"><details><summary>${r.events.length} events</summary><ol class="events">${r.events.map((e) => html`<li><code>${e.subject}</code> ${t.when(e.time)} <span class="muted">#${e.seq}</span></li>`)}</ol></details></td></tr>`,
)}
</tbody></table></div>`;
}

export function vmPage(name: string, f: VmFacts, s: Session, now: Date, t: Times): SafeHtml {
  const st = f.status;
  const operator = s.role === "operator";
  const vmPath = `/vm/${encodeURIComponent(name)}`;
  return html`<h1>${name}</h1>
<section class="vm-summary">
  <p>Result: <span class="badge ${st?.result ?? "never"}">${st?.result ?? "never"}</span>
  ${st?.outcome?.result === "failed" ? html`<code>${st.outcome.code ?? ""}</code> <span class="reason">${st.outcome.message ?? ""}</span>` : ""}
  ${st?.lastGood ? html` · last good point #${st.lastGood.number} (${formatDuration(st.lastGood.ageSeconds)} old)` : ""}
  ${st?.overdue ? html` · <span class="badge failed">overdue</span>` : ""}
  ${st?.schedule?.next ? html` · next slot ${t.when(st.schedule.next)}` : ""}</p>
  ${f.replica ? html`<p>DR copy: <b>${f.replica.name}</b> on ${f.replica.target}, point ${f.replica.point}, updated ${ago(f.replica.updatedAt, now)}</p>` : ""}
  ${operator
    ? html`<p class="actions"><a class="button" href="${vmPath}/backup?mode=auto">Back up now</a> <a class="button" href="${vmPath}/backup?mode=full">Full backup now</a></p>`
    : html`<p class="muted">Viewer: actions need the operator role.</p>`}
</section>
<h2>Restore points</h2>
${f.storeProblem ? html`<p class="flash">The store could not be read (${f.storeProblem}); showing KV's index.</p>` : ""}
${f.points.length === 0
  ? html`<p class="muted">No restore points.</p>`
  : html`<div class="chain-wrap">${chainGraph(f.points)}</div>
<div class="table-wrap"><table class="points"><thead><tr><th>#</th><th>Time</th><th>Kind</th><th>Size</th><th>Chain</th><th>Verified</th><th>Boot-tested</th><th></th></tr></thead><tbody>
${[...f.points].reverse().map(
  (p) => html`<tr data-point="${p.number}"><td data-label="#">${p.number}</td><td data-label="Time">${t.when(p.time)}</td>
<td data-label="Kind">${p.kind}${p.parent !== undefined ? html` <span class="muted">on #${p.parent}</span>` : ""}${p.reason ? html` <span class="muted" title="${p.reason}">(${p.reason})</span>` : ""}</td>
<td data-label="Size">${bytes(p.size)}</td><td data-label="Chain">${p.depth} layer${p.depth === 1 ? "" : "s"}, ${bytes(p.chainSize)}</td>
<td data-label="Verified">${verdict(p.verified, now)}</td><td data-label="Boot-tested">${verdict(p.bootTested, now)}</td>
<td class="row-actions">${operator
    ? html`<a href="${vmPath}/verify?point=${p.number}">Verify</a> <a href="${vmPath}/restore?point=${p.number}">Restore</a> <a href="${vmPath}/restore?point=${p.number}&amp;test=1">Restore test</a>`
    : ""}</td></tr>
<tr class="disks"><td colspan="8"><details><summary>${p.disks.length} disk${p.disks.length === 1 ? "" : "s"}</summary><ul>
${p.disks.map((d) => html`<li><b>${d.alias || d.diskId}</b> <span class="muted">${d.diskId}</span>: ${d.kind}, ${bytes(d.size)} stored of ${bytes(d.virtualSize)} virtual${d.reason ? html` <span class="muted">(${d.reason})</span>` : ""}</li>`)}
</ul></details></td></tr>`,
)}
</tbody></table></div>`}
<p class="muted">Read from ${f.pointsFrom === "store" ? "the store (restore-points.json)" : f.pointsFrom === "kv" ? "KV ferry-chains" : "nowhere yet"}.</p>
<h2>Runs</h2>
${history(f.runs, t)}`;
}
