import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FAST_TIMINGS, RawApi, startTestLab, type TestLab } from "../lab/test-support.ts";

// ovirt-api.md §1-3 and §12 (SSO, auth, pki-resource, version, API root, JSON conventions, 404/401).
let t: TestLab;
let api: RawApi;

beforeAll(async () => {
  t = await startTestLab({ timings: FAST_TIMINGS });
  api = new RawApi(t.prd);
});
afterAll(async () => {
  await api?.close();
  await t?.stop();
});

describe("lab engine SSO and auth", () => {
  it("sso - password grant returns a bearer token with exp as a string", async () => {
    const r = await api.sso();
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toMatch(/application\/json/);
    expect(r.json).toMatchObject({ token_type: "bearer", exp: "9223372036854775807" });
    expect(typeof r.json.access_token).toBe("string");
    expect(r.json.scope).toContain("ovirt-app-api");
  });

  it("sso - Accept must be exactly application/json", async () => {
    for (const accept of ["application/json, text/plain", "*/*", "application/xml"]) {
      const r = await api.sso(undefined, undefined, accept);
      expect(r.status).toBe(400);
      expect(r.json).toEqual({ error_code: "invalid_request", error: "Missing parameter: 'Accept Header'" });
    }
  });

  it("sso - bad credentials give 400 access_denied with the engine's message", async () => {
    const r = await api.sso("admin@internal", "wrong");
    expect(r.status).toBe(400);
    expect(r.json.error_code).toBe("access_denied");
    expect(r.json.error).toBe(
      "Cannot authenticate user 'admin@internal': Unable to log in. Verify your login information or contact the system administrator..",
    );
  });

  it("sso - the Keycloak name form admin@ovirt@internalsso splits at the last @", async () => {
    const ok = await api.sso("admin@ovirt@internalsso", t.prd.password);
    expect(ok.status).toBe(200);
    const bad = await api.sso("admin@ovirt@internalsso", "nope");
    expect(bad.json.error).toMatch(/^Cannot authenticate user 'admin@ovirt@internalsso'/);
  });

  it("sso - other grant types and scopes are refused with OAuth codes", async () => {
    const form = (o: Record<string, string>) =>
      api.raw("POST", `${t.prd.url}/ovirt-engine/sso/oauth/token`, {
        headers: { accept: "application/json", "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(o).toString(),
      });
    const grant = await form({ grant_type: "client_credentials", scope: "ovirt-app-api" });
    expect(grant.json.error_code).toBe("unsupported_grant_type");
    const scope = await form({ grant_type: "password", scope: "openid", username: "admin@internal", password: "x" });
    expect(scope.status).toBe(400);
    expect(scope.json).toMatchObject({ error: "invalid_scope" });
    expect(scope.json.error_description).toBeTruthy();
  });

  it("auth - missing or wrong credentials give 401 with a non-JSON body and WWW-Authenticate Basic", async () => {
    const variants: Array<Record<string, string>> = [
      {},
      { authorization: "Bearer nonsense" },
      { authorization: `Basic ${Buffer.from("admin@internal:bad").toString("base64")}` },
    ];
    for (const headers of variants) {
      const r = await api.raw("GET", `${t.prd.url}/ovirt-engine/api/vms`, { headers: { accept: "application/json", ...headers } });
      expect(r.status).toBe(401);
      expect(r.headers["www-authenticate"]).toBe('Basic realm="RESTAPI"');
      expect(r.json).toBeUndefined();
      expect(r.headers["content-type"]).not.toMatch(/json/);
    }
  });

  it("auth - Basic credentials work; Prefer persistent-auth sets a JSESSIONID that authenticates later calls", async () => {
    const basic = `Basic ${Buffer.from(`admin@internal:${t.prd.password}`).toString("base64")}`;
    const r = await api.raw("GET", `${t.prd.url}/ovirt-engine/api`, {
      headers: { authorization: basic, accept: "application/json", prefer: "persistent-auth" },
    });
    expect(r.status).toBe(200);
    const cookie = String(r.headers["set-cookie"]).split(";")[0]!;
    expect(cookie).toMatch(/^JSESSIONID=/);
    const again = await api.raw("GET", `${t.prd.url}/ovirt-engine/api`, { headers: { cookie, accept: "application/json" } });
    expect(again.status).toBe(200);
  });

  it("auth - revoked tokens get 401; a fresh token works (re-authenticate once)", async () => {
    const mine = new RawApi(t.prd);
    try {
      expect((await mine.get("/vms")).status).toBe(200);
      t.prd.control.revokeTokens();
      api.forgetToken(); // the shared client's token went too
      expect((await mine.get("/vms")).status).toBe(401);
      mine.forgetToken();
      expect((await mine.get("/vms")).status).toBe(200);
    } finally {
      await mine.close();
    }
  });
});

describe("lab engine PKI and API root", () => {
  it("pki-resource - serves the CA over HTTPS and plain HTTP without auth", async () => {
    const path = "/ovirt-engine/services/pki-resource?resource=ca-certificate&format=X509-PEM-CA";
    const plain = await request(`${t.prd.plainUrl}${path}`);
    expect(plain.statusCode).toBe(200);
    expect(plain.headers["content-type"]).toBe("application/x-x509-ca-cert");
    const pem = await plain.body.text();
    expect(pem).toBe(t.prd.caPem);
    expect(pem).toBe(await readFile(t.prd.caFile, "utf8"));
    expect(new X509Certificate(pem).ca).toBe(true);
    const tls = await api.raw("GET", `${t.prd.url}${path}`);
    expect(tls.status).toBe(200);
    expect(tls.text).toBe(pem);
    // The engine certificate is signed by that CA and names 127.0.0.1.
    const cert = await api.raw("GET", `${t.prd.url}/ovirt-engine/services/pki-resource?resource=engine-certificate&format=X509-PEM`);
    const x = new X509Certificate(cert.text);
    expect(x.verify(new X509Certificate(pem).publicKey)).toBe(true);
    expect(x.checkIP("127.0.0.1")).toBe("127.0.0.1");
    const ssh = await api.raw("GET", `${t.prd.url}/ovirt-engine/services/pki-resource?resource=engine-certificate&format=OPENSSH-PUBKEY`);
    expect(ssh.text).toMatch(/^ssh-rsa AAAA/);
  });

  it("pki-resource - an unknown resource or format gives 400", async () => {
    const bad1 = await request(`${t.prd.plainUrl}/ovirt-engine/services/pki-resource?resource=nope&format=X509-PEM-CA`);
    expect(bad1.statusCode).toBe(400);
    expect(await bad1.body.text()).toContain("Resource 'nope' is invalid");
    const bad2 = await request(`${t.prd.plainUrl}/ovirt-engine/services/pki-resource?resource=ca-certificate&format=DER`);
    expect(bad2.statusCode).toBe(400);
    expect(await bad2.body.text()).toContain("Format 'DER' is invalid");
    // The plain listener serves nothing else.
    expect((await request(`${t.prd.plainUrl}/ovirt-engine/api`)).statusCode).toBe(404);
  });

  it("api root - product_info with string version fields, epoch-ms time, links to the collections", async () => {
    const r = await api.get("");
    expect(r.status).toBe(200);
    expect(r.json.product_info).toMatchObject({ name: "oVirt Engine", version: { major: "4", minor: "5" } });
    expect(typeof r.json.product_info.version.full_version).toBe("string");
    expect(typeof r.json.time).toBe("number");
    expect(r.json.summary.vms.total).toMatch(/^\d+$/);
    const rels = (r.json.link as Array<{ rel: string; href: string }>).map((l) => l.rel);
    for (const rel of ["vms", "disks", "imagetransfers", "events", "storagedomains", "clusters", "hosts", "vnicprofiles"]) {
      expect(rels).toContain(rel);
    }
    expect(r.json.authenticated_user.href).toMatch(/^\/ovirt-engine\/api\/users\//);
  });

  it("version - /v4 path and Version: 4 work; another version gives 400", async () => {
    const token = await api.bearer();
    const h = { authorization: `Bearer ${token}`, accept: "application/json" };
    expect((await api.raw("GET", `${t.prd.url}/ovirt-engine/api/v4/clusters`, { headers: h })).status).toBe(200);
    expect((await api.raw("GET", `${t.prd.url}/ovirt-engine/api/clusters`, { headers: h })).status).toBe(200);
    expect((await api.raw("GET", `${t.prd.url}/ovirt-engine/api/v3/clusters`, { headers: h })).status).toBe(400);
    expect((await api.raw("GET", `${t.prd.url}/ovirt-engine/api/clusters`, { headers: { ...h, version: "3" } })).status).toBe(400);
  });

  it("json - empty collections are {}, one-element collections keyed by the singular name", async () => {
    expect((await api.get("/vms")).json).toEqual({});
    expect((await api.get("/imagetransfers")).json).toEqual({});
    const c = await api.get("/clusters");
    expect(Object.keys(c.json)).toEqual(["cluster"]);
    expect(c.json.cluster[0]).toMatchObject({ name: "Default", version: { major: "4", minor: "7" } });
    const sd = await api.get("/storagedomains?search=name%3Ddata");
    expect(sd.json.storage_domain).toHaveLength(1);
    expect(sd.json.storage_domain[0].available).toMatch(/^\d+$/);
    const hosts = await api.get("/hosts");
    expect(hosts.json.host).toHaveLength(1);
    expect(hosts.json.host[0].status).toBe("up");
    expect((await api.get("/vnicprofiles")).json.vnic_profile[0].name).toBe("ovirtmgmt");
  });

  it("404 - a missing or malformed id is a bare 404 without a body", async () => {
    for (const p of ["/vms/6d5c3e8a-1111-4a2b-9c3d-000000000001", "/vms/not-a-uuid", "/disks/6d5c3e8a-1111-4a2b-9c3d-000000000001", "/nosuchcollection"]) {
      const r = await api.get(p);
      expect(r.status).toBe(404);
      expect(r.text).toBe("");
    }
  });

  it("faults - a malformed enum is 400 Invalid value; missing input is 400 Incomplete parameters", async () => {
    const sd = (await api.get("/storagedomains?search=name%3Ddata")).json.storage_domain[0].id;
    const r1 = await api.post("/disks", { format: "vmdk", provisioned_size: "1048576", storage_domains: { storage_domain: [{ id: sd }] } });
    expect(r1.status).toBe(400);
    expect(r1.json).toEqual({ reason: "Invalid value", detail: "vmdk is not a member of DiskFormat" });
    const r2 = await api.post("/disks", { name: "x" });
    expect(r2.status).toBe(400);
    expect(r2.json).toEqual({ reason: "Incomplete parameters", detail: "Disk [provisionedSize|size, format] required for add" });
  });

  it("accept - the lab answers JSON only and says so when asked for XML", async () => {
    const r = await api.get("/vms", { accept: "application/xml" });
    expect(r.status).toBe(406);
  });

  it("http faults - injected 503s hit matching API paths the given number of times", async () => {
    t.prd.control.faults.httpErrors(503, 2, "^/ovirt-engine/api/vms");
    expect((await api.get("/vms")).status).toBe(503);
    expect((await api.get("/clusters")).status).toBe(200);
    expect((await api.get("/vms")).status).toBe(503);
    expect((await api.get("/vms")).status).toBe(200);
  });
});
