import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { Agent, request } from "undici";
import type { EngineTimings } from "./engine/engine.ts";
import { startLab, type Lab, type LabEngine } from "./mod.ts";

/**
 * Helpers for tests that drive the lab with raw HTTP (no Ferry client in between), so the
 * conformance tests check the wire exactly as ovirt-api.md describes it.
 *
 *   const t = await startTestLab();           // prd only, unique temp dir, fast timings
 *   const api = new RawApi(t.prd);           // SSO token on first use, Version: 4, JSON
 *   const r = await api.get("/vms");         // {status, headers, text, json}
 *   await t.stop();                          // stops servers and qemu-nbd, removes the dir
 */
export interface TestLab {
  lab: Lab;
  dir: string;
  prd: LabEngine;
  engine(name: string): LabEngine;
  stop(): Promise<void>;
}

export async function startTestLab(o: { engines?: string[]; timings?: Partial<EngineTimings> } = {}): Promise<TestLab> {
  const dir = await mkdtemp(join(tmpdir(), "ferry-lab-test-"));
  let lab: Lab;
  try {
    lab = await startLab({ dataDir: dir, engines: o.engines ?? ["prd"], engineOptions: { ...(o.timings ? { timings: o.timings } : {}) } });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const first = (o.engines ?? ["prd"])[0]!;
  return {
    lab,
    dir,
    prd: lab.engines[first]!,
    engine: (name) => {
      const e = lab.engines[name];
      if (!e) throw new Error(`no engine ${name}`);
      return e;
    },
    async stop() {
      await lab.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** Parsed JSON, or undefined when the body is not JSON. */
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- tests poke at arbitrary engine JSON
}

export class RawApi {
  readonly agent: Agent;
  private readonly ca: string;
  private token: string | undefined;

  readonly engine: LabEngine;
  constructor(
    engine: LabEngine,
    o: { ca?: string } = {},
  ) {
    this.engine = engine;
    this.ca = o.ca ?? engine.caPem;
    this.agent = new Agent({ connect: { ca: this.ca } });
  }

  async raw(
    method: string,
    url: string,
    o: { headers?: Record<string, string>; body?: string } = {},
  ): Promise<RawResponse> {
    // undici refuses the Expect header; node:https sends it as given.
    if (Object.keys(o.headers ?? {}).some((k) => k.toLowerCase() === "expect")) return this.viaNodeHttps(method, url, o);
    const res = await request(url, {
      method: method as "GET",
      dispatcher: this.agent,
      headers: o.headers ?? {},
      ...(o.body !== undefined ? { body: o.body } : {}),
    });
    const text = await res.body.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, headers: res.headers, text, json };
  }

  private viaNodeHttps(method: string, url: string, o: { headers?: Record<string, string>; body?: string }): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method, headers: o.headers, ca: this.ca }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(o.body);
    });
  }

  async sso(username: string = this.engine.user, password = this.engine.password, accept = "application/json"): Promise<RawResponse> {
    const form = new URLSearchParams({ grant_type: "password", scope: "ovirt-app-api", username, password });
    return this.raw("POST", `${this.engine.url}/ovirt-engine/sso/oauth/token`, {
      headers: { accept, "content-type": "application/x-www-form-urlencoded" },
      body: form.toString(),
    });
  }

  async bearer(): Promise<string> {
    if (!this.token) {
      const r = await this.sso();
      if (r.status !== 200) throw new Error(`SSO failed: ${r.status} ${r.text}`);
      this.token = r.json.access_token as string;
    }
    return this.token;
  }

  forgetToken(): void {
    this.token = undefined;
  }

  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<RawResponse> {
    const h: Record<string, string> = {
      authorization: `Bearer ${await this.bearer()}`,
      accept: "application/json",
      version: "4",
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...headers,
    };
    return this.raw(method, `${this.engine.url}/ovirt-engine/api${path}`, {
      headers: h,
      ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
    });
  }

  get(path: string, headers?: Record<string, string>) {
    return this.call("GET", path, undefined, headers);
  }
  post(path: string, body: unknown = {}, headers?: Record<string, string>) {
    return this.call("POST", path, body, headers);
  }
  put(path: string, body: unknown, headers?: Record<string, string>) {
    return this.call("PUT", path, body, headers);
  }
  delete(path: string, headers?: Record<string, string>) {
    return this.call("DELETE", path, undefined, headers);
  }

  /** Poll `GET path` until `done(json, status)`; fails after `timeoutMs`. */
  async waitFor(path: string, done: (json: any, status: number) => boolean, timeoutMs = 20_000): Promise<RawResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.get(path);
      if (done(r.json, r.status)) return r;
      if (Date.now() > deadline) throw new Error(`timed out waiting on ${path}: last ${r.status} ${r.text.slice(0, 300)}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** Fast timings for tests (phases in tens of ms). */
export const FAST_TIMINGS: Partial<EngineTimings> = {
  diskCreateMs: 50,
  backupPhaseMs: 50,
  backupFinalizeMs: 50,
  snapshotMs: 50,
  transferFinalizeMs: 30,
  monitorIntervalMs: 100,
  vmPowerMs: 50,
};

export interface Extent {
  start: number;
  length: number;
  zero: boolean;
  hole?: boolean;
  dirty?: boolean;
}

/**
 * A deliberately plain imageio reader for lab tests (not Ferry's data plane): OPTIONS, extents,
 * ranged GETs into a raw file. Full: data extents are copied into a new sparse file. Incremental:
 * `base` (a raw file of the previous point in time) is copied first, then dirty extents are
 * applied (dirty+zero → zeroes). Returns the extents it used.
 */
export async function imageioDownload(
  api: RawApi,
  transferUrl: string,
  out: string,
  o: { incremental?: boolean; base?: string } = {},
): Promise<Extent[]> {
  const { copyFile, open } = await import("node:fs/promises");
  const opts = await api.raw("OPTIONS", transferUrl);
  if (opts.status !== 200) throw new Error(`OPTIONS ${opts.status} ${opts.text}`);
  const ex = await api.raw("GET", `${transferUrl}/extents?context=${o.incremental ? "dirty" : "zero"}`);
  if (ex.status !== 200) throw new Error(`extents ${ex.status} ${ex.text}`);
  const extents = ex.json as Extent[];
  const size = extents.length ? extents[extents.length - 1]!.start + extents[extents.length - 1]!.length : 0;
  if (o.base) await copyFile(o.base, out);
  const fh = await open(out, o.base ? "r+" : "w");
  try {
    await fh.truncate(size);
    for (const e of extents) {
      if (o.incremental && !e.dirty) continue;
      if (e.zero) {
        if (o.incremental) await fh.write(Buffer.alloc(e.length), 0, e.length, e.start);
        continue;
      }
      const r = await request(transferUrl, {
        dispatcher: api.agent,
        headers: { range: `bytes=${e.start}-${e.start + e.length - 1}` },
      });
      if (r.statusCode !== 206) throw new Error(`GET ${r.statusCode} ${await r.body.text()}`);
      const data = Buffer.from(await r.body.arrayBuffer());
      await fh.write(data, 0, data.length, e.start);
    }
  } finally {
    await fh.close();
  }
  return extents;
}

/** PUT a raw file to an upload transfer (non-zero 1 MiB chunks), then PATCH flush. */
export async function imageioUpload(api: RawApi, transferUrl: string, file: string): Promise<void> {
  const { readFile } = await import("node:fs/promises");
  const data = await readFile(file);
  const chunk = 1024 * 1024;
  for (let off = 0; off < data.length; off += chunk) {
    const part = data.subarray(off, Math.min(off + chunk, data.length));
    if (part.every((b) => b === 0)) continue;
    const r = await request(`${transferUrl}?flush=n`, {
      method: "PUT",
      dispatcher: api.agent,
      headers: { "content-range": `bytes ${off}-${off + part.length - 1}/*`, "content-length": String(part.length) },
      body: part,
    });
    await r.body.text();
    if (r.statusCode !== 200) throw new Error(`PUT ${r.statusCode}`);
  }
  const f = await request(transferUrl, {
    method: "PATCH",
    dispatcher: api.agent,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ op: "flush" }),
  });
  await f.body.text();
  if (f.statusCode !== 200) throw new Error(`PATCH flush ${f.statusCode}`);
}
