import net from "node:net";
import tls from "node:tls";
import { NbdPool } from "./backend.ts";
import { FaultState, type ImageioFaults } from "./faults.ts";
import { BufferPool } from "./buffer-pool.ts";
import { createHandlers, Dropped, PIECE, type Handler } from "./handlers.ts";
import { ConnectionLost, HttpConnection, type HttpRequest, type HttpResponse } from "./http-wire.ts";
import { pyRepr } from "./py-json.ts";
import { Authorizer, monotonicSeconds, type Clock, type LabTicket, type TicketInfo } from "./ticket.ts";
import { HttpError, SERVER_FAILED, STATUS } from "./validate.ts";

export interface ImageioServerOptions {
  host?: string;
  port?: number;
  /** PEM strings. Without tls the server speaks plain HTTP (handy for debugging only). */
  tls?: { cert: string; key: string };
  /** daemon.max_connections: max_readers/max_writers and NBD connections per ticket. Default 8. */
  maxConnections?: number;
  /** Monotonic seconds; tests may drive time. */
  clock?: Clock;
  /** control.remove_timeout: how long removeTicket waits for operations to finish. Default 60 s. */
  removeTimeoutMs?: number;
}

export interface ImageioServer {
  /** https://127.0.0.1:PORT; a transfer URL is `${url}/images/${uuid}`. */
  readonly url: string;
  readonly port: number;
  addTicket(t: LabTicket): void;
  getTicket(id: string): TicketInfo | undefined;
  /** Cancel the ticket, wait for its operations to finish (rejects after removeTimeoutMs), forget it. */
  removeTicket(id: string): Promise<void>;
  extendTicket(id: string, timeoutSec: number): void;
  readonly faults: ImageioFaults;
  close(): Promise<void>;
}

const ALLOWED_METHODS = new Set(["GET", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "HEAD"]);
/** Unauthorized connections time out after 60 s, like imageio's http.Connection.timeout. */
const CONNECTION_TIMEOUT_MS = 60_000;

const FAULT_BODY: Readonly<Record<number, string>> = {
  500: SERVER_FAILED,
  503: "Service Unavailable",
};

export async function startImageioServer(o: ImageioServerOptions = {}): Promise<ImageioServer> {
  const clock = o.clock ?? monotonicSeconds;
  const maxConnections = o.maxConnections ?? 8;
  const removeTimeoutMs = o.removeTimeoutMs ?? 60_000;
  const auth = new Authorizer(clock);
  const pools = new Map<string, NbdPool>();
  const faults = new FaultState((id) => {
    const t = auth.get(id);
    if (t) t.expireNow();
  });
  // Enough idle pieces for a few busy connections; more are allocated and dropped.
  const buffers = new BufferPool(PIECE, 8);
  const routes = createHandlers({ auth, pools, faults, maxConnections, buffers });
  const connections = new Map<HttpConnection, Promise<void>>();
  // Every accepted socket until it closes: one whose request loop ended half-open (ended by us,
  // reading paused) is no active handle, so close() waiting on it would hang a drained process.
  const sockets = new Set<net.Socket>();

  async function app(req: HttpRequest, resp: HttpResponse): Promise<void> {
    try {
      const injected = faults.takeFailure(req.method, req.path);
      if (injected !== undefined) throw new HttpError(injected, FAULT_BODY[injected] ?? `Injected failure ${injected}`);
      await dispatch(req, resp);
    } catch (e) {
      if (e instanceof Dropped || e instanceof ConnectionLost || req.conn.closed) return;
      if (resp.started) {
        // Part of the body is out; the only honest signal left is closing the connection.
        req.conn.destroy();
        return;
      }
      const err = e instanceof HttpError ? e : new HttpError(STATUS.INTERNAL_SERVER_ERROR, SERVER_FAILED);
      if (req.remaining > 0) resp.closeConnection();
      await resp.sendError(err);
    }
  }

  async function dispatch(req: HttpRequest, resp: HttpResponse): Promise<void> {
    if (!ALLOWED_METHODS.has(req.method)) {
      throw new HttpError(STATUS.METHOD_NOT_ALLOWED, `Invalid method ${pyRepr(req.method)}`);
    }
    for (const [route, handler] of routes) {
      const m = route.exec(req.path);
      if (!m) continue;
      const method = (handler as Handler)[req.method.toLowerCase() as keyof Handler];
      if (!method) {
        throw new HttpError(STATUS.METHOD_NOT_ALLOWED, `Method ${pyRepr(req.method)} not defined for ${pyRepr(req.path)}`);
      }
      return method(req, resp, m[1] ?? "");
    }
    throw new HttpError(STATUS.NOT_FOUND, `No handler for ${pyRepr(req.path)}`);
  }

  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  const onSocket = (socket: net.Socket) => {
    track(socket);
    const conn = new HttpConnection(socket, app, CONNECTION_TIMEOUT_MS);
    socket.on("error", () => undefined);
    connections.set(
      conn,
      conn.run().finally(() => connections.delete(conn)),
    );
  };
  // imageio's listen queue is 40.
  const server: net.Server = o.tls
    ? tls.createServer({ cert: o.tls.cert, key: o.tls.key }, onSocket)
    : net.createServer(onSocket);
  server.on("tlsClientError", () => undefined);
  // The TCP socket (what the server counts) and, under TLS, the TLS socket over it.
  server.on("connection", track);
  const host = o.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port: o.port ?? 0, backlog: 40 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  const hostPart = host.includes(":") ? `[${host}]` : host;

  return {
    url: `${o.tls ? "https" : "http"}://${hostPart}:${port}`,
    port,
    faults,
    addTicket(t) {
      const previous = auth.get(t.uuid);
      const ticket = auth.add(t);
      if (previous) void pools.get(t.uuid)?.close();
      pools.set(ticket.uuid, new NbdPool(ticket.url, ticket.dirty, maxConnections));
    },
    getTicket(id) {
      return auth.get(id)?.info();
    },
    async removeTicket(id) {
      await auth.remove(id, removeTimeoutMs);
      if (auth.get(id)) return;
      const pool = pools.get(id);
      pools.delete(id);
      await pool?.close();
    },
    extendTicket(id, timeoutSec) {
      const t = auth.get(id);
      if (!t) throw new HttpError(STATUS.NOT_FOUND, `No such ticket ${id}`);
      t.extend(timeoutSec);
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const c of connections.keys()) c.destroy();
      for (const s of sockets) s.destroy();
      // Closing the pools also fails requests still waiting for a connection slot.
      await Promise.all([...pools.values()].map((p) => p.close()));
      pools.clear();
      await Promise.all(connections.values());
      await closed;
    },
  };
}
