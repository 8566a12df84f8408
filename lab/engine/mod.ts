import { randomBytes, X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createPki, loadOrCreatePki, type LabPki } from "../ca.ts";
import { createControlHandler } from "../control-http.ts";
import { ControlError, createLabControl, type LabControl } from "../control.ts";
import { Sessions } from "./auth.ts";
import { DEFAULT_TIMINGS, Engine, type EngineTimings } from "./engine.ts";
import { defaultImageioFactory, type ImageioFactory, type ImageioPort } from "./imageio-port.ts";
import type { EngineState } from "./model.ts";
import { registerBackups, type BackupSupport } from "./resources/backups.ts";
import { registerCheckpoints } from "./resources/checkpoints.ts";
import { registerDiskAttachments } from "./resources/disk-attachments.ts";
import { registerDisks } from "./resources/disks.ts";
import { registerEvents } from "./resources/events.ts";
import { registerImageTransfers, Transfers } from "./resources/image-transfers.ts";
import { registerNics } from "./resources/nics.ts";
import { registerSnapshots } from "./resources/snapshots.ts";
import { registerSystem } from "./resources/system.ts";
import { registerVms } from "./resources/vms.ts";
import { Router } from "./router.ts";
import { createPlainHandler, createRequestHandler } from "./server.ts";
import { DiskStorage } from "./storage.ts";

export interface EngineOptions {
  name: string;
  /** This engine's state, images and PKI live here. */
  dataDir: string;
  host?: string;
  /** admin@internal's password; default: kept from a previous run in dataDir, else random. */
  password?: string;
  timings?: Partial<EngineTimings>;
  /** Default: lab/imageio's startImageioServer. */
  imageioFactory?: ImageioFactory;
  backupSupport?: BackupSupport;
  /** Called with unexpected request errors (the client gets a 500 fault). */
  onError?: (err: unknown) => void;
  /** Validity of the CA and the engine/imageio certificates made at start, in days (default 365). */
  caDays?: number;
  /**
   * Ports to listen on (0 = any free one). Default: the ports of the previous run in dataDir
   * (`ports.json`), so a restarted engine is where its clients left it; any free port when that
   * one is taken or on a first start.
   */
  ports?: Partial<LabPorts>;
}

export interface LabPorts {
  https: number;
  plain: number;
  imageio: number;
}

async function loadPorts(dataDir: string): Promise<Partial<LabPorts>> {
  const file = join(dataDir, "ports.json");
  if (!existsSync(file)) return {};
  return JSON.parse(await readFile(file, "utf8")) as Partial<LabPorts>;
}

export interface LabEngine {
  name: string;
  /** https://127.0.0.1:PORT — the engine base; the API is at `${url}/ovirt-engine/api`. */
  url: string;
  /** http://127.0.0.1:PORT — plain HTTP, pki-resource only (trust bootstrap). */
  plainUrl: string;
  readonly caPem: string;
  /** PEM of the current CA (rewritten by rotateCa). */
  caFile: string;
  user: "admin@internal";
  password: string;
  control: LabControl;
  /** `${url}/ferry-lab` (same credentials as the API). */
  controlUrl: string;
  /** The imageio daemon's base URL (https://127.0.0.1:PORT; a new port after rotateCa). */
  readonly imageioUrl: string;
  /** Internals, for tests that need to look inside. */
  engine: Engine;
  stop(): Promise<void>;
}

async function loadPassword(dataDir: string, given?: string): Promise<string> {
  const file = join(dataDir, "credentials.json");
  if (given) {
    await writeFile(file, JSON.stringify({ user: "admin@internal", password: given }), { mode: 0o600 });
    return given;
  }
  if (existsSync(file)) {
    const saved = JSON.parse(await readFile(file, "utf8")) as { password?: unknown };
    if (typeof saved.password === "string") return saved.password;
  }
  const password = randomBytes(12).toString("base64url");
  await writeFile(file, JSON.stringify({ user: "admin@internal", password }), { mode: 0o600 });
  return password;
}

/** After a restart nothing is monitored any more: open backups fail, open transfers end (§5.5). */
function recover(e: Engine): void {
  for (const b of e.st.backups) {
    if (b.phase !== "succeeded" && b.phase !== "failed") {
      b.phase = "failed";
      b.finishedAt = Date.now();
      const vm = e.findVm(b.vmId);
      e.audit(
        "VM_BACKUP_FAILED_UNMONITORED",
        `Backup ${b.id} for VM ${vm?.name ?? b.vmId} was marked as failed since it is no longer monitored, cleanup may be required.`,
        { severity: "error", ...(vm ? { vmId: vm.id } : {}) },
      );
    }
  }
  for (const t of e.st.transfers) {
    if (!t.phase.startsWith("finished_")) {
      t.phase = "finished_failure";
      t.finishedAt = Date.now();
    }
  }
  // The hosts kept running: a VM caught half-way through a power change settles where it was going.
  for (const vm of e.st.vms) {
    if (vm.status === "wait_for_launch" || vm.status === "powering_up") vm.status = "up";
    if (vm.status === "powering_down") vm.status = "down";
  }
  for (const d of e.st.disks) {
    delete d.backupMode;
    delete d.transferId;
    if (d.status === "locked") {
      // A creation whose allocation did not fit was going to fail (lab/engine/space.ts).
      d.status = d.lockReason === "creating" && d.allocatedBytes === undefined ? "illegal" : "ok";
      delete d.lockReason;
    }
  }
}

async function listen(server: Server | HttpsServer, host: string, port = 0): Promise<number> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    // The previous run's port is taken by someone else: any free port rather than no engine.
    if (port === 0 || (err as { code?: string }).code !== "EADDRINUSE") throw err;
    return listen(server, host, 0);
  }
  return (server.address() as AddressInfo).port;
}

/** The imageio daemon on the previous run's port, else on any free one (see listen). */
async function startImageio(factory: ImageioFactory, o: Parameters<ImageioFactory>[0]): Promise<ImageioPort> {
  try {
    return await factory(o);
  } catch (err) {
    if (!o.port || (err as { code?: string }).code !== "EADDRINUSE") throw err;
    return factory({ ...o, port: 0 });
  }
}

export async function startEngine(o: EngineOptions): Promise<LabEngine> {
  const host = o.host ?? "127.0.0.1";
  await mkdir(o.dataDir, { recursive: true });
  const timings: EngineTimings = { ...DEFAULT_TIMINGS, ...o.timings };
  const password = await loadPassword(o.dataDir, o.password);
  const pkiDir = join(o.dataDir, "pki");
  const first = await loadOrCreatePki(pkiDir, { name: o.name, ...(o.caDays ? { days: o.caDays } : {}) });
  let generation = first.generation;
  let pki: LabPki = first.pki;
  const ports = { ...(await loadPorts(o.dataDir)), ...o.ports };
  let port = 0;
  let plainPort = 0;
  const savePorts = () => writeFile(join(o.dataDir, "ports.json"), JSON.stringify({ https: port, plain: plainPort, imageio: Number(new URL(imageio.url).port) }));
  const loaded = await Engine.loadState(o.dataDir);
  const st: EngineState = loaded ?? Engine.freshState();
  const storage = new DiskStorage(o.dataDir);
  await storage.init();

  const factory = o.imageioFactory ?? defaultImageioFactory;
  let imageio: ImageioPort;
  try {
    imageio = await startImageio(factory, { host, port: ports.imageio ?? 0, tls: { cert: pki.certPem, key: pki.keyPem }, maxConnections: 8 });
  } catch (err) {
    await storage.close();
    throw err;
  }

  const users = new Map([
    ["admin@internal", password],
    ["admin@ovirt@internalsso", password],
  ]);
  const engine = new Engine(o.name, st, storage, imageio, timings, o.dataDir, users);
  if (loaded) recover(engine);
  const sessions = new Sessions(users, () => timings.sessionIdleMs);
  const backupSupport = { mode: o.backupSupport ?? ("hybrid" as BackupSupport) };

  const router = new Router();
  const transfers = new Transfers(engine);
  registerSystem(router, engine);
  registerVms(router, engine);
  registerDiskAttachments(router, engine);
  registerNics(router, engine);
  registerDisks(router, engine);
  registerSnapshots(router, engine);
  registerBackups(router, engine, () => backupSupport.mode);
  registerCheckpoints(router, engine);
  registerImageTransfers(router, engine, transfers);
  registerEvents(router, engine);

  let https: HttpsServer | undefined;
  const control = createLabControl({
    engine,
    transfers,
    backupSupport,
    revokeTokens: () => sessions.revokeAll(),
    imageioFaults: () => imageio.faults,
    async rotateCa(r = {}) {
      // The imageio daemon's certificate is issued by the engine CA too; it is restarted with a new
      // one, which changes its port, so open transfers must be finished first.
      const open = engine.openTransfers();
      if (open.length) throw new ControlError(409, `finish the ${open.length} open transfer(s) before rotating the CA`);
      generation++;
      // "replace" (default): a new CA key; "renew": the same key and subject, a new validity (chains to the old CA).
      const next = await createPki(pkiDir, { name: o.name, generation, ...(r.days ? { days: r.days } : {}), ...(r.mode === "renew" ? { renew: pki } : {}) });
      const nextImageio = await factory({ host, port: 0, tls: { cert: next.certPem, key: next.keyPem }, maxConnections: 8 });
      const old = imageio;
      pki = next;
      imageio = nextImageio;
      engine.imageio = nextImageio;
      https?.setSecureContext({ cert: pki.certPem, key: pki.keyPem });
      // As when engine-setup restarts the web server: kept-alive connections end, the next
      // request shakes hands with the new certificate (requests under way still finish).
      https?.closeIdleConnections();
      await old.close();
      await savePorts();
      engine.audit("EXTERNAL_EVENT_NORMAL", `The engine CA was ${r.mode === "renew" ? "renewed" : "replaced"} (fingerprint ${pki.fingerprint256}).`);
      return { fingerprint256: pki.fingerprint256, notAfter: pki.notAfter, caFingerprint256: new X509Certificate(pki.caPem).fingerprint256, mode: r.mode ?? "replace" };
    },
  });

  const handler = createRequestHandler({
    engine,
    router,
    sessions,
    pki: () => pki,
    control: createControlHandler(control),
    ...(o.onError ? { onError: o.onError } : {}),
  });
  https = createHttpsServer({ cert: pki.certPem, key: pki.keyPem, keepAlive: true }, handler);
  // `Expect: 201-created` / `202-accepted` are engine semantics, not HTTP expectations (Node would answer 417).
  https.on("checkExpectation", handler);
  const plain = createHttpServer(createPlainHandler(() => pki));
  try {
    port = await listen(https, host, ports.https ?? 0);
    plainPort = await listen(plain, host, ports.plain ?? 0);
  } catch (err) {
    await engine.close();
    await imageio.close();
    await storage.close();
    throw err;
  }
  engine.baseUrl = `https://${host}:${port}`;
  engine.save();
  await savePorts();

  let stopped: Promise<void> | undefined;
  const lab: LabEngine = {
    name: o.name,
    url: engine.baseUrl,
    plainUrl: `http://${host}:${plainPort}`,
    get caPem() {
      return pki.caPem;
    },
    caFile: pki.caFile,
    user: "admin@internal",
    password,
    control,
    controlUrl: `${engine.baseUrl}/ferry-lab`,
    get imageioUrl() {
      return imageio.url;
    },
    engine,
    stop() {
      stopped ??= (async () => {
        const closing = [
          new Promise<void>((r) => https!.close(() => r())),
          new Promise<void>((r) => plain.close(() => r())),
        ];
        https!.closeAllConnections();
        plain.closeAllConnections();
        await Promise.all(closing);
        await engine.close();
        await transfers.closeAll();
        await imageio.close();
        await storage.close();
      })();
      return stopped;
    },
  };
  return lab;
}
