/**
 * The one definition of "survived" (issue 11): exactly one terminal outcome per request, every
 * stored point verifies (`ferry verify`), nothing left on the engine (REST API, as an operator
 * sees it), no partial layer or temp file in the store or the processes' temp dir, no lease in
 * KV ferry-leases, no durable consumer with messages pending or unacknowledged. Each check reads
 * the real thing; none is assumed.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Kvm } from "@nats-io/kv";
import { buckets, streams } from "../infra/streams/mod.ts";
import { RawApi } from "../lab/test-support.ts";
import { ENGINE_DESCRIPTION_PREFIX } from "../pipeline/run-ids.ts";
import { isTerminal, type Deployment, type StoredEvent, type World } from "./world.ts";

const run = promisify(execFile);
const ferryBin = fileURLToPath(new URL("../cli/ferry.mjs", import.meta.url));

export interface Expectation {
  /** Request ids that must each end in exactly one terminal event. */
  readonly requests: readonly string[];
  /** Terminal events of these ids must be `failed` with this code (default: completed or failed with any code). */
  readonly failCode?: Record<string, string>;
  /** Requests that must complete (default: completed or failed with a code). */
  readonly mustComplete?: readonly string[];
}

export interface Findings {
  /** Per request: the terminal subjects seen (one expected). */
  readonly terminalEvents: Record<string, string[]>;
  /** Non-empty lists only: what is left over, by kind. */
  readonly leftovers: Record<string, string[]>;
  /** Problems with outcomes and verification (empty when the case survived). */
  readonly problems: string[];
}

export function terminalOf(events: readonly StoredEvent[], ids: readonly string[]): Record<string, string[]> {
  return Object.fromEntries(ids.map((id) => [id, events.filter((e) => isTerminal(e.subject) && e.event.correlationId === id).map((e) => `${e.subject}${e.event.code ? `:${String(e.event.code)}` : ""}`)]));
}

/** A request is published to one deployment: its terminal events are counted over all of them. */
async function outcomes(ds: readonly Deployment[], x: Expectation, problems: string[]): Promise<Record<string, string[]>> {
  const all: StoredEvent[] = [];
  for (const d of ds) all.push(...(await d.events()));
  const terminal = terminalOf(all, x.requests);
  for (const [id, seen] of Object.entries(terminal)) {
    if (seen.length !== 1) problems.push(`${id}: ${seen.length} terminal events (${seen.join(", ") || "none"})`);
    const only = seen[0];
    if (!only) continue;
    if (only.startsWith("backup.failed") || only.startsWith("restore.failed")) {
      if (!/:[A-Z_]+$/.test(only)) problems.push(`${id}: failed without a clear code (${only})`);
      if (x.mustComplete?.includes(id)) problems.push(`${id}: must complete, got ${only}`);
    }
    const want = x.failCode?.[id];
    if (want && only !== `${only.split(":")[0]}:${want}`) problems.push(`${id}: expected failure code ${want}, got ${only}`);
  }
  return terminal;
}

/** `ferry verify <vm> --json` over every VM with a manifest in the store. */
async function verifyStore(d: Deployment, problems: string[]): Promise<void> {
  if (!existsSync(d.storePath)) return;
  for (const vm of await readdir(d.storePath)) {
    if (!existsSync(join(d.storePath, vm, "restore-points.json"))) continue;
    const r = await run(process.execPath, [ferryBin, "verify", vm, "--store", d.storePath, "--json", "--no-record"], { maxBuffer: 8 * 1024 * 1024 }).then(
      (ok) => ({ code: 0, out: ok.stdout, err: ok.stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, out: err.stdout ?? "", err: err.stderr ?? "" }),
    );
    if (r.code !== 0) problems.push(`verify ${vm}: exit ${r.code} ${(r.err || r.out).slice(0, 300)}`);
  }
}

/** Open backups, open transfers, locked disks and Ferry's (or backup) snapshots, through the REST API. */
export async function engineLeftovers(w: World): Promise<string[]> {
  const api = new RawApi(w.prd());
  try {
    const out: string[] = [];
    const vms = ((await api.get("/vms")).json?.vm ?? []) as { id: string; name: string }[];
    for (const vm of vms) {
      for (const b of ((await api.get(`/vms/${vm.id}/backups`)).json?.backup ?? []) as { id: string; phase: string }[]) {
        if (b.phase !== "succeeded" && b.phase !== "failed") out.push(`backup ${b.id} of ${vm.name} ${b.phase}`);
      }
      for (const s of ((await api.get(`/vms/${vm.id}/snapshots`)).json?.snapshot ?? []) as { id: string; description?: string; snapshot_type?: string }[]) {
        const d = s.description ?? "";
        if (d.startsWith(ENGINE_DESCRIPTION_PREFIX) || d.startsWith("Auto-generated for Backup")) out.push(`snapshot ${s.id} of ${vm.name} '${d.slice(0, 60)}'`);
      }
    }
    for (const t of ((await api.get("/imagetransfers")).json?.image_transfer ?? []) as { id: string; phase: string }[]) {
      if (!t.phase.startsWith("finished_")) out.push(`transfer ${t.id} ${t.phase}`);
    }
    for (const d of ((await api.get("/disks")).json?.disk ?? []) as { id: string; alias?: string; status: string }[]) {
      if (d.status === "locked") out.push(`disk ${d.alias ?? d.id} locked`);
    }
    return out;
  } finally {
    await api.close();
  }
}

/** Hidden or partial files in the store; anything Ferry left in its processes' temp dir. */
async function fileLeftovers(d: Deployment): Promise<{ store: string[]; temp: string[] }> {
  const store: string[] = [];
  const walk = async (dir: string) => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = join(dir, e.name);
      if (/\.part|\.tmp|^\.|~$/.test(e.name)) store.push(p.slice(d.storePath.length + 1));
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(d.storePath);
  const temp = (await readdir(d.tmp).catch(() => [] as string[])).filter((n) => n.startsWith("ferry"));
  return { store, temp };
}

async function leaseLeftovers(d: Deployment): Promise<string[]> {
  const kv = await new Kvm(d.nc).open(buckets.leases);
  const out: string[] = [];
  for await (const k of await kv.keys()) {
    const e = await kv.get(k);
    if (e && e.operation === "PUT") out.push(`${k}: ${e.string().slice(0, 160)}`);
  }
  return out;
}

async function consumerLeftovers(d: Deployment): Promise<string[]> {
  const out: string[] = [];
  for (const s of [streams.commands.name, streams.events.name]) {
    for await (const c of d.jsm.consumers.list(s)) {
      if (!c.config.durable_name) continue;
      if (c.num_pending > 0 || c.num_ack_pending > 0) out.push(`${s}/${c.name}: ${c.num_pending} pending, ${c.num_ack_pending} unacknowledged`);
    }
  }
  return out;
}

/** Every check once, over every deployment of the world. */
export async function check(w: World, x: Expectation, o: { verify?: boolean } = {}): Promise<Findings> {
  const problems: string[] = [];
  const leftovers: Record<string, string[]> = {};
  const add = (k: string, v: string[]) => {
    if (v.length) leftovers[k] = [...(leftovers[k] ?? []), ...v];
  };
  const guard = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await f();
    } catch (err) {
      problems.push(`${what}: could not check (${err instanceof Error ? err.message : String(err)})`);
      return undefined;
    }
  };
  const terminalEvents = (await guard("outcomes", () => outcomes(w.deployments, x, problems))) ?? {};
  for (const d of w.deployments) {
    const f = await guard("files", () => fileLeftovers(d));
    if (f) {
      add("store", f.store);
      add("temp", f.temp);
    }
    add("leases", (await guard("leases", () => leaseLeftovers(d))) ?? []);
    add("consumers", (await guard("consumers", () => consumerLeftovers(d))) ?? []);
    if (o.verify !== false) await guard("verify", () => verifyStore(d, problems));
  }
  add("engine", (await guard("engine", () => engineLeftovers(w))) ?? []);
  return { terminalEvents, leftovers, problems };
}

export const clean = (f: Findings) => f.problems.length === 0 && Object.keys(f.leftovers).length === 0;

/**
 * Poll the cheap checks until they hold (or the deadline), then once more with `ferry verify`:
 * recovery is the moment everything holds, not a fixed sleep.
 */
export async function settle(w: World, x: Expectation, timeoutMs: number): Promise<{ findings: Findings; settledAt: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const f = await check(w, x, { verify: false });
    if (clean(f) || Date.now() > deadline) {
      const settledAt = performance.now();
      return { findings: clean(f) ? await check(w, x) : f, settledAt };
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
