/** What is left open on the lab engine, read through its REST API like an operator would. */
import type { Pipeline } from "./backup-support.ts";

export async function labState(p: Pipeline, engine = "prd"): Promise<{ openBackups: number; openTransfers: number; lockedDisks: number }> {
  const client = p.wiring.engines.get(engine)!.client;
  let openBackups = 0;
  for (const vm of await client.vms.list()) {
    openBackups += (await client.backups.list(vm.id)).filter((b) => b.phase !== "succeeded" && b.phase !== "failed").length;
  }
  const openTransfers = (await client.imageTransfers.list()).filter((t) => !t.phase.startsWith("finished_")).length;
  const lockedDisks = (await client.disks.list()).filter((d) => d.status === "locked").length;
  return { openBackups, openTransfers, lockedDisks };
}

/** Ferry's events in the engine audit log, by severity. */
export async function ferryAudit(p: Pipeline, engine = "prd"): Promise<{ severity: string; description: string }[]> {
  const client = p.wiring.engines.get(engine)!.client;
  return (await client.events.list({ max: 1000 }))
    .filter((e) => e.origin === "ferry")
    .map((e) => ({ severity: e.severity ?? "", description: e.description ?? "" }));
}
