import { startImageioServer } from "../imageio/mod.ts";
import type { ImageioFaults, LabTicket, TicketInfo } from "../imageio/mod.ts";

/**
 * What the engine needs from the lab imageio daemon (lab/imageio, owned by the nbd+imageio
 * helper): add a ticket when a transfer starts, poll it for activity and idle time, extend or
 * remove it. Injectable so tests can wrap the daemon.
 */
export type { LabTicket, TicketInfo };

export interface ImageioPort {
  url: string;
  addTicket(t: LabTicket): unknown;
  getTicket(id: string): TicketInfo | undefined;
  removeTicket(id: string): Promise<void>;
  extendTicket(id: string, timeoutSec: number): unknown;
  faults?: ImageioFaults;
  close(): Promise<void>;
}

export interface ImageioStartOptions {
  host?: string;
  port?: number;
  tls?: { cert: string; key: string };
  maxConnections?: number;
}

export type ImageioFactory = (o: ImageioStartOptions) => Promise<ImageioPort>;

export const defaultImageioFactory: ImageioFactory = (o) => startImageioServer(o);
