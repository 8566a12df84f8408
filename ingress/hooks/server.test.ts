/**
 * The endpoint's answers that depend on what the bus does, with the publisher faked (the far
 * edge); the real bus is test/hooks.test.ts.
 */
import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { PermanentError } from "../../contracts/errors.ts";
import { BusUnavailableError, createHooksServer, type HookLog, type HookPublisher, type HooksServer } from "./server.ts";

const TOKEN = "unit-test-token-0123456789";
const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
const log: HookLog = {
  info: (obj, msg) => lines.push({ level: "info", obj, msg }),
  warn: (obj, msg) => lines.push({ level: "warn", obj, msg }),
  error: (obj, msg) => lines.push({ level: "error", obj, msg }),
};

let server: HooksServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  lines.length = 0;
});

async function start(publisher: HookPublisher, busReady?: () => boolean): Promise<string> {
  server = createHooksServer({ token: TOKEN, publisher, log, maxBodyBytes: 1024, ...(busReady ? { busReady } : {}) });
  return server.listen("127.0.0.1", 0);
}

const post = (url: string, body: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/backup`, { method: "POST", body, headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers } });

describe("hooks server", () => {
  it("202 - the publisher gets the subject, the checked event and its id as msgID, once", async () => {
    const calls: unknown[][] = [];
    const url = await start({ publish: async (...args) => (calls.push(args), { stream: "S", seq: 7, duplicate: false }) });
    const res = await post(url, '{"vm":"web01"}', { "idempotency-key": "k1" });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ id: "hook-k1", subject: "backup.requested", stream: "S", seq: 7, duplicate: false });
    expect(calls).toEqual([["backup.requested", expect.objectContaining({ id: "hook-k1", vm: "web01", correlationId: "hook-k1" }), "hook-k1"]]);
    expect(lines.map((l) => l.msg)).toEqual(["hook accepted"]);
  });

  it("503 - a transient publish failure asks for a retry, with the publisher's hint when it has one; 500 for anything else", async () => {
    let fail: Error = new BusUnavailableError("backup.requested", "no JetStream stream stores backup.requested: start Ferry's functions");
    const url = await start({ publish: async () => Promise.reject(fail) });
    const unavailable = await post(url, '{"vm":"web01"}');
    expect(unavailable.status).toBe(503);
    expect(unavailable.headers.get("retry-after")).toBe("5");
    expect(await unavailable.json()).toMatchObject({ reason: "no JetStream stream stores backup.requested: start Ferry's functions" });
    fail = new PermanentError("CONTRACT_VIOLATION", "a bug");
    const broken = await post(url, '{"vm":"web01"}');
    expect([broken.status, await broken.json()]).toEqual([500, { error: "internal error" }]);
    expect(lines.at(-1)).toMatchObject({ level: "error", msg: "hook failed" });
  });

  it("order - the token is checked before the body: an unauthenticated post announcing a huge body gets 401, not 413", async () => {
    let published = 0;
    const url = await start({ publish: async () => (published++, { stream: "S", seq: 1, duplicate: false }) });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${url}/v1/backup`, { method: "POST", headers: { "content-type": "application/json", "content-length": String(10 * 1024 * 1024) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.write("{"); // the rest never comes: the answer must not wait for it
    });
    expect(status).toBe(401);
    expect((await post(url, "x".repeat(2048))).status).toBe(413);
    expect(published).toBe(0);
  });

  it("healthz - 503 with Retry-After while the bus is down; POST to it is 405", async () => {
    let up = false;
    const url = await start({ publish: async () => ({ stream: "S", seq: 1, duplicate: false }) }, () => up);
    const down = await fetch(`${url}/healthz`);
    expect([down.status, down.headers.get("retry-after"), await down.json()]).toEqual([503, "5", { ok: false, nats: "disconnected" }]);
    up = true;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const wrong = await fetch(`${url}/healthz`, { method: "POST" });
    expect([wrong.status, wrong.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
  });
});
