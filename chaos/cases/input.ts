/**
 * Bad and awkward input: one command twice under one Nats-Msg-Id, five commands for one VM
 * within a second, garbage on every subject Ferry consumes, and forged internal events.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { buckets } from "../../infra/streams/mod.ts";
import type { ChaosCase, CaseContext } from "../case.ts";
import { sleep } from "../steps.ts";
import type { Deployment, World } from "../world.ts";

export const duplicates: ChaosCase = {
  name: "duplicates",
  summary: "the same backup command published twice with one Nats-Msg-Id: one run, one outcome, one engine backup",
  quick: true,
  async run(w) {
    const faultAt = performance.now();
    const id = await w.d.request("cx01", { id: "dup-1", msgId: "dup-1" });
    await w.d.request("cx01", { id: "dup-1", msgId: "dup-1" });
    const out = await w.d.outcome(id);
    return {
      expect: { requests: [id], mustComplete: [id] },
      faultAt,
      outcome: out.subject,
      after: async () => {
        const n = w.prd().engine.st.backups.filter((b) => b.vmId === w.vms.cx01!.id).length;
        return n === 1 ? [] : [`the engine saw ${n} backups of cx01 for one command`];
      },
    };
  },
};

export const fiveCommands: ChaosCase = {
  name: "five-commands",
  summary: "five different backup commands for one VM within a second (auto, full, incremental, auto, full)",
  followUp: "cx01",
  async run(w) {
    const faultAt = performance.now();
    const ids: string[] = [];
    for (const mode of ["auto", "full", "incremental", "auto", "full"]) {
      ids.push(await w.d.request("cx01", { mode }));
      await sleep(150);
    }
    const outs = await Promise.all(ids.map((id) => w.d.outcome(id, 300_000)));
    return { expect: { requests: ids }, faultAt, outcome: outs.map((o) => `${o.subject}${o.event.code ? `:${String(o.event.code)}` : ""}`).join(", ") };
  },
};

/** The subjects Ferry's functions consume. */
const CONSUMED = ["backup.requested", "restore.requested", "cert.expiring", "disk.transferred", "chain.updated", "backup.failed", "restore.failed", "cert.failed", "ovirt.event"];

function garbage(ctx: CaseContext): { what: string; data: Uint8Array }[] {
  const rnd = new Uint8Array(4096).map(() => Math.floor(ctx.random() * 256));
  const json = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
  return [
    { what: "random bytes", data: rnd },
    { what: "1 MiB JSON", data: json({ vm: "x".repeat(1024 * 1024) }) },
    // Written as text: JSON.stringify itself would overflow the stack on it.
    { what: "deep nesting (object)", data: json(`${'{"vm":'.repeat(20000)}"cx01"${"}".repeat(20000)}`) },
    { what: "deep nesting (arrays)", data: json("[".repeat(20000) + "]".repeat(20000)) },
    { what: "wrong types", data: json({ id: {}, vm: 5, mode: ["full"], runId: 7, disk: "x", layer: { path: 1 } }) },
    { what: "null", data: json("null") },
    { what: "path-like name", data: json({ id: "g-1", vm: "../../etc/passwd", runId: "../../x", restorePoint: "/etc", layer: { path: "../../../etc/shadow" } }) },
    { what: "unicode name", data: json({ id: "g-2", vm: "ｖｍ０１\u0000\u202e💥", runId: "é/..", restorePoint: "\ud800" }) },
    { what: "empty", data: new Uint8Array() },
  ];
}

export const garbageInput: ChaosCase = {
  name: "garbage",
  summary: "random bytes, 1 MiB JSON, deep nesting, wrong types, unicode and path-like names on every subject Ferry consumes; a real backup right after completes",
  quick: true,
  async run(w, ctx) {
    const faultAt = performance.now();
    let published = 0;
    let refused = 0;
    let n = 0;
    for (const subject of CONSUMED) {
      for (const g of garbage(ctx)) {
        try {
          await w.d.js.publish(subject, g.data, { msgID: `garbage-${n++}` });
          published++;
        } catch {
          refused++; // larger than the stream's max message size or max_payload: refused at the server
        }
      }
    }
    const id = await w.d.request("cx01");
    const out = await w.d.outcome(id);
    const rejected = (await w.d.events()).filter((e) => e.subject.endsWith(".rejected")).length;
    return {
      expect: { requests: [id], mustComplete: [id] },
      faultAt,
      outcome: `${out.subject} after ${published} garbage messages (${refused} refused by the server, ${rejected} .rejected events)`,
      notes: [`${published} stored garbage messages: ${rejected} answered with .rejected, ${Math.max(0, published - rejected)} dropped by their consumer`],
    };
  },
};

async function chainSnapshot(w: World, d: Deployment): Promise<string> {
  const kv = await new Kvm(d.nc).open(buckets.chains);
  const out: Record<string, unknown> = {};
  for (const [name, vm] of Object.entries(w.vms)) {
    out[`kv:${name}`] = (await kv.get(vm.id))?.string() ?? null;
    out[`store:${name}`] = await readFile(join(d.storePath, name, "restore-points.json"), "utf8").catch(() => null);
  }
  return JSON.stringify(out);
}

export const forgedEvents: ChaosCase = {
  name: "forged-events",
  summary: "well-formed disk.transferred / chain.updated for an unknown run, with another VM's layer, with a path outside the store: refused, chains unchanged",
  quick: true,
  world: { vms: [{ name: "cx01" }, { name: "cx02", data: 4 * 1024 * 1024 }] },
  async run(w) {
    const a = await w.d.request("cx01");
    const b = await w.d.request("cx02");
    await Promise.all([w.d.outcome(a), w.d.outcome(b)]);
    const events = await w.d.events();
    const dt = events.find((e) => e.subject === "disk.transferred" && e.event.correlationId === a)!.event;
    const cu = events.find((e) => e.subject === "chain.updated" && e.event.correlationId === a)!.event;
    const other = events.find((e) => e.subject === "disk.transferred" && e.event.correlationId === b)!.event;
    const before = await chainSnapshot(w, w.d);
    const forged: [string, Record<string, unknown>][] = [
      ["disk.transferred", { ...dt, id: "forged-1", correlationId: "forged-1", runId: "forged-run-1", restorePoint: "rp-forged-1" }],
      ["disk.transferred", { ...other, id: "forged-2", correlationId: "forged-2", runId: "forged-run-2", restorePoint: "rp-forged-2", layer: dt.layer }],
      ["disk.transferred", { ...dt, id: "forged-3", correlationId: "forged-3", runId: "forged-run-3", restorePoint: "rp-forged-3", layer: { ...(dt.layer as object), path: "../../../../etc/passwd" } }],
      ["disk.transferred", { ...dt, id: "forged-4", correlationId: "forged-4", runId: "forged-run-4", restorePoint: "rp-forged-4", layer: { ...(dt.layer as object), path: "/etc/passwd" } }],
      ["chain.updated", { ...cu, id: "forged-5", correlationId: "forged-5", runId: "forged-run-5", restorePoint: "rp-forged-5" }],
    ];
    const faultAt = performance.now();
    for (const [subject, e] of forged) await w.d.js.publish(subject, JSON.stringify(e), { msgID: String(e.id) });
    return {
      expect: { requests: [a, b], mustComplete: [a, b] },
      faultAt,
      outcome: "5 forged events published",
      after: async () => {
        const problems: string[] = [];
        if ((await chainSnapshot(w, w.d)) !== before) problems.push("a forged event changed a chain (KV or store manifest)");
        const claimed = (await w.d.events()).filter((e) => e.subject === "backup.completed" && String(e.event.correlationId).startsWith("forged-"));
        if (claimed.length) problems.push(`forged runs reported completed: ${claimed.map((e) => String(e.event.correlationId)).join(", ")}`);
        return problems;
      },
    };
  },
};
