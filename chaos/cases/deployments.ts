/** Two Ferry deployments (two NATS / KV domains, two stores, two deployment ids) backing up the same VM on one lab engine at once. */
import type { ChaosCase } from "../case.ts";

export const twoDeployments: ChaosCase = {
  name: "two-deployments",
  summary: "two deployments (own NATS, KV, store, deployment id) back up the same VM on one engine at the same moment; neither touches the other's backups",
  world: { deployments: 2 },
  followUp: "cx01",
  async run(w) {
    const [a, b] = w.deployments;
    const faultAt = performance.now();
    const [ia, ib] = await Promise.all([a!.request("cx01", { id: "dep0-1" }), b!.request("cx01", { id: "dep1-1" })]);
    const [oa, ob] = await Promise.all([a!.outcome(ia, 300_000), b!.outcome(ib, 300_000)]);
    return {
      expect: { requests: [ia, ib] },
      faultAt,
      outcome: `deployment 0: ${oa.subject}${oa.event.code ? `:${String(oa.event.code)}` : ""}, deployment 1: ${ob.subject}${ob.event.code ? `:${String(ob.event.code)}` : ""}`,
    };
  },
};
