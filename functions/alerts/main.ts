/**
 * alerts process wiring: the process's engine clients (pipeline/composition.ts, shared with the
 * other functions under `ferry run all`), the run journal and the rate-limit bucket from KV, and
 * the summary timer.
 */
import type { LoadedConfig } from "../../config/load.ts";
import { buckets } from "../../infra/streams/mod.ts";
import { pipelineFor } from "../../pipeline/composition.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { FLUSH_EVERY_MS, alertsFunction, startSummaryFlusher } from "./definition.ts";
import { createAlertsFor } from "./wiring.ts";

const create: FunctionFactory<LoadedConfig> = async (ctx) => {
  const alerts = createAlertsFor(await pipelineFor(ctx), await ctx.kvm.open(buckets.alerts), ctx.log);
  ctx.background("summary flusher", startSummaryFlusher(alerts, { everyMs: FLUSH_EVERY_MS, signal: ctx.signal, log: ctx.log }));
  return alertsFunction(alerts);
};
export default create;
