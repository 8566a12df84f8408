/** Ids a backup run derives from its input, so a redelivery finds what the first delivery created. */
import { createHash } from "node:crypto";

/** A UUID (version 5 layout) from a name: the engine backup id of attempt N of a run. */
export function uuidFrom(name: string): string {
  const h = createHash("sha256").update(name).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

export function backupIdFor(runId: string, attempt: number): string {
  return uuidFrom(`ferry-backup:${runId}:${attempt}`);
}

/** Audit-log custom_id: an integer unique per (run, purpose), so a re-post is refused as a duplicate. */
export function customIdFor(runId: string, purpose: string): number {
  return createHash("sha256").update(`${runId}:${purpose}`).digest().readUInt32BE(0) & 0x7fffffff;
}

/** Compact UTC time for file names and restore point ids: 20250131T020000Z. */
export function compactTime(iso: string): string {
  return iso.replace(/[-:]/g, "").replace(/\.\d+/, "");
}

/** The description of every engine object a run creates: `ferry:<deployment> <vm> run <run id>` (≤ 1000 chars). */
export function engineDescription(deployment: string, vmName: string, runId: string): string {
  return `${ENGINE_DESCRIPTION_PREFIX}${deployment} ${vmName} run ${runId}`.slice(0, 1000);
}

export const ENGINE_DESCRIPTION_PREFIX = "ferry:";

/** Did this deployment create the engine object with this description? (Never touch another deployment's.) */
export function isOwnEngineObject(description: string | undefined, deployment: string): boolean {
  return (description ?? "").startsWith(`${ENGINE_DESCRIPTION_PREFIX}${deployment} `);
}
