/**
 * Small SVG charts drawn on the server (no chart library, no script): a time series chart for
 * stored bytes per VM and backup durations, and the chain graph of a VM's restore points.
 * Colours come from CSS classes (s0…s5), so the page's CSP needs no inline styles.
 */
import { escapeHtml, raw, type SafeHtml } from "./html.ts";
import type { PointSummary } from "../domain/chain/mod.ts";
import type { Times } from "./format.ts";

export interface Series {
  readonly name: string;
  readonly points: readonly { readonly t: number; readonly v: number }[];
}

const W = 640;
const H = 200;
const PAD = { l: 64, r: 12, t: 12, b: 28 };

export function timeChart(o: { title: string; series: readonly Series[]; format: (v: number) => string; empty: string; times: Times }): SafeHtml {
  const all = o.series.flatMap((s) => s.points);
  if (all.length === 0) return raw(`<figure class="chart"><figcaption>${escapeHtml(o.title)}</figcaption><p class="muted">${escapeHtml(o.empty)}</p></figure>`);
  let t0 = Math.min(...all.map((p) => p.t));
  let t1 = Math.max(...all.map((p) => p.t));
  if (t1 === t0) {
    t0 -= 60_000;
    t1 += 60_000;
  }
  const vMax = Math.max(...all.map((p) => p.v)) || 1;
  const x = (t: number) => PAD.l + ((t - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v: number) => H - PAD.b - (v / vMax) * (H - PAD.t - PAD.b);
  const parts: string[] = [];
  parts.push(`<line class="axis" x1="${PAD.l}" y1="${H - PAD.b}" x2="${W - PAD.r}" y2="${H - PAD.b}"/>`);
  parts.push(`<line class="axis" x1="${PAD.l}" y1="${PAD.t}" x2="${PAD.l}" y2="${H - PAD.b}"/>`);
  parts.push(`<text class="tick" x="${PAD.l - 6}" y="${PAD.t + 10}" text-anchor="end">${escapeHtml(o.format(vMax))}</text>`);
  parts.push(`<text class="tick" x="${PAD.l - 6}" y="${H - PAD.b}" text-anchor="end">0</text>`);
  const day = (t: number) => o.times.when(t);
  parts.push(`<text class="tick" x="${PAD.l}" y="${H - 8}">${day(t0)}</text>`);
  parts.push(`<text class="tick" x="${W - PAD.r}" y="${H - 8}" text-anchor="end">${day(t1)}</text>`);
  o.series.forEach((s, i) => {
    const pts = [...s.points].sort((a, b) => a.t - b.t);
    const cls = `s${i % 6}`;
    if (pts.length > 1) parts.push(`<polyline class="line ${cls}" points="${pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ")}"/>`);
    for (const p of pts) parts.push(`<circle class="dot ${cls}" cx="${x(p.t).toFixed(1)}" cy="${y(p.v).toFixed(1)}" r="3"><title>${escapeHtml(`${s.name}: ${o.format(p.v)} at ${day(p.t)}`)}</title></circle>`);
  });
  const legend = o.series.map((s, i) => `<li><span class="key s${i % 6}"></span>${escapeHtml(s.name)}</li>`).join("");
  return raw(
    `<figure class="chart"><figcaption>${escapeHtml(o.title)}</figcaption><svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(o.title)}">${parts.join("")}</svg><ul class="legend">${legend}</ul></figure>`,
  );
}

/**
 * The chain of restore points: one dot per point (filled = full, ring = incremental), a line
 * to the point it builds on. Points are oldest first, as describePoints gives them.
 */
export function chainGraph(points: readonly PointSummary[]): SafeHtml {
  if (points.length === 0) return raw("");
  const step = 28;
  const w = Math.max(60, points.length * step + 16);
  const h = 40;
  const cx = (n: number) => 16 + (n - points[0]!.number) * step;
  const parts: string[] = [];
  for (const p of points) {
    if (p.parent !== undefined && p.parent >= points[0]!.number) {
      const a = cx(p.parent);
      const b = cx(p.number);
      parts.push(b - a > step ? `<path class="edge" d="M${a},20 Q${(a + b) / 2},2 ${b},20"/>` : `<line class="edge" x1="${a}" y1="20" x2="${b}" y2="20"/>`);
    }
  }
  for (const p of points) {
    const bad = p.verified?.ok === false ? " bad" : "";
    parts.push(
      `<circle class="node ${p.kind}${bad}" cx="${cx(p.number)}" cy="20" r="8"><title>${escapeHtml(`#${p.number} ${p.kind} ${p.time}`)}</title></circle>` +
        `<text class="nodelabel" x="${cx(p.number)}" y="38" text-anchor="middle">${p.number}</text>`,
    );
  }
  return raw(`<svg class="chain" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="chain of ${points.length} restore points">${parts.join("")}</svg>`);
}
