import { createHash, X509Certificate } from "node:crypto";
import { createServer as createHttp, type Server } from "node:http";
import { createServer as createHttps } from "node:https";
import type { AddressInfo } from "node:net";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { fetchEngineCa, PKI_RESOURCE_PATH } from "./ca.ts";
import { EngineCaError } from "./errors.ts";
import { makeTestPki, type TestPki } from "./testing/test-pki.ts";

let pki: TestPki;
beforeAll(async () => {
  pki = await makeTestPki();
});

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

const seen: string[] = [];
async function serve(tls: boolean, reply: (path: string) => { status: number; body: string }): Promise<string> {
  const handler = (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => {
    seen.push(req.url ?? "");
    const r = reply(req.url ?? "");
    res.writeHead(r.status, { "content-type": "application/x-x509-ca-cert" });
    res.end(r.body);
  };
  server = tls ? createHttps({ cert: pki.cert, key: pki.key }, handler) : createHttp(handler);
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return `${tls ? "https" : "http"}://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function opensslStyleFingerprint(pem: string): string {
  const der = new X509Certificate(pem).raw;
  return createHash("sha256").update(der).digest("hex").toUpperCase().match(/../g)!.join(":");
}

describe("engine CA", () => {
  it("engine CA - fetched over plain http from pki-resource", async () => {
    const url = await serve(false, () => ({ status: 200, body: pki.caPem }));
    const ca = await fetchEngineCa(url);
    expect(seen.at(-1)).toBe(PKI_RESOURCE_PATH);
    expect(ca.transport).toBe("http");
    expect(ca.isCa).toBe(true);
    expect(ca.fingerprint256).toBe(opensslStyleFingerprint(pki.caPem));
    expect(ca.subject).toContain("ferry-test-ca");
    expect(ca.notAfter.getTime()).toBeGreaterThan(Date.now());
    expect(ca.pem).toContain("BEGIN CERTIFICATE");
  });

  it("engine CA - over https it is unverified without a CA, verified with the right one, refused with a wrong one", async () => {
    const url = await serve(true, () => ({ status: 200, body: pki.caPem }));
    expect((await fetchEngineCa(`${url}/ovirt-engine`)).transport).toBe("https-unverified");
    expect((await fetchEngineCa(url, { caPem: pki.caPem })).transport).toBe("https-verified");
    const err = await fetchEngineCa(url, { caPem: pki.otherCaPem }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(EngineCaError);
    expect((err as Error).message).toMatch(/TLS verification/);
  });

  it("engine CA - a non-PEM answer or an HTTP error is an EngineCaError", async () => {
    const url = await serve(false, (p) =>
      p.includes("format=X509-PEM-CA") && p.startsWith("/bad") ? { status: 400, body: "Resource 'x' is invalid" } : { status: 200, body: "<html>login</html>" },
    );
    await expect(fetchEngineCa(url)).rejects.toThrow(/no PEM certificate/);
    await expect(fetchEngineCa(`${url}/bad`)).rejects.toThrow(/HTTP 400/);
  });

  it("engine CA - an unreachable engine is an EngineCaError", async () => {
    const url = await serve(false, () => ({ status: 200, body: pki.caPem }));
    server!.close();
    server = undefined;
    await expect(fetchEngineCa(url, { timeoutMs: 2000 })).rejects.toBeInstanceOf(EngineCaError);
  });
});
