import { pyRepr, type PyDict, type PyValue } from "./py-json.ts";

/** An HTTP error answered with imageio's text/plain body (message + "\n"). */
export class HttpError extends Error {
  readonly status: number;
  readonly contentRange?: string | undefined;
  constructor(
    status: number,
    message: string,
    contentRange?: string,
  ) {
    super(message);
    this.status = status;
    this.contentRange = contentRange;
  }
}

export const STATUS = {
  OK: 200,
  PARTIAL_CONTENT: 206,
  BAD_REQUEST: 400,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_URI_TOO_LARGE: 414,
  REQUESTED_RANGE_NOT_SATISFIABLE: 416,
  INTERNAL_SERVER_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
} as const;

/** imageio's answer for any unexpected failure: it never leaks internals. */
export const SERVER_FAILED = "Server failed to perform the request, check logs";

type Lookup = PyDict | Map<string, string>;

/** validate.enum: note "Missing required value for op" has no quotes around the name. */
export function pyEnum(d: Lookup, name: string, values: readonly string[], dflt?: string): string {
  if (!d.has(name)) {
    if (dflt !== undefined) return dflt;
    throw new HttpError(STATUS.BAD_REQUEST, `Missing required value for ${name}`);
  }
  const val = d.get(name) as PyValue;
  if (typeof val !== "string" || !values.includes(val)) {
    const sorted = [...values].sort();
    throw new HttpError(
      STATUS.BAD_REQUEST,
      `Unsupported value ${pyRepr(val)} for ${pyRepr(name)}, expecting one of ${pyRepr(sorted)}`,
    );
  }
  return val;
}

/** validate.integer; Python's bool is an int, a float is not. */
export function pyInteger(d: PyDict, name: string, o: { minval?: number; dflt?: number } = {}): number {
  if (!d.has(name)) {
    if (o.dflt !== undefined) return o.dflt;
    throw new HttpError(STATUS.BAD_REQUEST, `Missing required value for ${pyRepr(name)}`);
  }
  const raw = d.get(name)!;
  let val: number;
  if (typeof raw === "boolean") val = raw ? 1 : 0;
  else if (typeof raw === "number") val = raw;
  else throw new HttpError(STATUS.BAD_REQUEST, `Integer required ${pyRepr(raw)}`);
  if (o.minval !== undefined && val < o.minval) {
    throw new HttpError(STATUS.BAD_REQUEST, `Invalid value ${pyRepr(raw)} < ${o.minval}`);
  }
  return val;
}

export function pyBoolean(d: PyDict, name: string, dflt: boolean): boolean {
  if (!d.has(name)) return dflt;
  const val = d.get(name)!;
  if (typeof val !== "boolean") throw new HttpError(STATUS.BAD_REQUEST, `Boolean required ${pyRepr(val)}`);
  return val;
}

/** validate.allowed_range */
export function allowedRange(offset: number, size: number, ticketSize: number): void {
  if (offset + size > ticketSize) {
    throw new HttpError(STATUS.REQUESTED_RANGE_NOT_SATISFIABLE, "Requested range out of allowed range", `bytes */${ticketSize}`);
  }
}

/** validate.available_range */
export function availableRange(offset: number, size: number, ticketSize: number, backendSize: number): void {
  const requested = offset + size;
  const available = Math.min(ticketSize, backendSize);
  if (requested > available) {
    throw new HttpError(
      STATUS.REQUESTED_RANGE_NOT_SATISFIABLE,
      `Requested more bytes than available: ${requested} > ${available}`,
      `bytes */${available}`,
    );
  }
}
