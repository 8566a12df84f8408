import { describe, expect, it } from "vitest";
import { Router } from "./router.ts";

describe("router", () => {
  it("Router.match - params, literal segments, unknown path and wrong method", () => {
    const r = new Router();
    const h = () => ({ status: 200 });
    r.get("/vms/:vm/backups/:id", h).post("/vms/:vm/backups/:id/finalize", h).get("/", h);
    const m = r.match("GET", "/vms/a/backups/b");
    expect(m && m !== "method" ? m.params : undefined).toEqual({ vm: "a", id: "b" });
    expect(r.match("POST", "/vms/a/backups/b")).toBe("method");
    expect(r.match("GET", "/vms/a/backups")).toBeUndefined();
    expect(r.match("POST", "/vms/a/backups/b/finalize")).toMatchObject({ params: { vm: "a", id: "b" } });
    expect(r.match("GET", "/")).toMatchObject({ params: {} });
  });
});
