/**
 * Test-only helpers for the imageio tests: a throwaway CA and a server certificate for
 * 127.0.0.1 made with the openssl CLI, and a raw HTTPS request helper that returns the
 * exact status line, header lines and body bytes (the conformance tests compare bytes).
 */
import { execa } from "execa";
import { readFile, writeFile } from "node:fs/promises";
import tls from "node:tls";

export interface TestPki {
  caPem: string;
  cert: string;
  key: string;
}

export async function makeTestPki(dir: string): Promise<TestPki> {
  const run = (args: string[]) => execa("openssl", args, { cwd: dir });
  await run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Ferry test CA"]);
  await run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
  await writeFile(`${dir}/san.ext`, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  await run(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext"]);
  return {
    caPem: await readFile(`${dir}/ca.pem`, "utf8"),
    cert: await readFile(`${dir}/server.pem`, "utf8"),
    key: await readFile(`${dir}/server.key`, "utf8"),
  };
}

export interface RawResponse {
  status: number;
  statusLine: string;
  /** Header lines exactly as sent, in order. */
  headerLines: string[];
  /** Lowercased name → value. */
  headers: Map<string, string>;
  body: Buffer;
  /** The server closed the connection after this response. */
  closed: boolean;
}

/**
 * A persistent TLS connection that sends hand-written requests and parses responses by
 * Content-Length, so tests see exactly what went over the wire (and can reuse it).
 */
export class RawHttps {
  private socket!: tls.TLSSocket;
  /** Received bytes in [start, end) of a growable store (amortized O(n) for large bodies). */
  private store = Buffer.allocUnsafe(64 * 1024);
  private start = 0;
  private end = 0;
  private ended = false;
  private waiter: (() => void) | undefined;

  static async open(url: string, caPem: string): Promise<RawHttps> {
    const u = new URL(url);
    const c = new RawHttps();
    await new Promise<void>((resolve, reject) => {
      c.socket = tls.connect({ host: u.hostname, port: Number(u.port), ca: caPem, servername: undefined }, resolve);
      c.socket.once("error", reject);
    });
    c.socket.on("data", (d: Buffer) => {
      c.append(d);
      c.wake();
    });
    c.socket.on("close", () => {
      c.ended = true;
      c.wake();
    });
    c.socket.on("error", () => undefined);
    return c;
  }

  get isClosed(): boolean {
    return this.ended;
  }

  /** Write raw bytes (a body sent after `Expect: 100-continue`). */
  write(data: Buffer | string): void {
    this.socket.write(data);
  }

  /** Read an interim (1xx) response head and return its status line. */
  async interim(): Promise<string> {
    let end = -1;
    while ((end = this.buf.indexOf("\r\n\r\n")) < 0) {
      if (this.ended) throw new Error("connection closed before a response");
      await this.wait();
    }
    const line = this.buf.subarray(0, end).toString("latin1");
    if (!/^HTTP\/1\.1 1\d\d /.test(line)) throw new Error(`not an interim response: ${line}`);
    this.consume(end + 4);
    return line;
  }

  send(method: string, path: string, headers: Record<string, string | number> = {}, body?: Buffer | string): void {
    const b = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
    let head = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
    const h = { ...headers };
    if (b && !Object.keys(h).some((k) => k.toLowerCase() === "content-length" || k.toLowerCase() === "transfer-encoding")) {
      h["Content-Length"] = b.length;
    }
    for (const [k, v] of Object.entries(h)) head += `${k}: ${v}\r\n`;
    this.socket.write(head + "\r\n");
    if (b) this.socket.write(b);
  }

  async request(method: string, path: string, headers: Record<string, string | number> = {}, body?: Buffer | string): Promise<RawResponse> {
    this.send(method, path, headers, body);
    return this.response(method === "HEAD");
  }

  /** Read one response; `bodyless` for HEAD. */
  async response(bodyless = false): Promise<RawResponse> {
    let end = -1;
    while ((end = this.buf.indexOf("\r\n\r\n")) < 0) {
      if (this.ended) throw new Error("connection closed before a response");
      await this.wait();
    }
    const headText = this.buf.subarray(0, end).toString("latin1");
    this.consume(end + 4);
    const [statusLine, ...headerLines] = headText.split("\r\n") as [string, ...string[]];
    const headers = new Map<string, string>();
    for (const l of headerLines) {
      const i = l.indexOf(":");
      headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
    }
    const status = Number(statusLine.split(" ")[1]);
    if (status === 100) return this.response(bodyless);
    const len = bodyless ? 0 : Number(headers.get("content-length") ?? 0);
    while (this.buf.length < len) {
      if (this.ended) break;
      await this.wait();
    }
    const body = Buffer.from(this.buf.subarray(0, Math.min(len, this.buf.length)));
    this.consume(body.length);
    // Give a closing server a moment to finish the close.
    if (headers.get("connection") === "close") await this.waitClosed(2000);
    return { status, statusLine, headerLines, headers, body, closed: this.ended };
  }

  async waitClosed(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.ended && Date.now() < deadline) {
      await Promise.race([this.wait(), new Promise((r) => setTimeout(r, 20))]);
    }
    return this.ended;
  }

  close(): void {
    this.socket.destroy();
  }

  private get buf(): Buffer {
    return this.store.subarray(this.start, this.end);
  }

  private consume(n: number): void {
    this.start += n;
  }

  private append(d: Buffer): void {
    if (this.end + d.length > this.store.length) {
      const live = this.end - this.start;
      const bigger = Buffer.allocUnsafe(Math.max(this.store.length, (live + d.length) * 2));
      this.store.copy(bigger, 0, this.start, this.end);
      this.store = bigger;
      this.start = 0;
      this.end = live;
    }
    d.copy(this.store, this.end);
    this.end += d.length;
  }

  private wait(): Promise<void> {
    return new Promise((r) => (this.waiter = r));
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
