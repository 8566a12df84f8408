import { inspect } from "node:util";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { PermanentError, TransientError } from "../../contracts/errors.ts";
import { createEngineClient, type EngineClient } from "./client.ts";
import {
  AuthError,
  EngineConflictError,
  EngineFaultError,
  EngineProtocolError,
  EngineServerError,
  EngineTlsError,
  EngineUnavailableError,
  NotFoundError,
} from "./errors.ts";
import { startFakeEngine, type FakeEngine, type Route } from "./testing/fake-engine.ts";
import { makeTestPki, type TestPki } from "./testing/test-pki.ts";
import { caught, errorText } from "../../test/harness/error-text.ts";

const PASSWORD = "secret-pw";
const VM_ID = "6d5c3e8a-1111-4a2b-9c3d-000000000001";

let pki: TestPki;
beforeAll(async () => {
  pki = await makeTestPki();
});

let engine: FakeEngine | undefined;
let client: EngineClient | undefined;
afterEach(async () => {
  await client?.close();
  await engine?.close();
  client = undefined;
  engine = undefined;
});

async function setup(route: Route, o: { tls?: boolean; reject401?: number; retryDelayMs?: number } = {}) {
  engine = await startFakeEngine({
    route,
    tls: o.tls === false ? undefined : { cert: pki.cert, key: pki.key },
    reject401: o.reject401,
  });
  client = createEngineClient({
    url: engine.url,
    user: "admin@internal",
    password: PASSWORD,
    caPem: o.tls === false ? undefined : pki.caPem,
    correlationId: "run-1",
    retryDelayMs: o.retryDelayMs ?? 5,
  });
  return { engine, client };
}

const vmJson = {
  id: VM_ID,
  href: `/ovirt-engine/api/vms/${VM_ID}`,
  name: "web01",
  status: "up",
  memory: "4294967296",
  stateless: "false",
  creation_time: 1699990000000,
  cluster: { id: "c1", href: "/ovirt-engine/api/clusters/c1" },
};

describe("engine client", () => {
  it("engine client - logs in with the SSO form and Accept exactly application/json", async () => {
    const { engine: e, client: c } = await setup(() => ({ status: 200, json: { vm: [vmJson] } }));
    await c.vms.list();
    expect(e.logins).toHaveLength(1);
    const login = e.logins[0]!;
    expect(login.method).toBe("POST");
    expect(login.headers.accept).toBe("application/json");
    expect(login.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(login.body).toContain("username=admin%40internal");
    const form = new URLSearchParams(login.body);
    expect(form.get("grant_type")).toBe("password");
    expect(form.get("scope")).toBe("ovirt-app-api");
    expect(form.get("password")).toBe(PASSWORD);
  });

  it("engine client - sends Bearer, Version 4, JSON Accept and the Correlation-Id on every call", async () => {
    const { engine: e, client: c } = await setup((r) =>
      r.method === "GET" ? { status: 200, json: vmJson } : { status: 200, json: { status: "complete" } },
    );
    await c.vms.get(VM_ID);
    await c.vms.start(VM_ID);
    const [get, post] = e.requests;
    for (const r of [get!, post!]) {
      expect(r.headers.authorization).toMatch(/^Bearer tok-1-/);
      expect(r.headers.version).toBe("4");
      expect(r.headers.accept).toBe("application/json");
      expect(r.headers["correlation-id"]).toBe("run-1");
    }
    expect(get!.headers["content-type"]).toBeUndefined();
    expect(post!.headers["content-type"]).toBe("application/json");
    expect(post!.json).toEqual({});
    expect(post!.path).toBe(`/vms/${VM_ID}/start`);
  });

  it("engine client - withCorrelationId shares the token and changes only the header", async () => {
    const { engine: e, client: c } = await setup(() => ({ status: 200, json: vmJson }));
    const run = c.withCorrelationId("run/2 with spaces and a very long tail that goes past 36 chars");
    await c.vms.get(VM_ID);
    await run.vms.get(VM_ID);
    await run.close(); // a view: does not close the shared pool
    await c.vms.get(VM_ID);
    expect(e.logins).toHaveLength(1);
    expect(e.requests[1]!.headers["correlation-id"]).toBe("run2withspacesandaverylongtailthatgo");
    expect(e.requests[2]!.headers["correlation-id"]).toBe("run-1");
  });

  it("engine client - on 401 logs in again once and repeats the call once", async () => {
    const { engine: e, client: c } = await setup(() => ({ status: 200, json: vmJson }));
    await c.vms.get(VM_ID);
    e.revokeTokens();
    const vm = await c.vms.get(VM_ID);
    expect(vm.name).toBe("web01");
    expect(e.logins).toHaveLength(2);
    expect(e.requests).toHaveLength(3);
    expect(e.requests[2]!.headers.authorization).toMatch(/^Bearer tok-2-/);
  });

  it("engine client - a second 401 after a fresh login is an AuthError", async () => {
    const { engine: e, client: c } = await setup(() => ({ status: 200, json: vmJson }), { reject401: 2 });
    const err = await caught(c.vms.get(VM_ID));
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).oauthError).toBe("rejected_token");
    expect(e.logins).toHaveLength(2);
    expect(e.requests).toHaveLength(2);
  });

  it("engine client - concurrent calls share one login", async () => {
    const { engine: e, client: c } = await setup(() => ({ status: 200, json: vmJson }));
    await Promise.all([c.vms.get(VM_ID), c.vms.get(VM_ID), c.vms.get(VM_ID)]);
    expect(e.logins).toHaveLength(1);
  });

  it("engine client - SSO {error_code, error} becomes an AuthError without the password", async () => {
    const { client: c } = await setup(() => ({ status: 200, json: vmJson }));
    const bad = createEngineClient({ url: engine!.url, user: "admin@internal", password: "wrong-Pa55word!", caPem: pki.caPem });
    try {
      const err = await caught(bad.vms.get(VM_ID));
      expect(err).toBeInstanceOf(AuthError);
      expect(err).toBeInstanceOf(PermanentError);
      expect((err as AuthError).oauthError).toBe("access_denied");
      expect((err as Error).message).toContain("Cannot authenticate user 'admin@internal'");
      expect(errorText(err)).not.toContain("wrong-Pa55word!");
    } finally {
      await bad.close();
    }
    expect(c.user).toBe("admin@internal");
  });

  it("engine client - SSO {error, error_description} becomes an AuthError", async () => {
    const { engine: e, client: c } = await setup(() => ({ status: 200, json: vmJson }));
    e.failLogins(1, 400, { error: "invalid_grant", error_description: "The provided authorization grant is invalid" });
    const err = await caught(c.login());
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).oauthError).toBe("invalid_grant");
    expect((err as Error).message).toContain("authorization grant is invalid");
  });

  it("engine client - SSO 5xx is transient", async () => {
    const { engine: e, client: c } = await setup(() => ({ status: 200, json: vmJson }));
    e.failLogins(1, 503, { error: "server_error" });
    const err = await caught(c.login());
    expect(err).toBeInstanceOf(EngineServerError);
    expect(err).toBeInstanceOf(TransientError);
  });

  it("engine client - faults keep the engine's detail and map status to the error class", async () => {
    const detail = "[Cannot backup VM. Checkpoint ID 3f2 doesn't exist.]";
    const { client: c } = await setup((r) => {
      if (r.path.endsWith("/backups")) return { status: 400, json: { reason: "Operation Failed", detail } };
      if (r.path.endsWith("/finalize")) {
        return {
          status: 409,
          json: { reason: "Operation Failed", detail: "[Cannot stop VM backup. There is an active image transfer for VM backup]" },
        };
      }
      if (r.path === "/vms") return { status: 500, json: { reason: "Operation Failed", detail: "[Internal Engine Error]" } };
      return undefined; // 404, empty body
    });
    const e400 = await caught(c.backups.start(VM_ID, { diskIds: ["d1"], fromCheckpointId: "3f2" }));
    expect(e400).toBeInstanceOf(EngineFaultError);
    expect(e400).toBeInstanceOf(PermanentError);
    expect((e400 as EngineFaultError).status).toBe(400);
    expect((e400 as EngineFaultError).detail).toBe(detail);
    expect((e400 as EngineFaultError).reason).toBe("Operation Failed");

    const e409 = await caught(c.backups.finalize(VM_ID, "b1"));
    expect(e409).toBeInstanceOf(EngineConflictError);
    expect(e409).toBeInstanceOf(TransientError);
    expect((e409 as EngineConflictError).detail).toContain("active image transfer");

    const e500 = await caught(c.vms.createFromOvf({ ovf: "<ovf/>", cluster: { id: "c1" } }));
    expect(e500).toBeInstanceOf(EngineServerError);

    const e404 = await caught(c.disks.get("nope"));
    expect(e404).toBeInstanceOf(NotFoundError);
    expect((e404 as NotFoundError).status).toBe(404);
    expect((e404 as NotFoundError).code).toBe("ENGINE_NOT_FOUND");
  });

  it("engine client - a GET is retried on 503, a POST is not", async () => {
    let gets = 0;
    let posts = 0;
    const { client: c } = await setup((r) => {
      if (r.method === "GET") return ++gets < 3 ? { status: 503, text: "busy" } : { status: 200, json: vmJson };
      posts++;
      return { status: 503, text: "busy" };
    });
    const vm = await c.vms.get(VM_ID);
    expect(vm.id).toBe(VM_ID);
    expect(gets).toBe(3);
    await expect(c.vms.stop(VM_ID)).rejects.toBeInstanceOf(EngineServerError);
    expect(posts).toBe(1);
  });

  it("engine client - decodes string numbers and booleans, epoch dates, {} and nested collections", async () => {
    const { client: c } = await setup((r) => {
      if (r.path === "/vms") return { status: 200, json: {} };
      if (r.path === `/vms/${VM_ID}/diskattachments`) {
        return {
          status: 200,
          json: {
            disk_attachment: [
              {
                id: "d1",
                active: "true",
                bootable: "TRUE",
                interface: "virtio_scsi",
                pass_discard: "0",
                disk: { id: "d1", href: "/ovirt-engine/api/disks/d1" },
              },
            ],
          },
        };
      }
      if (r.path === "/disks/d1") {
        return {
          status: 200,
          json: {
            id: "d1",
            alias: "web01_disk1",
            format: "cow",
            sparse: "true",
            provisioned_size: "10737418240",
            actual_size: 1048576,
            status: "ok",
            storage_domains: { storage_domain: [{ id: "sd1" }] },
          },
        };
      }
      if (r.path === `/vms/${VM_ID}`) return { status: 200, json: vmJson };
      return undefined;
    });
    expect(await c.vms.search("name=nothing")).toEqual([]);
    const vm = await c.vms.get(VM_ID);
    expect(vm.memory).toBe(4294967296);
    expect(vm.stateless).toBe(false);
    expect(vm.creation_time).toEqual(new Date(1699990000000));
    const [a] = await c.diskAttachments.listWithDisks(VM_ID);
    expect(a!.attachment.active).toBe(true);
    expect(a!.attachment.bootable).toBe(true);
    expect(a!.attachment.pass_discard).toBe(false);
    expect(a!.disk.provisioned_size).toBe(10737418240);
    expect(a!.disk.sparse).toBe(true);
    expect(a!.disk.storage_domains).toEqual([{ id: "sd1" }]);
  });

  it("engine client - a wrongly keyed or malformed answer is a protocol error, not an empty list", async () => {
    const { client: c } = await setup((r) => {
      if (r.path === "/vms") return { status: 200, json: { vms: [vmJson] } };
      return { status: 200, json: { ...vmJson, memory: "lots" } };
    });
    await expect(c.vms.list()).rejects.toBeInstanceOf(EngineProtocolError);
    const err = await caught(c.vms.get(VM_ID));
    expect(err).toBeInstanceOf(EngineProtocolError);
    expect((err as Error).message).toContain("memory");
  });

  it("engine client - findByName matches exactly and sends the engine search", async () => {
    const { engine: e, client: c } = await setup(() => ({
      status: 200,
      json: { vm: [vmJson, { ...vmJson, id: "other", name: "web011" }] },
    }));
    const vm = await c.vms.findByName("web01");
    expect(vm?.id).toBe(VM_ID);
    expect(e.requests[0]!.query.get("search")).toBe("name=web01");
    expect(await c.vms.findByName("web0")).toBeUndefined();
  });

  it("engine client - getOvf reads initialization.configuration.data with all_content", async () => {
    const ovf = "<?xml version='1.0'?><ovf:Envelope/>";
    const { engine: e, client: c } = await setup(() => ({
      status: 200,
      json: { ...vmJson, initialization: { configuration: { type: "ovf", data: ovf } } },
    }));
    expect(await c.vms.getOvf(VM_ID)).toBe(ovf);
    expect(e.requests[0]!.query.get("all_content")).toBe("true");
  });

  it("engine client - request bodies follow the reference shapes", async () => {
    const { engine: e, client: c } = await setup((r) => {
      if (r.path === "/vms") return { status: 201, json: { ...vmJson, id: "new", name: "web01-restored" } };
      if (r.path.endsWith("/backups")) return { status: 201, json: { id: "b1", phase: "initializing" } };
      if (r.path === "/imagetransfers") return { status: 201, json: { id: "t1", phase: "initializing" } };
      if (r.path.endsWith("/snapshots")) return { status: 202, json: { id: "s1", snapshot_status: "locked" } };
      if (r.path === "/disks") return { status: 202, json: { id: "d9", provisioned_size: "1048576", status: "locked" } };
      if (r.path.endsWith("/diskattachments")) return { status: 201, json: { id: "d9", disk: { id: "d9" } } };
      return undefined;
    });
    await c.vms.createFromOvf({ ovf: "<ovf/>", cluster: { name: "Default" }, name: "web01-restored" });
    await c.backups.start(VM_ID, { diskIds: ["d1", "d2"], fromCheckpointId: "cp1", id: "b1", description: "ferry run-1" });
    await c.imageTransfers.createDownload({ diskId: "d1", backupId: "b1", inactivityTimeout: 120 });
    await c.imageTransfers.createDownload({ snapshotId: "vol-1" });
    await c.imageTransfers.createUpload({ diskId: "d9" });
    await c.snapshots.create(VM_ID, { description: "ferry-snap", diskIds: ["d1"] });
    await c.disks.create({ name: "restored", provisionedSize: 1048576, format: "cow", backup: "incremental", storageDomain: { id: "sd1" } });
    await c.diskAttachments.attach(VM_ID, { diskId: "d9", bootable: true });
    const bodies = e.requests.map((r) => r.json);
    expect(bodies[0]).toEqual({
      cluster: { name: "Default" },
      name: "web01-restored",
      initialization: { configuration: { type: "ovf", data: "<ovf/>" }, regenerate_ids: "true" },
    });
    expect(bodies[1]).toEqual({
      id: "b1",
      from_checkpoint_id: "cp1",
      description: "ferry run-1",
      disks: { disk: [{ id: "d1" }, { id: "d2" }] },
    });
    expect(bodies[2]).toEqual({
      disk: { id: "d1" },
      backup: { id: "b1" },
      direction: "download",
      format: "raw",
      inactivity_timeout: "120",
    });
    expect(bodies[3]).toEqual({ snapshot: { id: "vol-1" }, direction: "download", format: "raw" });
    expect(bodies[4]).toEqual({ disk: { id: "d9" }, direction: "upload", format: "raw", timeout_policy: "cancel" });
    expect(bodies[5]).toEqual({
      description: "ferry-snap",
      persist_memorystate: "false",
      disk_attachments: { disk_attachment: [{ disk: { id: "d1" } }] },
    });
    expect(bodies[6]).toMatchObject({
      name: "restored",
      format: "cow",
      sparse: "true",
      provisioned_size: "1048576",
      backup: "incremental",
      storage_domains: { storage_domain: [{ id: "sd1" }] },
    });
    expect(bodies[7]).toEqual({
      disk: { id: "d9" },
      interface: "virtio_scsi",
      bootable: "true",
      active: "true",
      pass_discard: "false",
    });
  });

  it("engine client - events get origin ferry and a new custom_id after a duplicate", async () => {
    const seen: string[] = [];
    const { client: c } = await setup((r) => {
      const body = r.json as { custom_id: string };
      seen.push(body.custom_id);
      if (seen.length === 1) {
        return { status: 400, json: { reason: "Operation Failed", detail: "[External Event with this custom id already exists.]" } };
      }
      return { status: 201, json: { id: "77", index: "77", severity: "alert", origin: "ferry", custom_id: body.custom_id, time: 1714521600000 } };
    });
    const ev = await c.events.post({ description: "Backup of web01 failed", severity: "alert", vmId: VM_ID });
    expect(seen).toHaveLength(2);
    expect(seen[0]).not.toBe(seen[1]);
    expect(Number(seen[1])).toBeGreaterThan(1_600_000_000);
    expect(ev.index).toBe(77);
    expect(ev.origin).toBe("ferry");
  });

  it("engine client - events list passes from, max and search", async () => {
    const { engine: e, client: c } = await setup(() => ({ status: 200, json: { event: [{ id: "5", index: "5", code: "10790" }] } }));
    const list = await c.events.list({ from: 4, max: 10 });
    expect(list[0]!.code).toBe(10790);
    expect(e.requests[0]!.query.get("from")).toBe("4");
    expect(e.requests[0]!.query.get("max")).toBe("10");
  });

  it("engine client - TLS is verified with the engine CA", async () => {
    const { engine: e } = await setup(() => ({ status: 200, json: vmJson }));
    const wrong = createEngineClient({ url: e.url, user: "admin@internal", password: PASSWORD, caPem: pki.otherCaPem });
    const err = await caught(wrong.login());
    await wrong.close();
    expect(err).toBeInstanceOf(EngineTlsError);
    expect(err).toBeInstanceOf(PermanentError);
    const insecure = createEngineClient({ url: e.url, user: "admin@internal", password: PASSWORD, insecure: true });
    expect(insecure.insecure).toBe(true);
    expect((await insecure.vms.get(VM_ID)).id).toBe(VM_ID);
    await insecure.close();
  });

  it("engine client - an unreachable engine is a transient EngineUnavailableError", async () => {
    const { engine: e } = await setup(() => ({ status: 200, json: vmJson }));
    const url = e.url;
    await e.close();
    engine = undefined;
    const c = createEngineClient({ url, user: "admin@internal", password: PASSWORD, caPem: pki.caPem, getRetries: 0 });
    const err = await caught(c.vms.get(VM_ID));
    await c.close();
    expect(err).toBeInstanceOf(EngineUnavailableError);
    expect(err).toBeInstanceOf(TransientError);
  });

  it("engine client - an aborted call rejects with the signal's reason", async () => {
    const { client: c } = await setup(async () => {
      await new Promise((r) => setTimeout(r, 2000));
      return { status: 200, json: vmJson };
    });
    await c.login();
    const reason = new Error("stop now");
    const ac = new AbortController();
    setTimeout(() => ac.abort(reason), 50);
    await expect(c.vms.get(VM_ID, { signal: ac.signal })).rejects.toBe(reason);
  });

  it("engine client - the password and token never show in toString, inspect, JSON or errors", async () => {
    const { engine: e, client: c } = await setup((r) =>
      r.path === "/vms" ? { status: 500, text: "boom" } : { status: 400, json: { reason: "Operation Failed", detail: "[bad]" } },
    );
    await c.login();
    const token = "tok-1-aaaaaaaaaaaa";
    const views = [String(c), inspect(c, { depth: 10, showHidden: true }), JSON.stringify(c)];
    for (const v of views) {
      expect(v).not.toContain(PASSWORD);
      expect(v).not.toContain(token);
    }
    expect(String(c)).toContain("admin@internal");
    const errors = [await caught(c.vms.list()), await caught(c.vms.start(VM_ID))];
    e.revokeTokens();
    e.failLogins(1, 400, { error_code: "access_denied", error: `password=${PASSWORD} token ${token}` });
    errors.push(await caught(c.vms.start(VM_ID)));
    for (const err of errors) {
      const text = errorText(err);
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain(token);
    }
  });

  it("engine client - rejects a URL with credentials and accepts /ovirt-engine/api suffixes", async () => {
    expect(() => createEngineClient({ url: "https://u:p@engine", user: "a", password: "b" })).toThrow(/credentials/);
    const { engine: e } = await setup(() => ({ status: 200, json: vmJson }));
    const c = createEngineClient({ url: `${e.url}/ovirt-engine/api/`, user: "admin@internal", password: PASSWORD, caPem: pki.caPem });
    expect((await c.vms.get(VM_ID)).id).toBe(VM_ID);
    expect(c.url).toBe(e.url);
    await c.close();
  });

  it("engine client - apiRoot and version read product_info", async () => {
    const { engine: e, client: c } = await setup((r) =>
      r.path === ""
        ? {
            status: 200,
            json: {
              product_info: {
                name: "oVirt Engine",
                vendor: "ovirt.org",
                version: { major: "4", minor: "5", build: "5", revision: "1", full_version: "4.5.5-1.el8" },
              },
              time: 1714521600000,
            },
          }
        : undefined,
    );
    expect(await c.version()).toEqual({ major: 4, minor: 5, full: "4.5.5-1.el8" });
    expect((await c.apiRoot()).product_info?.name).toBe("oVirt Engine");
    expect(e.requests[0]!.path).toBe("");
  });
});

