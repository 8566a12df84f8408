/**
 * The alerts function's engine edge: POST /events (ovirt-api.md §9) with origin `ferry` on the
 * named engine, over the process's engine clients (pipeline/composition.ts). A duplicate
 * custom_id (adapters/ovirt DuplicateEventError) means the alert is already there.
 */
import { DuplicateEventError, EngineFaultError, EngineTlsError, type PostEvent } from "../../adapters/ovirt/mod.ts";
import { EngineUntrustedError, UnknownEngineError, type PostAlert } from "./handler.ts";

/** The part of adapters/ovirt EngineClient this needs. */
export interface EventsClient {
  readonly events: { post(e: PostEvent): Promise<unknown> };
}

export function createPostAlert(clients: ReadonlyMap<string, EventsClient>): PostAlert {
  return async (engine, a) => {
    const client = clients.get(engine);
    if (!client) throw new UnknownEngineError(engine);
    const post = (vmId?: string) =>
      client.events.post({ description: a.description, severity: a.severity, origin: "ferry", customId: a.customId, ...(vmId ? { vmId } : {}) });
    try {
      await post(a.vmId);
      return "posted";
    } catch (err) {
      if (err instanceof DuplicateEventError) return "duplicate";
      if (err instanceof EngineTlsError) throw new EngineUntrustedError(engine, err);
      // Another 4xx with a VM link (the VM was removed meanwhile?): an alert without the link
      // is better than none. Anything else (5xx, network) is retried by the runtime.
      if (!(a.vmId && err instanceof EngineFaultError)) throw err;
    }
    try {
      await post();
      return "posted";
    } catch (err) {
      if (err instanceof DuplicateEventError) return "duplicate";
      throw err;
    }
  };
}
