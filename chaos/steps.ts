/** Moments of a running backup a case waits for before it strikes, read from the lab engine and the bus. */
import { readFile } from "node:fs/promises";
import type { CaseRun } from "./case.ts";
import { MiB, type StoredEvent, type World, type Deployment } from "./world.ts";

export class StepTimeoutError extends Error {}
/** Thrown by a condition that can never become true (the process it waits on is gone): stop waiting. */
export class StopWaitingError extends Error {}

export async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, timeoutMs = 120_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve()
      .then(f)
      .catch((err: unknown) => {
        if (err instanceof StopWaitingError) throw err;
        return undefined;
      });
    if (v) return v;
    if (Date.now() > deadline) throw new StepTimeoutError(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** An engine backup of the VM exists (any phase before the end): the run has started it. */
export const backupStarted = (w: World, vm: string) =>
  until(`an engine backup of ${vm}`, () => w.prd().engine.st.backups.find((b) => b.vmId === w.vms[vm]!.id && b.phase !== "succeeded" && b.phase !== "failed"));

/** A download transfer is moving data (bytes read from imageio). */
export const downloading = (w: World, minBytes = 1) =>
  until("a download in progress", () => {
    const t = w.prd().engine.st.transfers.find((x) => x.direction === "download" && x.phase === "transferring");
    if (!t) return undefined;
    const info = t.ticketId ? w.prd().engine.imageio.getTicket(t.ticketId) : undefined;
    return (info?.transferred ?? 0) >= minBytes ? t : undefined;
  });

export const storedEvent = (d: Deployment, what: string, pred: (e: StoredEvent) => boolean, timeoutMs = 180_000) =>
  until(what, async () => (await d.events()).find(pred), timeoutMs, 200);

export interface MidDownloadFault {
  /** The VM to back up (default cx01). */
  readonly vm?: string;
  /** Strike once the download is moving; may return notes for the report. */
  strike(): Promise<string[] | void>;
  /** Undo the fault once the request has its outcome (e.g. the store writable again). */
  recover?(): Promise<unknown>;
  /** How long the request may take to reach its outcome after the strike (default 240 s). */
  readonly outcomeMs?: number;
}

/**
 * The shape most single-fault cases share: imageio throttled to 1 MiB/s so the download lasts,
 * one backup requested, the fault struck once 2 MiB moved, the outcome awaited, faults cleared.
 */
export async function faultMidDownload(w: World, f: MidDownloadFault): Promise<CaseRun> {
  w.prd().control.faults.throttleImageio(1 * MiB);
  const id = await w.d.request(f.vm ?? "cx01");
  await downloading(w, 2 * MiB);
  const faultAt = performance.now();
  const notes = (await f.strike()) ?? [];
  const out = await w.d.outcome(id, f.outcomeMs ?? 240_000);
  await f.recover?.();
  // w.prd(): the engine the world runs now (a restart replaces it).
  w.prd().control.faults.clear();
  return { expect: { requests: [id] }, faultAt, outcome: outcomeText(out), notes };
}

/** `backup.failed:CODE` or `backup.completed`: a terminal event in a few words. */
export const outcomeText = (out: StoredEvent) => `${out.subject}${out.event.code ? `:${String(out.event.code)}` : ""}`;

/** The durable consumer of `stream` that takes `subject`: its deliveries so far (redeliveries count) and its max_deliver. */
export async function consumerDeliveries(d: Deployment, stream: string, subject: string): Promise<{ delivered: number; maxDeliver: number } | undefined> {
  for await (const c of d.jsm.consumers.list(stream)) {
    const subjects = [c.config.filter_subject, ...(c.config.filter_subjects ?? [])];
    if (c.config.durable_name && subjects.includes(subject)) return { delivered: c.delivered.consumer_seq, maxDeliver: c.config.max_deliver ?? -1 };
  }
  return undefined;
}

/** VmRSS of a live process in KiB, from /proc (undefined once it is gone). */
export async function rssKiB(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => undefined);
  const m = status?.match(/^VmRSS:\s+(\d+) kB$/m);
  return m ? Number(m[1]) : undefined;
}
