import type { NbdClient } from "../../adapters/nbd/mod.ts";
import type { BufferPool } from "./buffer-pool.ts";
import { dirtyExtents, UnsupportedOperation, zeroExtents, type NbdPool } from "./backend.ts";
import { ALGORITHMS, BLOCK_SIZE, computeChecksum, DEFAULT_ALGORITHM, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE } from "./checksum.ts";
import type { FaultState } from "./faults.ts";
import { SERVER_VERSION, type HttpRequest, type HttpResponse } from "./http-wire.ts";
import { PyJsonError, pyJsonLoads, pyRepr, type PyDict } from "./py-json.ts";
import { AuthorizationError, OperationCanceled, type Authorizer, type Operation, type Ticket } from "./ticket.ts";
import { allowedRange, availableRange, HttpError, pyBoolean, pyEnum, pyInteger, STATUS } from "./validate.ts";

/**
 * The request handlers of imageio's remote service (handlers/images.py, extents.py,
 * checksum.py, info.py), with the same validation order, messages and headers.
 */

const BASE_FEATURES = ["checksum", "extents"];
const ALL_FEATURES = [...BASE_FEATURES, "flush", "zero"];
/** GET/PUT move data in pieces of this size (imageio's buffer is 8 MiB; NBD's limit is 32 MiB). */
export const PIECE = 4 * 1024 * 1024;
/** NBD reads kept in flight per GET; writes per PUT. */
const READ_DEPTH = 2;
const WRITE_DEPTH = 2;
/** ops.Zero step. */
const ZERO_STEP = 128 * 1024 * 1024;

/** The connection was dropped on purpose (fault injection); nothing more to send. */
export class Dropped extends Error {}

export interface HandlerDeps {
  auth: Authorizer;
  /** PIECE-sized transfer buffers shared by all requests. */
  buffers: BufferPool;
  pools: Map<string, NbdPool>;
  faults: FaultState;
  maxConnections: number;
}

type Method = (req: HttpRequest, resp: HttpResponse, ticketId: string) => Promise<void>;
export type Handler = Partial<Record<"get" | "put" | "patch" | "options" | "post" | "delete" | "head", Method>>;

function requireTicketId(ticketId: string): void {
  if (!ticketId) throw new HttpError(STATUS.BAD_REQUEST, "Ticket id is required");
}

/** cors.allow(): headers for browser preflight and cross-origin requests. */
function cors(req: HttpRequest, resp: HttpResponse, allowMethods = "*"): void {
  let modified = false;
  if (req.headers.get("origin")) {
    resp.set("access-control-allow-origin", "*");
    modified = true;
  }
  if (req.headers.get("access-control-request-headers")) {
    resp.set("access-control-allow-headers", "*");
    modified = true;
  }
  if (req.headers.get("access-control-request-method")) {
    resp.set("access-control-allow-methods", allowMethods);
    modified = true;
  }
  if (modified) resp.set("access-control-max-age", 86400);
}

function forbidden(resp: HttpResponse, e: AuthorizationError, close = true): HttpError {
  if (close) resp.closeConnection();
  return new HttpError(STATUS.FORBIDDEN, e.message);
}

/** Run an operation on the ticket; a cancel during it becomes a 403 and closes the connection. */
async function runOp<T>(resp: HttpResponse, ticket: Ticket, op: Operation, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await ticket.run(op, fn);
  } catch (e) {
    if (e instanceof AuthorizationError) throw forbidden(resp, e);
    throw e;
  }
}

/** ContentRange.parse */
function parseContentRange(header: string): { first: number } {
  const m = /^bytes (\d+)-(\d+|\*)\/(\d+|\*)$/.exec(header);
  if (!m) throw new HttpError(STATUS.BAD_REQUEST, `Invalid Content-Range ${pyRepr(header)}`);
  const first = Number(m[1]);
  const last = m[2] === "*" ? undefined : Number(m[2]);
  if (last !== undefined && last < first) {
    throw new HttpError(STATUS.BAD_REQUEST, `Invalid Content-Range ${pyRepr(header)}, first > last`);
  }
  if (m[3] !== "*" && last !== undefined && last >= Number(m[3])) {
    throw new HttpError(STATUS.BAD_REQUEST, `Invalid Content-Range ${pyRepr(header)}, last >= complete`);
  }
  return { first };
}

/** Range.parse: one "bytes=first-[last]" range; suffix ranges parse but GET refuses them. */
function parseRange(header: string): { first: number; last: number | undefined } {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header);
  if (!m) {
    throw new HttpError(
      STATUS.REQUESTED_RANGE_NOT_SATISFIABLE,
      `Cannot satisfy range ${pyRepr(header)}, invalid range or multiple ranges`,
    );
  }
  const [, first, last] = m as unknown as [string, string, string];
  if (!first) {
    if (!last) throw new HttpError(STATUS.REQUESTED_RANGE_NOT_SATISFIABLE, `Cannot satisfy range ${pyRepr(header)}, no first or last`);
    return { first: -Number(last), last: undefined };
  }
  if (!last) return { first: Number(first), last: undefined };
  if (Number(first) > Number(last)) {
    throw new HttpError(STATUS.REQUESTED_RANGE_NOT_SATISFIABLE, `Cannot satisfy range ${pyRepr(header)}, first > last`);
  }
  return { first: Number(first), last: Number(last) };
}

export function createHandlers(d: HandlerDeps): Array<[RegExp, Handler]> {
  /** authorize + backends.get: the ticket and this connection's NBD client, both or a 403. */
  async function open(req: HttpRequest, resp: HttpResponse, ticketId: string, op: "read" | "write", close = true) {
    let ticket: Ticket;
    try {
      ticket = d.auth.authorize(ticketId, op);
    } catch (e) {
      if (e instanceof AuthorizationError) throw forbidden(resp, e, close);
      throw e;
    }
    const client = await backend(req, resp, ticket);
    return { ticket, client };
  }

  async function backend(req: HttpRequest, resp: HttpResponse, ticket: Ticket): Promise<NbdClient> {
    const conn = req.conn;
    const existing = ticket.connections.get(conn.id) as Lease | undefined;
    if (existing) return existing.client;
    const pool = d.pools.get(ticket.uuid);
    if (!pool) throw new Error("no backend for ticket");
    const client = await pool.acquire();
    const lease: Lease = { client, close: () => pool.release(client) };
    try {
      ticket.addConnection(conn.id, lease);
    } catch (e) {
      lease.close();
      if (e instanceof AuthorizationError) throw forbidden(resp, e);
      throw e;
    }
    // Authorized connections get the ticket's inactivity timeout.
    conn.setTimeout(ticket.inactivityTimeout * 1000);
    conn.context.set(ticket.uuid, { close: () => ticket.removeConnection(conn.id) });
    return client;
  }

  /** Fault hook: the throttle / stall of lab faults, before data passes. */
  async function pace(n: number): Promise<void> {
    const ms = d.faults.delayFor(n);
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  /** Fault hook: pass `buf` through unless an armed drop cuts the connection inside it. */
  function checkDrop(ticket: Ticket, n: number): number | undefined {
    const a = d.faults.allow(ticket.uuid, n);
    return a.drop ? a.pass : undefined;
  }

  const images: Handler = {
    async put(req, resp, ticketId) {
      cors(req, resp);
      requireTicketId(ticketId);
      if (req.query.get("close") === "y") resp.closeConnection();
      const size = req.contentLength;
      if (size === null) throw new HttpError(STATUS.BAD_REQUEST, "Content-Length header is required");
      const cr = req.headers.get("content-range");
      const offset = cr !== undefined ? parseContentRange(cr).first : 0;
      const flush = pyEnum(req.query, "flush", ["y", "n"], "y") === "y";
      const { ticket, client } = await open(req, resp, ticketId, "write");
      allowedRange(offset, size, ticket.size);

      const op: Operation = { offset, done: 0, canceled: false };
      await runOp(resp, ticket, op, async () => {
        const inflight: Promise<void>[] = [];
        let pos = offset;
        let left = size;
        let received = 0;
        try {
          while (left > 0) {
            const n = Math.min(PIECE, left);
            const pooled = d.buffers.take();
            const piece = n === pooled.length ? pooled : pooled.subarray(0, n);
            let fill = 0;
            while (fill < n) {
              const got = await req.readInto(piece, fill, n - fill);
              if (!got) {
                d.buffers.give(pooled);
                throw new HttpError(STATUS.BAD_REQUEST, `Requested ${size} bytes, available ${received} bytes`);
              }
              if (checkDrop(ticket, got) !== undefined) {
                req.conn.destroy();
                throw new Dropped();
              }
              fill += got;
              received += got;
              await pace(got);
            }
            const w = client.write(pos, piece).then(
              () => {
                op.done += n;
                d.buffers.give(pooled);
              },
              (e: unknown) => {
                d.buffers.give(pooled);
                throw e;
              },
            );
            w.catch(() => undefined);
            inflight.push(w);
            pos += n;
            left -= n;
            if (inflight.length >= WRITE_DEPTH) await inflight.shift();
            if (op.canceled) throw new OperationCanceled();
          }
          while (inflight.length) await inflight.shift();
        } finally {
          await Promise.allSettled(inflight);
        }
        if (flush) await client.flush();
      });
    },

    async get(req, resp, ticketId) {
      cors(req, resp);
      requireTicketId(ticketId);
      if (req.query.get("close") === "y") resp.closeConnection();
      let offset = 0;
      let size: number | undefined;
      const rangeHeader = req.headers.get("range");
      const range = rangeHeader !== undefined ? parseRange(rangeHeader) : undefined;
      if (range) {
        offset = range.first;
        if (offset < 0) {
          throw new HttpError(STATUS.REQUESTED_RANGE_NOT_SATISFIABLE, "suffix-byte-range-spec not supported yet");
        }
        if (range.last !== undefined) size = range.last - offset + 1;
      }
      const { ticket, client } = await open(req, resp, ticketId, "read");
      if (size !== undefined) {
        allowedRange(offset, size, ticket.size);
        availableRange(offset, size, ticket.size, client.size);
      } else {
        size = Math.min(ticket.size, client.size) - offset;
        if (size < 0) availableRange(offset, 0, ticket.size, client.size);
      }
      const total = size;
      resp.set("content-length", total);
      resp.set("content-type", "application/octet-stream");
      resp.set("content-disposition", ticket.filename ? `attachment; filename=${ticket.filename}` : "attachment");
      if (range) {
        resp.status = STATUS.PARTIAL_CONTENT;
        resp.set("content-range", `bytes ${offset}-${offset + total - 1}/${ticket.size}`);
      }

      const op: Operation = { offset, done: 0, canceled: false };
      await runOp(resp, ticket, op, async () => {
        const queue: Array<Promise<Buffer>> = [];
        let next = offset;
        const end = offset + total;
        const aligned = (n: number) => client.minBlockSize === 1 || (next % client.minBlockSize === 0 && n % client.minBlockSize === 0);
        const fill = () => {
          while (queue.length < READ_DEPTH && next < end) {
            const n = Math.min(PIECE, end - next);
            let p: Promise<Buffer>;
            if (n === PIECE && aligned(n)) {
              const buf = d.buffers.take();
              p = client.readInto(next, buf).then(
                () => buf,
                (e: unknown) => {
                  d.buffers.give(buf);
                  throw e;
                },
              );
            } else {
              p = client.read(next, n);
            }
            p.catch(() => undefined); // awaited in order below
            queue.push(p);
            next += n;
          }
        };
        try {
          fill();
          while (queue.length) {
            const buf = await queue.shift()!;
            fill();
            await pace(buf.length);
            const cut = checkDrop(ticket, buf.length);
            if (cut !== undefined) {
              await resp.write(buf.subarray(0, cut)).catch(() => undefined);
              req.conn.destroy();
              throw new Dropped();
            }
            await resp.write(buf);
            d.buffers.give(buf);
            op.done += buf.length;
            if (op.canceled) throw new OperationCanceled();
          }
        } finally {
          // Reads still in flight finish into their buffers, then the buffers go back.
          for (const p of queue) p.then((b) => d.buffers.give(b), () => undefined);
        }
      });
    },

    async patch(req, resp, ticketId) {
      requireTicketId(ticketId);
      let msg;
      try {
        msg = pyJsonLoads(await req.readAll());
      } catch (e) {
        if (e instanceof PyJsonError) throw new HttpError(STATUS.BAD_REQUEST, `Invalid JSON message ${e.message}`);
        throw e;
      }
      // imageio indexes the message like a dict; anything else is a TypeError (500).
      if (!(msg instanceof Map)) throw new TypeError("message is not a JSON object");
      const opName = pyEnum(msg, "op", ["zero", "flush"]);
      if (opName === "zero") return zero(req, resp, ticketId, msg);
      const { ticket, client } = await open(req, resp, ticketId, "write");
      await runOp(resp, ticket, { offset: 0, done: 0, canceled: false }, () => client.flush());
    },

    async options(req, resp, ticketId) {
      cors(req, resp, "OPTIONS,GET,PUT");
      requireTicketId(ticketId);
      const options: Record<string, unknown> = {};
      let allow: string[];
      if (ticketId === "*") {
        allow = ["OPTIONS", "GET", "PUT", "PATCH"];
        options.features = ALL_FEATURES;
      } else {
        const { ticket } = await open(req, resp, ticketId, "read");
        // Accessing ticket options counts as client activity.
        ticket.touch();
        allow = ["OPTIONS"];
        if (ticket.may("read")) {
          allow.push("GET");
          options.features = BASE_FEATURES;
        }
        if (ticket.may("write")) {
          allow.push("PUT", "PATCH");
          options.features = ALL_FEATURES;
        }
        options.max_readers = d.maxConnections;
        options.max_writers = d.maxConnections;
      }
      resp.set("allow", allow.join(","));
      await resp.sendJson(options);
    },
  };

  async function zero(req: HttpRequest, resp: HttpResponse, ticketId: string, msg: PyDict): Promise<void> {
    const size = pyInteger(msg, "size", { minval: 0 });
    const offset = pyInteger(msg, "offset", { minval: 0, dflt: 0 });
    const flush = pyBoolean(msg, "flush", false);
    const { ticket, client } = await open(req, resp, ticketId, "write");
    allowedRange(offset, size, ticket.size);
    const op: Operation = { offset, done: 0, canceled: false };
    await runOp(resp, ticket, op, async () => {
      while (op.done < size) {
        const step = Math.min(size - op.done, ZERO_STEP);
        await client.writeZeroes(offset + op.done, step, { noHole: !ticket.sparse });
        op.done += step;
        if (op.canceled) throw new OperationCanceled();
      }
      if (flush) await client.flush();
    });
  }

  const extents: Handler = {
    async get(req, resp, ticketId) {
      requireTicketId(ticketId);
      const { ticket, client } = await open(req, resp, ticketId, "read");
      const context = pyEnum(req.query, "context", ["zero", "dirty"], "zero");
      if (context === "dirty" && !ticket.dirty) {
        throw new HttpError(STATUS.NOT_FOUND, "Ticket does not support dirty extents");
      }
      try {
        await resp.sendJson(context === "zero" ? await zeroExtents(client) : await dirtyExtents(client));
      } catch (e) {
        if (e instanceof UnsupportedOperation) throw new HttpError(STATUS.NOT_FOUND, e.message);
        throw e;
      }
    },
  };

  const checksum: Handler = {
    async get(req, resp, ticketId) {
      requireTicketId(ticketId);
      const algorithm = pyEnum(req.query, "algorithm", ALGORITHMS, DEFAULT_ALGORITHM);
      const raw = req.query.get("block_size");
      let blockSize = BLOCK_SIZE;
      if (raw !== undefined) {
        if (!/^\s*[+-]?\d+(_\d+)*\s*$/.test(raw)) throw new HttpError(STATUS.BAD_REQUEST, `Invalid block size: ${pyRepr(raw)}`);
        blockSize = Number(raw.trim().replace(/_/g, ""));
      }
      if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE) {
        throw new HttpError(STATUS.BAD_REQUEST, `Block size out of allowed range: ${MIN_BLOCK_SIZE}-${MAX_BLOCK_SIZE}`);
      }
      if (blockSize % 4096) throw new HttpError(STATUS.BAD_REQUEST, "Block size is not aligned to 4096");
      // The checksum handler does not close the connection on a refused ticket.
      const { ticket, client } = await open(req, resp, ticketId, "read", false);
      const op: Operation = { offset: 0, done: 0, canceled: false };
      const result = await runOp(resp, ticket, op, async () =>
        computeChecksum(client, await zeroExtents(client), algorithm, blockSize, op),
      );
      await resp.sendJson(result);
    },
  };

  const algorithms: Handler = {
    async get(_req, resp) {
      await resp.sendJson({ algorithms: [...ALGORITHMS] });
    },
  };

  const info: Handler = {
    async get(req, resp) {
      cors(req, resp);
      await resp.sendJson({ version: SERVER_VERSION });
    },
  };

  return [
    [/^\/images\/(.*)\/extents/, extents],
    [/^\/images\/(.*)\/checksum\/algorithms/, algorithms],
    [/^\/images\/(.*)\/checksum/, checksum],
    [/^\/images\/(.*)/, images],
    [/^\/info\//, info],
  ];
}

interface Lease {
  client: NbdClient;
  close(): void;
}

