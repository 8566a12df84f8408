/**
 * Ferry's NBD client (no maintained NBD client exists for Node). See README.md.
 */
export { NbdClient, type NbdConnectOptions } from "./client.ts";
export type { BlockExtent, ExportInfo } from "./types.ts";
export {
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  NBD_STATE_DIRTY,
  META_CONTEXT,
  TRANSMISSION_FLAG,
  MAX_REQUEST_SIZE,
  type NbdErrnoName,
} from "./constants.ts";
export {
  NbdError,
  NbdTransientError,
  NbdDisconnectedError,
  NbdConnectError,
  NbdProtocolError,
  NbdOptionError,
  NbdUsageError,
  isNbdReplyError,
} from "./errors.ts";
export { parseNbdUrl, formatNbdUnixUrl, type NbdAddress } from "./url.ts";
