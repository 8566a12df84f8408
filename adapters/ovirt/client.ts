/**
 * The engine REST client. One EngineSession (pool + token) per engine; `withCorrelationId`
 * gives each run its own view that shares them, so engine logs and audit events carry the run.
 */
import { randomUUID } from "node:crypto";
import { inspect } from "node:util";
import { ApiRoot } from "./models.ts";
import { backupOps } from "./ops-backups.ts";
import { diskOps } from "./ops-disks.ts";
import { eventOps } from "./ops-events.ts";
import { nicOps } from "./ops-nics.ts";
import { snapshotOps } from "./ops-snapshots.ts";
import { transferOps } from "./ops-transfers.ts";
import { vmOps, type CallOptions } from "./ops-vms.ts";
import { EngineSession, sanitizeCorrelationId, type EngineApi, type SessionOptions } from "./transport.ts";

export interface EngineClientOptions extends SessionOptions {
  /** Sent as `Correlation-Id` on every call (cut to 36 chars of [A-Za-z0-9._-]). Default: a random UUID. */
  readonly correlationId?: string | undefined;
  /** Default poll interval of the phase waits (ms). Default 1000, like the SDK. */
  readonly pollIntervalMs?: number | undefined;
}

export class EngineClient {
  /** Engine base URL (no credentials). */
  readonly url: string;
  readonly user: string;
  readonly correlationId: string;
  /** True when TLS verification is off; callers must log that. */
  readonly insecure: boolean;
  readonly pollIntervalMs: number;

  readonly vms;
  readonly diskAttachments;
  readonly disks;
  readonly storageDomains;
  readonly clusters;
  readonly vnicProfiles;
  readonly networks;
  readonly nics;
  readonly backups;
  readonly checkpoints;
  readonly imageTransfers;
  readonly snapshots;
  readonly events;

  readonly #session: EngineSession;
  readonly #api: EngineApi;
  readonly #owner: boolean;

  constructor(session: EngineSession, correlationId: string, pollIntervalMs: number, owner: boolean) {
    this.#session = session;
    this.#owner = owner;
    this.url = session.engine;
    this.user = session.user;
    this.insecure = session.insecure;
    this.correlationId = sanitizeCorrelationId(correlationId) || randomUUID();
    this.pollIntervalMs = pollIntervalMs;
    this.#api = session.api(this.correlationId);
    const v = vmOps(this.#api);
    const d = diskOps(this.#api);
    const b = backupOps(this.#api);
    this.vms = v.vms;
    this.diskAttachments = v.diskAttachments;
    this.disks = d.disks;
    this.storageDomains = d.storageDomains;
    this.clusters = d.clusters;
    this.vnicProfiles = d.vnicProfiles;
    this.networks = d.networks;
    this.nics = nicOps(this.#api);
    this.backups = b.backups;
    this.checkpoints = b.checkpoints;
    this.imageTransfers = transferOps(this.#api);
    this.snapshots = snapshotOps(this.#api);
    this.events = eventOps(this.#api);
  }

  /** A view for one run: same connections and token, another Correlation-Id. Closing it is a no-op. */
  withCorrelationId(correlationId: string): EngineClient {
    return new EngineClient(this.#session, correlationId, this.pollIntervalMs, false);
  }

  /** GET /ovirt-engine/api: product info and version. */
  apiRoot(o: CallOptions = {}): Promise<ApiRoot> {
    return this.#api.json({ method: "GET", path: "", signal: o.signal }, ApiRoot);
  }

  /** The engine version from the API root, e.g. {major: 4, minor: 5, full: "4.5.5-1.el8"}. */
  async version(o: CallOptions = {}): Promise<{ major: number; minor: number; full: string }> {
    const v = (await this.apiRoot(o)).product_info?.version;
    const major = v?.major ?? 0;
    const minor = v?.minor ?? 0;
    return { major, minor, full: v?.full_version ?? `${major}.${minor}` };
  }

  /** The engine CA PEM TLS is verified with now (shared by every view of this session). */
  get caPem(): string | undefined {
    return this.#session.caPem;
  }

  /**
   * Trust `pem` from now on, for this client and every view of its session (a renewed or newly
   * accepted engine CA, no restart needed). Returns false when it is already the one in use.
   */
  setCa(pem: string | undefined): boolean {
    return this.#session.setCa(pem);
  }

  /** Logs in now (otherwise the first call does): surfaces bad credentials or TLS early. */
  async login(o: CallOptions = {}): Promise<void> {
    await this.#session.token(o.signal);
  }

  /** Closes the connections (only the client made by createEngineClient owns them). */
  async close(): Promise<void> {
    if (this.#owner) await this.#session.close();
  }

  toString(): string {
    return `EngineClient(${this.url}, user=${this.user}, correlationId=${this.correlationId}${this.insecure ? ", insecure" : ""})`;
  }

  toJSON(): Record<string, unknown> {
    return { url: this.url, user: this.user, correlationId: this.correlationId, insecure: this.insecure };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

export function createEngineClient(o: EngineClientOptions): EngineClient {
  return new EngineClient(new EngineSession(o), o.correlationId ?? randomUUID(), o.pollIntervalMs ?? 1000, true);
}
