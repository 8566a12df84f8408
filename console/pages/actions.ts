/**
 * The confirm steps of every action: nothing is done by a GET, and every POST form carries the
 * session's CSRF token. The restore form shows the preflight's plan before its confirm button.
 */
import type { VerifyReport } from "../../adapters/store/mod.ts";
import type { PlanResult, RestoreForm } from "../actions.ts";
import { bytes, type Times } from "../format.ts";
import { html, type SafeHtml } from "../html.ts";
import type { Session } from "../sessions.ts";
import { csrfField } from "./layout.ts";

const vmPath = (vm: string) => `/vm/${encodeURIComponent(vm)}`;

export function refusedPage(s: Session, what: string): SafeHtml {
  return html`<h1>Not allowed</h1><p class="flash" role="alert">Refused: ${what} needs the operator role; you are signed in as ${s.user} (${s.role}).</p><p><a href="/">Back to the overview</a></p>`;
}

export function confirmBackupPage(s: Session, vm: string, mode: "auto" | "full"): SafeHtml {
  return html`<h1>Back up ${vm}</h1>
<p>Publish <code>backup.requested</code> for <b>${vm}</b>, mode <b>${mode}</b> (${mode === "full" ? "a full backup" : "full or incremental by the VM's policy"}).</p>
<form method="post" action="${vmPath(vm)}/backup">${csrfField(s)}<input type="hidden" name="mode" value="${mode}">
<button type="submit" class="confirm">Confirm: back up ${vm} now</button> <a href="${vmPath(vm)}">Cancel</a></form>`;
}

export function confirmVerifyPage(s: Session, vm: string, point: string): SafeHtml {
  return html`<h1>Verify ${vm} #${point}</h1>
<p>Re-read restore point <b>#${point}</b> of <b>${vm}</b> from the store through its qcow2 chain and compare every block with the digests recorded at backup time. The result is recorded on the point.</p>
<form method="post" action="${vmPath(vm)}/verify">${csrfField(s)}<input type="hidden" name="point" value="${point}">
<button type="submit" class="confirm">Confirm: verify #${point}</button> <a href="${vmPath(vm)}">Cancel</a></form>`;
}

export function verifyResultPage(vm: string, r: VerifyReport): SafeHtml {
  return html`<h1>Verification of ${vm} #${r.point.number}: <span class="badge ${r.ok ? "ok" : "failed"}">${r.ok ? "ok" : "FAILED"}</span></h1>
<ul>${r.disks.map((d) => html`<li><b>${d.alias || d.diskId}</b>: ${d.ok ? html`ok (${d.blocks} blocks, ${d.layers} layers)` : html`FAILED: ${d.problems.join("; ")}`}</li>`)}</ul>
<p><a href="${vmPath(vm)}">Back to ${vm}</a></p>`;
}

function hiddenForm(f: RestoreForm): SafeHtml {
  return html`<input type="hidden" name="point" value="${f.point}"><input type="hidden" name="target" value="${f.target}">
<input type="hidden" name="name" value="${f.name ?? ""}"><input type="hidden" name="networks" value="${f.networks ?? ""}">
<input type="hidden" name="storageDomain" value="${f.storageDomain ?? ""}"><input type="hidden" name="cluster" value="${f.cluster ?? ""}">
${f.start ? html`<input type="hidden" name="start" value="1">` : ""}${f.test ? html`<input type="hidden" name="test" value="1">` : ""}`;
}

export function restoreFormPage(s: Session, f: RestoreForm, targets: readonly string[], problem?: string): SafeHtml {
  const test = !!f.test;
  return html`<h1>${test ? "Restore test" : "Restore"}: ${f.vm} #${f.point}</h1>
${problem ? html`<p class="flash" role="alert">${problem}</p>` : ""}
<p class="muted">${test ? "The point is restored under a temporary name, booted, the verdict recorded on the point, and the VM removed again." : "The point becomes a new VM on the target engine. Nothing is changed until you confirm the plan."}</p>
<form class="restore" method="post" action="${vmPath(f.vm)}/restore/plan">${csrfField(s)}
  <label>Restore point <input name="point" value="${f.point}" required></label>
  <label>Target engine <select name="target">${targets.map((t) => html`<option value="${t}" ${t === f.target ? html`selected` : ""}>${t}</option>`)}</select></label>
  ${test
    ? html`<input type="hidden" name="test" value="1">`
    : html`<label>Name of the new VM <input name="name" value="${f.name ?? ""}" placeholder="default: ${f.vm} plus the configured suffix"></label>
  <label class="check"><input type="checkbox" name="start" value="1" ${f.start ? html`checked` : ""}> Start it when restored</label>`}
  <label>Network mappings <textarea name="networks" rows="2" placeholder="NETWORK=PROFILE, one per line">${f.networks ?? ""}</textarea></label>
  <label>Storage domain <input name="storageDomain" value="${f.storageDomain ?? ""}" placeholder="default: the config's restore.storageDomain"></label>
  <label>Cluster <input name="cluster" value="${f.cluster ?? ""}" placeholder="default: the config's restore.cluster"></label>
  <button type="submit">Show the plan</button> <a href="${vmPath(f.vm)}">Cancel</a>
</form>`;
}

export function restorePlanPage(s: Session, f: RestoreForm, result: PlanResult, targets: readonly string[], t: Times): SafeHtml {
  if (!result.ok) {
    return html`${restoreFormPage(s, f, targets)}<section class="plan refused" aria-label="plan"><h2>The restore would be refused</h2><ul>${result.problems.map((p) => html`<li>${p}</li>`)}</ul><p>Nothing was changed.</p></section>`;
  }
  const p = result.plan;
  return html`<h1>Plan: ${f.test ? "restore test of" : "restore"} ${p.vm.name} #${p.point.number}</h1>
<section class="plan" aria-label="plan">
<p>Restore point <b>#${p.point.number}</b> (${t.when(p.point.time)}, ${p.point.kind}) onto <b>${p.target}</b> as VM <b>${p.name}</b>${p.replaces ? html` (replacing the powered-off VM ${p.replaces.id})` : ""} in cluster <b>${p.cluster.name}</b>.</p>
<p>Storage domain <b>${p.storageDomain.name}</b>: ${bytes(p.requiredBytes)} needed${p.storageDomain.available !== undefined ? html`, ${bytes(p.storageDomain.available)} free` : ""}.</p>
<ul>
${p.disks.map((d) => html`<li>disk <b>${d.alias}</b>: ${bytes(d.virtualSize)} virtual, ${bytes(d.requiredBytes)} to allocate, ${d.interface}${d.bootable ? ", bootable" : ""}</li>`)}
${p.nics.map((n) => html`<li>NIC <b>${n.name}</b>: network ${n.network || "(none)"} → vNIC profile ${n.vnicProfile?.name ?? "(none)"}</li>`)}
</ul>
<p class="muted">Checked just now by the preflight; nothing has been changed.</p>
</section>
<form method="post" action="${vmPath(f.vm)}/restore">${csrfField(s)}${hiddenForm(f)}
<button type="submit" class="confirm">Confirm: ${f.test ? "run the restore test" : `restore onto ${p.target}`}</button> <a href="${vmPath(f.vm)}">Cancel</a></form>`;
}
