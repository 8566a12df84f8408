import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * Request context and replies of the lab engine. Handlers return a Reply or throw an HttpFault
 * (the engine's `{reason, detail}` body) or NotFound (a bare 404 without a body, as the engine
 * answers for a missing id).
 */
export interface Ctx {
  req: IncomingMessage;
  method: string;
  /** Path below the API base, without the `/v4` prefix and matrix parameters: "/vms/<id>". */
  path: string;
  params: Record<string, string>;
  /** Query string, matrix parameters of the last segment, and the All-Content/Filter headers (§1.1). */
  query: URLSearchParams;
  body: unknown;
  correlationId: string | undefined;
  user: string;
}

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export class HttpFault extends Error {
  readonly status: number;
  readonly reason: string;
  readonly detail: string;
  constructor(
    status: number,
    reason: string,
    detail: string,
  ) {
    super(`${status} ${reason}: ${detail}`);
    this.status = status;
    this.reason = reason;
    this.detail = detail;
  }
}

export class NotFound extends Error {
  constructor() {
    super("not found");
  }
}

/**
 * An engine validation or execution failure: `detail` is Java's List.toString() of the messages,
 * so "[msg1, msg2]". Status 400 (BAD_PARAMETERS and execute failures) or 409 (CONFLICT).
 */
export function fault(status: 400 | 409 | 403 | 500, ...messages: string[]): HttpFault {
  return new HttpFault(status, "Operation Failed", `[${messages.join(", ")}]`);
}

/** "Cannot <action> <type>. <message>" (the engine's VAR__ACTION__/VAR__TYPE__ template). */
export function cannot(status: 400 | 409, action: string, type: string, message: string): HttpFault {
  return fault(status, `Cannot ${action} ${type}. ${message}`);
}

/** Missing mandatory input: `Disk [provisionedSize|size, format] required for add`. */
export function incomplete(type: string, missing: string[], action: string): HttpFault {
  return new HttpFault(400, "Incomplete parameters", `${type} [${missing.join(", ")}] required for ${action}`);
}

export function invalidEnum(value: unknown, enumName: string): HttpFault {
  return new HttpFault(400, "Invalid value", `${String(value)} is not a member of ${enumName}`);
}

export function ok(body: unknown): Reply {
  return { status: 200, body };
}

export function created(body: { href?: string } & object, baseUrl: string): Reply {
  return { status: 201, body, headers: body.href ? { Location: `${baseUrl}${body.href}` } : {} };
}

export function accepted(body: unknown): Reply {
  return { status: 202, body };
}

/** An action's synchronous answer (§1.3). */
export function actionDone(ctx: Ctx, extra: Record<string, unknown> = {}): Reply {
  const asyncFlag = readBool(bodyField(ctx, "async")) ?? readBool(ctx.query.get("async"));
  const expect = ctx.req.headers.expect;
  if (asyncFlag || (typeof expect === "string" && expect.toLowerCase().includes("202-accepted"))) {
    return { status: 202, body: { ...extra, status: "in_progress" } };
  }
  return { status: 200, body: { ...extra, status: "complete" } };
}

export async function readBody(req: IncomingMessage, limit = 8 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpFault(400, "Operation Failed", "[Request body too large]");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, {
    ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    "Content-Length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "Content-Type": "text/plain;charset=UTF-8", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** 404 with no body at all. */
export function sendNotFound(res: ServerResponse): void {
  res.writeHead(404, { "Content-Length": 0 });
  res.end();
}

// ---------- reading the engine's lenient scalars (§1.2: strings or native values) ----------

export function readBool(v: unknown): boolean | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v === "boolean") return v;
  if (v === 1 || v === 0) return v === 1;
  if (typeof v === "string") {
    const s = v.toLowerCase();
    if (s === "true" || s === "1") return true;
    if (s === "false" || s === "0") return false;
  }
  throw new HttpFault(400, "Invalid value", `${String(v)} is not a valid boolean`);
}

export function readInt(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v === "number" && Number.isSafeInteger(v)) return v;
  if (typeof v === "string" && /^-?\d+$/.test(v.trim())) {
    const n = Number(v.trim());
    if (Number.isSafeInteger(n)) return n;
  }
  throw new HttpFault(400, "Invalid value", `${String(v)} is not a valid integer for ${field}`);
}

export function readEnum<T extends string>(v: unknown, values: readonly T[], enumName: string): T | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  const s = String(v).toLowerCase();
  if ((values as readonly string[]).includes(s)) return s as T;
  throw invalidEnum(v, enumName);
}

export function obj(v: unknown): Record<string, unknown> {
  return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function bodyField(ctx: Ctx, name: string): unknown {
  return obj(ctx.body)[name];
}

export function str(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return undefined;
}

/** Items of a nested collection in a request: `{"disk": [...]}` (or a bare array, leniently). */
export function items(wrapper: unknown, key: string): Record<string, unknown>[] {
  if (Array.isArray(wrapper)) return wrapper.map(obj);
  const inner = obj(wrapper)[key];
  if (Array.isArray(inner)) return inner.map(obj);
  if (inner && typeof inner === "object") return [obj(inner)];
  return [];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isUuid(s: string | undefined): s is string {
  return typeof s === "string" && UUID.test(s);
}

/** A well-formed id that may not exist; a malformed id in a path is a bare 404 (§1.4). */
export function pathId(ctx: Ctx, name: string): string {
  const id = ctx.params[name];
  if (!isUuid(id)) throw new NotFound();
  return id.toLowerCase();
}
