/**
 * The lab's simulated ovirt-imageio daemon (see README.md): the imageio HTTP data API over
 * NBD exports, matching ovirt-api.md §7 and the captured responses of Appendix A.
 */
export { startImageioServer, type ImageioServer, type ImageioServerOptions } from "./server.ts";
export type { ImageioFaults } from "./faults.ts";
export type { LabTicket, TicketInfo } from "./ticket.ts";
export { InvalidTicketError, TicketCancelTimeoutError, DEFAULT_INACTIVITY_TIMEOUT } from "./ticket.ts";
export { ALGORITHMS as CHECKSUM_ALGORITHMS } from "./checksum.ts";
export { SERVER_VERSION } from "./http-wire.ts";
