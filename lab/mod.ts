import { join } from "node:path";
import { startEngine, type EngineOptions, type LabEngine } from "./engine/mod.ts";

/**
 * The lab: simulated oVirt engines (default PRD and DR), each with its own CA, TLS, SSO,
 * pki-resource, REST API, imageio daemon and qcow2-backed disks, plus a control API. State lives
 * under `dataDir/<engine>/` (state.json, images/, pki/, point-in-time/).
 */
export interface LabOptions {
  dataDir: string;
  /** Default ["prd", "dr"]. */
  engines?: string[];
  host?: string;
  /** Per-engine overrides (timings, password, imageio factory, backup support). */
  engineOptions?: Partial<Omit<EngineOptions, "name" | "dataDir" | "host">>;
}

export interface Lab {
  engines: Record<string, LabEngine>;
  stop(): Promise<void>;
}

export async function startLab(o: LabOptions): Promise<Lab> {
  const names = o.engines ?? ["prd", "dr"];
  const engines: Record<string, LabEngine> = {};
  const stopAll = async () => {
    await Promise.all(Object.values(engines).map((e) => e.stop()));
  };
  try {
    for (const name of names) {
      engines[name] = await startEngine({
        ...o.engineOptions,
        name,
        dataDir: join(o.dataDir, name),
        ...(o.host ? { host: o.host } : {}),
      });
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  return { engines, stop: stopAll };
}

export type { LabEngine, EngineOptions } from "./engine/mod.ts";
export type { LabControl, LabDiskInput, LabDiskRef, WriteSpec, WriteResult, ExportOptions, ExportResult, LabFaults, LabStatus } from "./control.ts";
export { DEFAULT_TIMINGS, type EngineTimings } from "./engine/engine.ts";
export { seededBytes } from "./engine/storage.ts";
