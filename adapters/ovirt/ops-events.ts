/** Audit-log events: post Ferry's alerts, follow the engine's events (ovirt-api.md §9). */
import { DuplicateEventError } from "./errors.ts";
import { Event, Events, type EventSeverity } from "./models.ts";
import type { CallOptions } from "./ops-vms.ts";
import type { EngineApi } from "./transport.ts";

export interface PostEvent {
  readonly description: string;
  readonly severity: EventSeverity;
  /** Default `ferry`. Must not be `oVirt`. */
  readonly origin?: string;
  /** An integer unique per origin. Default: the next value of a per-process clock-based counter. */
  readonly customId?: number;
  readonly vmId?: string;
  readonly hostId?: string;
  readonly clusterId?: string;
  readonly storageDomainId?: string;
  readonly floodRate?: number;
}

// (origin, custom_id) must be unique. Seconds since the epoch, like the SDK example, bumped so two
// events of one process never collide; a collision with another process is retried with the next value.
let lastCustomId = 0;
export function nextCustomId(): number {
  lastCustomId = Math.max(Math.floor(Date.now() / 1000), lastCustomId + 1);
  return lastCustomId;
}

export function eventOps(api: EngineApi) {
  return {
    async post(e: PostEvent, o: CallOptions = {}): Promise<Event> {
      const attempts = e.customId === undefined ? 5 : 1;
      for (let attempt = 1; ; attempt++) {
        const body: Record<string, unknown> = {
          description: e.description,
          severity: e.severity,
          origin: e.origin ?? "ferry",
          custom_id: String(e.customId ?? nextCustomId()),
        };
        if (e.vmId) body.vm = { id: e.vmId };
        if (e.hostId) body.host = { id: e.hostId };
        if (e.clusterId) body.cluster = { id: e.clusterId };
        if (e.storageDomainId) body.storage_domain = { id: e.storageDomainId };
        if (e.floodRate !== undefined) body.flood_rate = String(e.floodRate);
        try {
          return await api.json({ method: "POST", path: "/events", body, signal: o.signal }, Event);
        } catch (err) {
          const duplicate = err instanceof DuplicateEventError;
          if (!duplicate || attempt >= attempts) throw err;
        }
      }
    },

    /** Events, newest first. `from` = the last index already seen (for polling). */
    list(o: CallOptions & { from?: number; max?: number; search?: string } = {}) {
      return api.json(
        { method: "GET", path: "/events", query: { from: o.from, max: o.max, search: o.search }, signal: o.signal },
        Events,
      );
    },

    /** Free-text engine search, e.g. a backup id to explain its failure. */
    search(text: string, o: CallOptions & { max?: number } = {}) {
      return api.json(
        { method: "GET", path: "/events", query: { search: text, max: o.max }, signal: o.signal },
        Events,
      );
    },
  };
}
