/** Overview: every VM with its last result, last good point, RPO lag, next slot and DR copy; totals; certificate warnings; charts. */
import type { VmStatus } from "../../config/status.ts";
import type { FeedRun } from "../bus-feed.ts";
import { timeChart, type Series } from "../charts.ts";
import type { OverviewFacts } from "../facts.ts";
import { ago, bytes, formatDuration, seconds, type Times } from "../format.ts";
import { html, type SafeHtml } from "../html.ts";
import { describePoints } from "../../domain/chain/mod.ts";
import { isLive, runCard } from "./run-card.ts";

function result(r: VmStatus, now: Date): SafeHtml {
  const o = r.outcome;
  if (r.result === "running") {
    const before = r.lastResult === "failed" ? html` <span class="muted">(last: failed ${o?.code ?? ""})</span>` : "";
    return html`<span class="badge running">running</span> <span class="muted">${r.running?.step ?? ""}, ${r.running?.disks.placed ?? 0}/${r.running?.disks.total ?? 0} disks</span>${before}`;
  }
  if (r.result === "failed") return html`<span class="badge failed">failed</span> <code>${o?.code ?? "?"}</code> <span class="reason">${o?.message ?? ""}</span>`;
  if (r.result === "ok") return html`<span class="badge ok">ok</span> <span class="muted">${ago(o?.time, now)}</span>`;
  return html`<span class="badge never">never</span>`;
}

export function overviewPage(f: OverviewFacts, liveRuns: readonly FeedRun[], finished: readonly FeedRun[], now: Date, t: Times): SafeHtml {
  const n = f.totals;
  const liveByVm = new Map<string, FeedRun>();
  for (const r of liveRuns) if (isLive(r) && !liveByVm.has(r.vm)) liveByVm.set(r.vm, r);
  const stored: Series[] = f.chains.map((c) => {
    let sum = 0;
    return { name: c.vm.name, points: describePoints(c).map((p) => ({ t: Date.parse(p.time), v: (sum += p.size) })) };
  });
  const durations = new Map<string, { t: number; v: number }[]>();
  for (const r of finished) {
    if (r.kind !== "backup" || r.state !== "completed" || r.seconds === undefined || !r.finishedAt) continue;
    durations.set(r.vm, [...(durations.get(r.vm) ?? []), { t: Date.parse(r.finishedAt), v: r.seconds }]);
  }
  return html`<h1>Overview</h1>
<section class="totals" aria-label="totals">
  <div><b>${n.vms}</b> VMs</div><div class="ok"><b>${n.ok}</b> ok</div><div class="failed"><b>${n.failed}</b> failed</div>
  <div class="running"><b>${n.running}</b> running</div><div><b>${n.never}</b> never</div><div class="${n.overdue ? "failed" : ""}"><b>${n.overdue}</b> overdue</div>
  <div><b>${bytes(n.storedBytes)}</b> stored</div>
</section>
${f.certWarnings.length
  ? html`<section class="warnings" aria-label="certificate warnings"><h2>Certificates</h2><ul>${f.certWarnings.map((w) => html`<li><b>${w.engine}</b>: ${w.text}${w.notAfter ? ` (${t.when(w.notAfter)})` : ""}</li>`)}</ul></section>`
  : ""}
<div class="table-wrap"><table class="vms">
<thead><tr><th>VM</th><th>Last result</th><th>Last good point</th><th>RPO lag</th><th>Next slot</th><th>DR copy</th></tr></thead>
<tbody>
${f.rows.map((r) => {
  const rep = f.replicas.get(r.vm);
  const live = liveByVm.get(r.vm);
  return html`<tr data-vm="${r.vm}" class="${r.problem ? "problem" : ""}">
  <td data-label="VM"><a href="/vm/${encodeURIComponent(r.vm)}">${r.vm}</a>${r.configured ? "" : html` <span class="muted">(not in config)</span>`}</td>
  <td data-label="Last result" class="result">${result(r, now)}<div class="live-slot" data-live-vm="${r.vm}">${live ? runCard(live, t) : ""}</div></td>
  <td data-label="Last good point">${r.lastGood ? html`#${r.lastGood.number} ${t.when(r.lastGood.time)} <span class="muted">(${formatDuration(r.lastGood.ageSeconds)} old)</span>` : html`<span class="muted">none</span>`}</td>
  <td data-label="RPO lag">${r.rpo?.lagSeconds !== undefined ? formatDuration(r.rpo.lagSeconds) : "–"}${r.overdue ? html` <span class="badge failed">overdue</span>` : ""}${r.rpo?.targetSeconds !== undefined ? html` <span class="muted">(target ${formatDuration(r.rpo.targetSeconds)})</span>` : ""}</td>
  <td data-label="Next slot">${r.schedule?.next ? t.when(r.schedule.next) : html`<span class="muted">${r.schedule?.description ?? "–"}</span>`}</td>
  <td data-label="DR copy">${rep ? html`point ${rep.point.slice(0, 19)} as <b>${rep.name}</b> <span class="muted">(${ago(rep.updatedAt, now)})</span>` : html`<span class="muted">${f.replicating.has(r.vm) ? "not replicated yet" : "not replicated"}</span>`}</td>
</tr>`;
})}
</tbody></table></div>
<section class="charts">
${timeChart({ title: "Stored bytes per VM over time (restore points kept)", series: stored, format: bytes, empty: "no restore points yet", times: t })}
${timeChart({ title: "Backup duration trend", series: [...durations].map(([name, points]) => ({ name, points })), format: (v) => seconds(v), empty: "no finished backups in the window", times: t })}
</section>`;
}
