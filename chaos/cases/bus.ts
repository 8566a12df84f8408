/** NATS faults: the single server SIGKILLed mid-download; a 3-node R3 cluster losing its stream leader, then its meta leader. */
import type { ChaosCase } from "../case.ts";
import { downloading, faultMidDownload, sleep, until } from "../steps.ts";
import { MiB, type World } from "../world.ts";

export const natsKill: ChaosCase = {
  name: "nats-kill-restart",
  summary: "nats-server SIGKILLed mid-download, restarted on the same store after 5 s; the functions reconnect by themselves",
  followUp: "cx01",
  run: (w) =>
    faultMidDownload(w, {
      async strike() {
        await w.d.nats[0]!.kill9();
        await sleep(5000);
        await w.d.nats[0]!.start();
        w.prd().control.faults.clear();
      },
    }),
};

/** The server named as leader of a stream (a KV bucket is the stream KV_<bucket>). */
async function streamLeader(w: World, stream: string): Promise<string> {
  return until(`a leader for ${stream}`, async () => (await w.d.jsm.streams.info(stream)).cluster?.leader, 60_000, 500);
}

async function metaLeader(w: World): Promise<string> {
  return until(
    "the meta leader",
    async () => {
      for (const n of w.d.nats.filter((x) => x.running())) {
        const j = (await (await fetch(`${n.monitorUrl}/jsz`)).json()) as { meta_cluster?: { leader?: string } };
        if (j.meta_cluster?.leader) return j.meta_cluster.leader;
      }
      return undefined;
    },
    60_000,
    500,
  );
}

export const clusterLeaders: ChaosCase = {
  name: "cluster-leader-kills",
  summary: "3-node JetStream cluster at R3: the FERRY_COMMANDS stream leader SIGKILLed mid-backup, then (next backup) the meta leader; each restarted after 5 s",
  world: { cluster: true },
  followUp: "cx01",
  settleMs: 300_000,
  async run(w) {
    const notes: string[] = [];
    w.prd().control.faults.throttleImageio(1 * MiB);
    const a = await w.d.request("cx01", { mode: "full" });
    await downloading(w, 2 * MiB);
    const leader = await streamLeader(w, "FERRY_COMMANDS");
    const node = w.d.nats.find((n) => n.name === leader)!;
    const faultAt = performance.now();
    await node.kill9();
    notes.push(`killed stream leader ${leader}`);
    await sleep(5000);
    await node.start();
    const first = await w.d.outcome(a, 240_000);
    const b = await w.d.request("cx01");
    await downloading(w, 2 * MiB);
    const meta = await metaLeader(w);
    const mnode = w.d.nats.find((n) => n.name === meta)!;
    await mnode.kill9();
    notes.push(`killed meta leader ${meta}`);
    await sleep(5000);
    await mnode.start();
    w.prd().control.faults.clear();
    const second = await w.d.outcome(b, 240_000);
    return { expect: { requests: [a, b] }, faultAt, outcome: `${first.subject}, ${second.subject}`, notes };
  },
};
