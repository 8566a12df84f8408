/**
 * engine-events process wiring: the consumer of ovirt.event over the process's pipeline wiring
 * (chains KV, the chain guard's KV), and — unless `events.poll` is false — one poller per
 * configured engine over the same engine clients, stopped with the process. Every process that
 * runs this function polls; the index moves by compare-and-set and facts carry deterministic
 * msgIDs, so two processes never publish an event twice.
 */
import type { LoadedConfig } from "../../config/load.ts";
import { CONFIG_DEFAULTS } from "../../contracts/config.ts";
import { ferryCorrelationId } from "../../pipeline/chain-guard.ts";
import { pipelineFor } from "../../pipeline/composition.ts";
import { createPublisher, type FunctionFactory } from "../runtime/mod.ts";
import { engineEventsFunction } from "./definition.ts";
import { createPoller } from "./poller.ts";

const create: FunctionFactory<LoadedConfig> = async (ctx) => {
  const wiring = await pipelineFor(ctx);
  const events = ctx.config.events;
  if (events?.poll ?? CONFIG_DEFAULTS.eventsPoll) {
    const publisher = createPublisher(ctx.nc, ctx.js);
    const intervalMs = (events?.pollSeconds ?? CONFIG_DEFAULTS.eventsPollSeconds) * 1000;
    for (const [engine, port] of wiring.engines) {
      const poller = createPoller({
        engine,
        listEvents: (o) => port.client.events.list(o),
        guard: wiring.guard,
        vmName: async (vmId) => (await wiring.chains.read(vmId).catch(() => undefined))?.vm.name,
        publish: (out) => publisher.publish(out),
        ownCorrelationId: ferryCorrelationId(engine),
        clock: () => new Date(),
        log: ctx.log,
      });
      ctx.background(`poller ${engine}`, poller.run({ intervalMs, signal: ctx.signal }));
      ctx.log.info({ engine, everySeconds: intervalMs / 1000 }, "engine events: polling the audit log");
    }
  }
  return engineEventsFunction({
    guard: wiring.guard,
    chains: wiring.chains,
    engineOf: (vm) => ctx.config.vms[vm]?.engine ?? CONFIG_DEFAULTS.engine,
    clock: () => new Date(),
  });
};
export default create;
