/** Engine and imageio faults mid-run: 503 bursts for 60 s, the engine stopped and restarted with its state, imageio stalling past the idle timeout, the ticket expiring. */
import type { ChaosCase } from "../case.ts";
import { faultMidDownload, sleep } from "../steps.ts";

export const engine503: ChaosCase = {
  name: "engine-503-60s",
  summary: "the engine answers 503 to every API call for 60 s mid-download",
  followUp: "cx01",
  run: (w) =>
    faultMidDownload(w, {
      async strike() {
        // Far more than 60 s of calls: the burst ends by clear(), not by running out.
        w.prd().control.faults.httpErrors(503, 1_000_000, "^/ovirt-engine/api");
        await sleep(60_000);
        w.prd().control.faults.clear();
      },
    }),
};

export const engineRestart: ChaosCase = {
  name: "engine-restart",
  summary: "the lab engine stopped mid-download and started again 5 s later with its state (same ports, CA, VMs; the open backup is failed by the engine)",
  followUp: "cx01",
  run: (w) => faultMidDownload(w, { strike: () => w.restartLab(5000) }),
};

export const imageioStall: ChaosCase = {
  name: "imageio-stall",
  summary: "imageio holds a data piece for 75 s, longer than the client's 60 s idle timeout",
  followUp: "cx01",
  run: (w) =>
    faultMidDownload(w, {
      outcomeMs: 300_000,
      async strike() {
        w.prd().control.faults.stallImageio(75_000);
      },
    }),
};

export const ticketExpiry: ChaosCase = {
  name: "ticket-expiry",
  summary: "the imageio ticket expires mid-transfer (403, no renewal)",
  followUp: "cx01",
  run: (w) =>
    faultMidDownload(w, {
      async strike() {
        const expired = await w.prd().control.faults.expireTicket();
        w.prd().control.faults.throttleImageio(0);
        return [`${expired} ticket(s) expired`];
      },
    }),
};
