import { describe, expect, it } from "vitest";
import { EngineServerError, EngineUnavailableError, VmLockedError } from "../adapters/ovirt/mod.ts";
import { withOutagePatience } from "./engine-port.ts";

const fault = (status: number) => ({ status, reason: "x", detail: "", method: "GET", path: "/vms" });
const down = () => new EngineUnavailableError("prd", "GET /vms", new Error("connect ECONNREFUSED"));

/** A port whose call fails with `errors` in order, then answers. */
function flaky(errors: unknown[]) {
  let calls = 0;
  return {
    name: "prd",
    get calls() {
      return calls;
    },
    async findVm(v: string) {
      calls++;
      const e = errors.shift();
      if (e) throw e;
      return { id: "vm-1", name: v };
    },
  };
}

describe("withOutagePatience", () => {
  it("engine outage - unreachable and 502/503/504 are waited out, then the call's answer comes back", async () => {
    const port = flaky([down(), new EngineServerError(fault(503)), new EngineServerError(fault(502)), new EngineServerError(fault(504))]);
    const waits: number[] = [];
    const p = withOutagePatience(port, { budgetMs: 60_000, maxDelayMs: 10, onWait: (w) => waits.push(w.delayMs) });
    expect(await p.findVm("web01")).toEqual({ id: "vm-1", name: "web01" });
    expect(port.calls).toBe(5);
    expect(waits).toEqual([10, 10, 10, 10]);
    expect(p.name).toBe("prd");
  });

  it("engine outage - an error that is not an outage (500, a refusal) is thrown at once", async () => {
    const p500 = flaky([new EngineServerError(fault(500))]);
    await expect(withOutagePatience(p500, { budgetMs: 60_000 }).findVm("a")).rejects.toBeInstanceOf(EngineServerError);
    expect(p500.calls).toBe(1);
    const locked = flaky([new VmLockedError(fault(409))]);
    await expect(withOutagePatience(locked, { budgetMs: 60_000 }).findVm("a")).rejects.toBeInstanceOf(VmLockedError);
    expect(locked.calls).toBe(1);
  });

  it("engine outage - past the budget the outage error is thrown", async () => {
    const port = flaky(Array.from({ length: 1000 }, down));
    const started = Date.now();
    await expect(withOutagePatience(port, { budgetMs: 300, maxDelayMs: 40 }).findVm("a")).rejects.toBeInstanceOf(EngineUnavailableError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(port.calls).toBeGreaterThan(2);
  });

  it("engine outage - an abort (shutdown) ends the wait with the outage error", async () => {
    const port = flaky(Array.from({ length: 1000 }, down));
    const ac = new AbortController();
    const call = withOutagePatience(port, { budgetMs: 600_000, signal: ac.signal }).findVm("a");
    setTimeout(() => ac.abort(new Error("shutdown")), 50);
    await expect(call).rejects.toBeInstanceOf(EngineUnavailableError);
    expect(port.calls).toBe(1);
  });
});
