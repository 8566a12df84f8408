/**
 * The parts of Python's `json` and `repr()` that show up in imageio's responses and error
 * messages, reproduced exactly: `json.dumps` spacing and ASCII escaping, `json.loads`
 * error texts ("Expecting value: line 1 column 1 (char 0)"), and the `repr` of values
 * quoted in validation errors ("Integer required 'x'"). Python's int/float distinction
 * matters there (1.0 is not an integer), so parsed numbers keep it.
 */

export class PyFloat {
  readonly value: number;
  constructor(value: number) {
    this.value = value;
  }
}

export type PyValue = null | boolean | number | PyFloat | string | PyValue[] | PyDict;
export type PyDict = Map<string, PyValue>;

export class PyJsonError extends Error {}

// ---- json.dumps -------------------------------------------------------------------------

function dumpString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else if (c < 0x20 || c > 0x7e) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += s[i];
  }
  return out + '"';
}

/** `json.dumps(value)` with Python's defaults (", " and ": " separators, ensure_ascii). */
export function pyJsonDumps(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (value instanceof PyFloat) return floatRepr(value.value);
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : floatRepr(value);
  if (typeof value === "string") return dumpString(value);
  if (Array.isArray(value)) return "[" + value.map(pyJsonDumps).join(", ") + "]";
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value as object);
  return "{" + entries.map(([k, v]) => `${dumpString(String(k))}: ${pyJsonDumps(v)}`).join(", ") + "}";
}

// ---- repr ------------------------------------------------------------------------------

/** Python's float repr: shortest round-trip digits, exponent outside [1e-4, 1e16). */
export function floatRepr(v: number): string {
  if (Number.isNaN(v)) return "nan";
  if (v === Infinity) return "inf";
  if (v === -Infinity) return "-inf";
  if (Object.is(v, -0)) return "-0.0";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e16)) {
    const [mant, exp] = v.toExponential().split("e") as [string, string];
    const sign = exp.startsWith("-") ? "-" : "+";
    return `${mant}e${sign}${exp.replace(/^[+-]/, "").padStart(2, "0")}`;
  }
  const s = String(v);
  return Number.isInteger(v) ? `${s}.0` : s;
}

function strRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === "\\") out += "\\\\";
    else if (ch === quote) out += "\\" + quote;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out + quote;
}

/** `repr(value)` for the JSON-shaped values imageio quotes back. */
export function pyRepr(value: PyValue | undefined): string {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (value instanceof PyFloat) return floatRepr(value.value);
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : floatRepr(value);
  if (typeof value === "string") return strRepr(value);
  if (Array.isArray(value)) return "[" + value.map(pyRepr).join(", ") + "]";
  return "{" + [...value.entries()].map(([k, v]) => `${strRepr(k)}: ${pyRepr(v)}`).join(", ") + "}";
}

// ---- json.loads ------------------------------------------------------------------------

const WS = new Set([" ", "\t", "\n", "\r"]);
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/y;

class Parser {
  i = 0;
  readonly s: string;
  constructor(s: string) {
    this.s = s;
  }

  fail(msg: string, pos: number): never {
    const before = this.s.slice(0, pos);
    const line = before.split("\n").length;
    const col = pos - (before.lastIndexOf("\n") + 1) + 1;
    throw new PyJsonError(`${msg}: line ${line} column ${col} (char ${pos})`);
  }

  ws(): void {
    while (this.i < this.s.length && WS.has(this.s[this.i]!)) this.i++;
  }

  value(): PyValue {
    const s = this.s;
    const c = s[this.i];
    if (c === '"') return this.string();
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (s.startsWith("null", this.i)) return (this.i += 4), null;
    if (s.startsWith("true", this.i)) return (this.i += 4), true;
    if (s.startsWith("false", this.i)) return (this.i += 5), false;
    if (s.startsWith("NaN", this.i)) return (this.i += 3), new PyFloat(NaN);
    if (s.startsWith("Infinity", this.i)) return (this.i += 8), new PyFloat(Infinity);
    if (s.startsWith("-Infinity", this.i)) return (this.i += 9), new PyFloat(-Infinity);
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(s);
    if (m) {
      this.i += m[0].length;
      return m[1] || m[2] ? new PyFloat(Number(m[0])) : Number(m[0]);
    }
    return this.fail("Expecting value", this.i);
  }

  string(): string {
    const start = this.i;
    this.i++;
    let out = "";
    for (;;) {
      if (this.i >= this.s.length) this.fail("Unterminated string starting at", start);
      const c = this.s[this.i]!;
      if (c === '"') {
        this.i++;
        return out;
      }
      if (c === "\\") {
        const e = this.s[this.i + 1];
        const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e === undefined) this.fail("Unterminated string starting at", start);
        if (e === "u") {
          const hex = this.s.slice(this.i + 2, this.i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("Invalid \\uXXXX escape", this.i + 1);
          out += String.fromCharCode(parseInt(hex, 16));
          this.i += 6;
          continue;
        }
        if (!(e in simple)) this.fail("Invalid \\escape", this.i);
        out += simple[e];
        this.i += 2;
        continue;
      }
      if (c.charCodeAt(0) < 0x20) this.fail("Invalid control character at", this.i);
      out += c;
      this.i++;
    }
  }

  object(): PyDict {
    const d: PyDict = new Map();
    this.i++;
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return d;
    }
    for (;;) {
      if (this.s[this.i] !== '"') this.fail("Expecting property name enclosed in double quotes", this.i);
      const key = this.string();
      this.ws();
      if (this.s[this.i] !== ":") this.fail("Expecting ':' delimiter", this.i);
      this.i++;
      this.ws();
      d.set(key, this.value());
      this.ws();
      const c = this.s[this.i];
      if (c === "}") {
        this.i++;
        return d;
      }
      if (c !== ",") this.fail("Expecting ',' delimiter", this.i);
      this.i++;
      this.ws();
    }
  }

  array(): PyValue[] {
    const a: PyValue[] = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return a;
    }
    for (;;) {
      a.push(this.value());
      this.ws();
      const c = this.s[this.i];
      if (c === "]") {
        this.i++;
        return a;
      }
      if (c !== ",") this.fail("Expecting ',' delimiter", this.i);
      this.i++;
      this.ws();
    }
  }
}

/** `json.loads(body)`; throws PyJsonError with Python's message. */
export function pyJsonLoads(body: Buffer | string): PyValue {
  let text: string;
  if (typeof body === "string") text = body;
  else {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(body);
    } catch {
      const bad = body.findIndex((b) => b >= 0x80);
      throw new PyJsonError(
        `'utf-8' codec can't decode byte 0x${(body[bad] ?? 0).toString(16).padStart(2, "0")} in position ${bad}: invalid start byte`,
      );
    }
  }
  const p = new Parser(text);
  p.ws();
  const v = p.value();
  p.ws();
  if (p.i !== text.length) p.fail("Extra data", p.i);
  return v;
}
