/** Moments of a running backup a case waits for before it strikes, read from the lab engine and the bus. */
import type { StoredEvent, World, Deployment } from "./world.ts";

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
