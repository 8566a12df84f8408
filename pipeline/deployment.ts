/**
 * The deployment id: one Ferry installation (one KV domain) marks every engine object it creates
 * with it (`ferry:<id> …` descriptions, pipeline/run-ids.ts), so its reconciler never touches
 * the backups of another Ferry deployment on the same engine. Created once, by whichever process
 * comes first (KV create is a claim), and read by every other.
 */
import { randomBytes } from "node:crypto";
import { readRecord, encodeRecord, isCasConflict, type KvLike } from "../adapters/nats/kv-record.ts";

/** A key of the ferry-runs bucket that is not a run (runs are read by their `kind`). */
export const DEPLOYMENT_KEY = "deployment";

export async function createDeploymentId(kv: KvLike): Promise<string> {
  for (let i = 0; i < 5; i++) {
    const cur = await readRecord<{ id?: unknown }>(kv, DEPLOYMENT_KEY);
    if (cur && typeof cur.value.id === "string") return cur.value.id;
    const id = randomBytes(4).toString("hex");
    try {
      await kv.create(DEPLOYMENT_KEY, encodeRecord({ kind: "deployment", id, createdAt: new Date().toISOString() }));
      return id;
    } catch (err) {
      if (!isCasConflict(err)) throw err; // another process created it first: read theirs
    }
  }
  throw new Error("could not read or create the deployment id in KV");
}
