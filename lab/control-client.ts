import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Agent, request } from "undici";
import { z } from "zod";
import type { Lab } from "./mod.ts";

/**
 * Client side of the control API for `ferry lab ...`: `ferry lab up` writes `lab.json` in its
 * data dir (engine URLs, credentials, CA files), and the other subcommands read it to call
 * `${controlUrl}/...` with Basic auth over TLS verified by that engine's CA.
 */
export interface LabFileEngine {
  name: string;
  url: string;
  plainUrl: string;
  apiUrl: string;
  controlUrl: string;
  imageioUrl: string;
  user: string;
  password: string;
  caFile: string;
}

export interface LabFile {
  pid: number;
  startedAt: string;
  dataDir: string;
  engines: Record<string, LabFileEngine>;
}

const labFileSchema = z.object({
  pid: z.number().int().positive(),
  startedAt: z.string(),
  dataDir: z.string(),
  engines: z.record(
    z.string(),
    z.object({
      name: z.string(),
      url: z.string(),
      plainUrl: z.string(),
      apiUrl: z.string(),
      controlUrl: z.string(),
      imageioUrl: z.string(),
      user: z.string(),
      password: z.string(),
      caFile: z.string(),
    }),
  ),
});

export const LAB_FILE = "lab.json";

/** The `lab.json` record of a running lab: what `ferry lab ...` and the demo need to reach it. */
export function labFileFor(lab: Lab, dataDir: string): LabFile {
  const file: LabFile = { pid: process.pid, startedAt: new Date().toISOString(), dataDir, engines: {} };
  for (const e of Object.values(lab.engines)) {
    file.engines[e.name] = {
      name: e.name,
      url: e.url,
      plainUrl: e.plainUrl,
      apiUrl: `${e.url}/ovirt-engine/api`,
      controlUrl: e.controlUrl,
      imageioUrl: e.imageioUrl,
      user: e.user,
      password: e.password,
      caFile: e.caFile,
    };
  }
  return file;
}

export async function writeLabFile(dataDir: string, lab: LabFile): Promise<string> {
  const p = join(dataDir, LAB_FILE);
  await writeFile(p, `${JSON.stringify(lab, null, 2)}\n`, { mode: 0o600 });
  return p;
}

export class LabNotRunningError extends Error {}

export async function readLabFile(dataDir: string): Promise<LabFile> {
  let text: string;
  try {
    text = await readFile(join(dataDir, LAB_FILE), "utf8");
  } catch {
    throw new LabNotRunningError(`no running lab found in ${dataDir} (start one with 'ferry lab up --data ${dataDir}')`);
  }
  let lab: LabFile;
  try {
    lab = labFileSchema.parse(JSON.parse(text));
  } catch {
    // Half-written by a lab that died while starting, or not ours: either way no lab to talk to.
    throw new LabNotRunningError(`${join(dataDir, LAB_FILE)} is not a lab file written by 'ferry lab up'; start one with 'ferry lab up --data ${dataDir}'`);
  }
  try {
    process.kill(lab.pid, 0);
  } catch {
    throw new LabNotRunningError(`the lab in ${dataDir} is not running (pid ${lab.pid} is gone)`);
  }
  return lab;
}

export class ControlCallError extends Error {
  readonly status: number;
  constructor(
    status: number,
    message: string,
  ) {
    super(message);
    this.status = status;
  }
}

/** POST (with a body) or GET `${controlUrl}/${path}`; returns the parsed JSON answer. */
export async function callControl(engine: LabFileEngine, method: "GET" | "POST", path: string, body?: unknown): Promise<unknown> {
  const ca = await readFile(engine.caFile, "utf8");
  const agent = new Agent({ connect: { ca } });
  try {
    const res = await request(`${engine.controlUrl}/${path}`, {
      method,
      dispatcher: agent,
      headers: {
        authorization: `Basic ${Buffer.from(`${engine.user}:${engine.password}`).toString("base64")}`,
        accept: "application/json",
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = { error: text };
    }
    if (res.statusCode >= 400) {
      const msg = (parsed as { error?: unknown }).error;
      throw new ControlCallError(res.statusCode, typeof msg === "string" ? msg : `HTTP ${res.statusCode}`);
    }
    return parsed;
  } finally {
    await agent.close();
  }
}

/** "8G", "512M", "1.5GiB", "1048576" → bytes (binary units). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new Error(`invalid size '${text}' (examples: 64M, 8G, 1048576)`);
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g" | "t"];
  const n = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`invalid size '${text}'`);
  return n;
}
