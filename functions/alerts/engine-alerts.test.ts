import { describe, expect, it } from "vitest";
import { EngineServerError, EngineTlsError, engineFaultError, type PostEvent } from "../../adapters/ovirt/mod.ts";
import { createPostAlert, type EventsClient } from "./engine-alerts.ts";

const fault = (status: number, detail: string) => ({ status, reason: "Operation Failed", detail, method: "POST", path: "/events" });

function client(answers: (e: PostEvent) => void): EventsClient & { calls: PostEvent[] } {
  const calls: PostEvent[] = [];
  return { calls, events: { post: async (e) => (calls.push(e), answers(e)) } };
}

describe("alerts engine edge", () => {
  it("alerts - posts origin ferry with the custom_id and VM link", async () => {
    const c = client(() => undefined);
    const post = createPostAlert(new Map([["prd", c]]));
    expect(await post("prd", { description: "d", severity: "alert", customId: 7, vmId: "vm-1" })).toBe("posted");
    expect(c.calls).toEqual([{ description: "d", severity: "alert", origin: "ferry", customId: 7, vmId: "vm-1" }]);
  });

  it("alerts - 400 'custom id already exists' is done (duplicate); 5xx propagates; unknown engine is UNKNOWN_ENGINE", async () => {
    const dup = client(() => {
      throw engineFaultError(fault(400, "[External Event with this custom id already exists.]"));
    });
    const down = client(() => {
      throw new EngineServerError(fault(503, "Service Unavailable"));
    });
    const post = createPostAlert(new Map([["prd", dup], ["dr", down]]));
    expect(await post("prd", { description: "d", severity: "alert", customId: 7 })).toBe("duplicate");
    await expect(post("dr", { description: "d", severity: "alert", customId: 7 })).rejects.toBeInstanceOf(EngineServerError);
    await expect(post("qa", { description: "d", severity: "alert", customId: 7 })).rejects.toMatchObject({ code: "UNKNOWN_ENGINE" });
  });

  it("alerts - another 4xx with a VM link: posted once more without the link", async () => {
    const c = client((e) => {
      if (e.vmId) throw engineFaultError(fault(400, "[Cannot add Event. VM doesn't exist.]"));
    });
    const post = createPostAlert(new Map([["prd", c]]));
    expect(await post("prd", { description: "d", severity: "alert", customId: 8, vmId: "gone" })).toBe("posted");
    expect(c.calls.map((x) => x.vmId)).toEqual(["gone", undefined]);
  });

  it("alerts - a TLS verification failure is EngineUntrustedError (the handler's cue to post elsewhere), tried once", async () => {
    const c = client(() => {
      throw new EngineTlsError("prd", Object.assign(new Error("unable to verify the first certificate"), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" }));
    });
    const post = createPostAlert(new Map([["prd", c]]));
    await expect(post("prd", { description: "d", severity: "alert", customId: 9, vmId: "vm-1" })).rejects.toMatchObject({ code: "ALERT_ENGINE_UNTRUSTED" });
    expect(c.calls).toHaveLength(1);
  });
});
