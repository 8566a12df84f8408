/**
 * Service discovery: each `ferry run` process registers one NATS micro service named "ferry",
 * so `nats micro ls|info|stats ferry` (or $SRV.PING / $SRV.INFO / $SRV.STATS requests) show
 * every running instance, its functions and their counters.
 *
 * @nats-io/services 3.0.0-25 is typed against its own nested nats-core prerelease; at runtime it
 * only uses the connection's subscribe/publish/request, which the 3.4 connection provides
 * (checked by test/runtime-service.test.ts), so the connection is passed through a cast.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import type { FunctionRunner } from "./runner.ts";

export interface FerryService {
  readonly id: string;
  stop(): Promise<void>;
}

export const SERVICE_NAME = "ferry";

export async function registerService(
  nc: NatsConnection,
  runners: readonly FunctionRunner[],
  o: { version: string; instance?: string },
): Promise<FerryService> {
  const byName = new Map(runners.map((r) => [r.def.name, r]));
  const svc = await new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]).add({
    name: SERVICE_NAME,
    version: o.version,
    description: "Ferry functions (one instance per `ferry run` process)",
    metadata: { functions: runners.map((r) => r.def.name).join(","), instance: o.instance ?? "" },
    // Counters per function go into the `data` of its endpoint in $SRV.STATS.
    statsHandler: async (endpoint) => {
      const name = (endpoint as { name?: string }).name ?? "";
      return byName.get(name)?.stats ?? null;
    },
  });
  const group = svc.addGroup("ferry.fn");
  for (const r of runners) {
    group.addEndpoint(r.def.name, {
      metadata: { subject: r.def.subject, concurrency: String(r.def.concurrency), max_deliver: String(r.def.maxDeliver) },
      handler: (_err, msg) => {
        msg.respond(JSON.stringify({ fn: r.def.name, subject: r.def.subject, ...r.stats }));
      },
    });
  }
  return {
    id: svc.info().id,
    async stop() {
      await svc.stop();
    },
  };
}
