/** Engine and imageio faults mid-run: 503 bursts for 60 s, the engine stopped and restarted with its state, imageio stalling past the idle timeout, the ticket expiring. */
import type { ChaosCase } from "../case.ts";
import { downloading, sleep } from "../steps.ts";
import { MiB } from "../world.ts";

export const engine503: ChaosCase = {
  name: "engine-503-60s",
  summary: "the engine answers 503 to every API call for 60 s mid-download",
  followUp: "cx01",
  async run(w) {
    w.prd().control.faults.throttleImageio(1 * MiB);
    const id = await w.d.request("cx01");
    await downloading(w, 2 * MiB);
    const faultAt = performance.now();
    // Far more than 60 s of calls: the burst ends by clear(), not by running out.
    w.prd().control.faults.httpErrors(503, 1_000_000, "^/ovirt-engine/api");
    await sleep(60_000);
    w.prd().control.faults.clear();
    const out = await w.d.outcome(id, 240_000);
    return { expect: { requests: [id] }, faultAt, outcome: out.subject };
  },
};

export const engineRestart: ChaosCase = {
  name: "engine-restart",
  summary: "the lab engine stopped mid-download and started again 5 s later with its state (same ports, CA, VMs; the open backup is failed by the engine)",
  followUp: "cx01",
  async run(w) {
    w.prd().control.faults.throttleImageio(1 * MiB);
    const id = await w.d.request("cx01");
    await downloading(w, 2 * MiB);
    const faultAt = performance.now();
    await w.restartLab(5000);
    const out = await w.d.outcome(id, 240_000);
    return { expect: { requests: [id] }, faultAt, outcome: out.subject };
  },
};

export const imageioStall: ChaosCase = {
  name: "imageio-stall",
  summary: "imageio holds a data piece for 75 s, longer than the client's 60 s idle timeout",
  followUp: "cx01",
  async run(w) {
    w.prd().control.faults.throttleImageio(1 * MiB);
    const id = await w.d.request("cx01");
    await downloading(w, 2 * MiB);
    const faultAt = performance.now();
    w.prd().control.faults.stallImageio(75_000);
    const out = await w.d.outcome(id, 300_000);
    w.prd().control.faults.clear();
    return { expect: { requests: [id] }, faultAt, outcome: out.subject };
  },
};

export const ticketExpiry: ChaosCase = {
  name: "ticket-expiry",
  summary: "the imageio ticket expires mid-transfer (403, no renewal)",
  followUp: "cx01",
  async run(w) {
    w.prd().control.faults.throttleImageio(1 * MiB);
    const id = await w.d.request("cx01");
    await downloading(w, 2 * MiB);
    const faultAt = performance.now();
    const expired = await w.prd().control.faults.expireTicket();
    w.prd().control.faults.throttleImageio(0);
    const out = await w.d.outcome(id, 240_000);
    return { expect: { requests: [id] }, faultAt, outcome: out.subject, notes: [`${expired} ticket(s) expired`] };
  },
};
