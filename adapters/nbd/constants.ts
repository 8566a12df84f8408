/**
 * NBD protocol constants, as named in the NBD protocol document
 * (github.com/NetworkBlockDevice/nbd, doc/proto.md). Numbers only, no behaviour.
 */

export const MAGIC = {
  /** "NBDMAGIC", first 8 bytes the server sends. */
  NBD: 0x4e42444d41474943n,
  /** "IHAVEOPT", newstyle negotiation; also prefixes every client option. */
  IHAVEOPT: 0x49484156454f5054n,
  OPTION_REPLY: 0x3e889045565a9n,
  REQUEST: 0x25609513,
  SIMPLE_REPLY: 0x67446698,
  STRUCTURED_REPLY: 0x668e33ef,
} as const;

/** Handshake flags (server → client, 16 bits). */
export const HANDSHAKE_FLAG = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Client flags (client → server, 32 bits). */
export const CLIENT_FLAG = {
  C_FIXED_NEWSTYLE: 1 << 0,
  C_NO_ZEROES: 1 << 1,
} as const;

/** Transmission flags from NBD_INFO_EXPORT (16 bits). */
export const TRANSMISSION_FLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
} as const;

/** Option error replies have bit 31 set. */
export const REP_ERR_BIT = 0x80000000;

export const REP_ERR = {
  UNSUP: REP_ERR_BIT + 1,
  POLICY: REP_ERR_BIT + 2,
  INVALID: REP_ERR_BIT + 3,
  PLATFORM: REP_ERR_BIT + 4,
  TLS_REQD: REP_ERR_BIT + 5,
  UNKNOWN: REP_ERR_BIT + 6,
  SHUTDOWN: REP_ERR_BIT + 7,
  BLOCK_SIZE_REQD: REP_ERR_BIT + 8,
  TOO_BIG: REP_ERR_BIT + 9,
} as const;

export const INFO = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export type CommandType = (typeof CMD)[keyof typeof CMD];

export const CMD_NAME: Readonly<Record<number, string>> = {
  [CMD.READ]: "READ",
  [CMD.WRITE]: "WRITE",
  [CMD.DISC]: "DISC",
  [CMD.FLUSH]: "FLUSH",
  [CMD.TRIM]: "TRIM",
  [CMD.CACHE]: "CACHE",
  [CMD.WRITE_ZEROES]: "WRITE_ZEROES",
  [CMD.BLOCK_STATUS]: "BLOCK_STATUS",
};

export const CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

export const REPLY_FLAG = {
  DONE: 1 << 0,
} as const;

export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: (1 << 15) + 1,
  ERROR_OFFSET: (1 << 15) + 2,
} as const;

/** Error values carried in simple and structured replies. */
export const NBD_ERRNO = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

export type NbdErrnoName = keyof typeof NBD_ERRNO | "EUNKNOWN";

export function errnoName(code: number): NbdErrnoName {
  for (const [name, value] of Object.entries(NBD_ERRNO)) {
    if (value === code) return name as keyof typeof NBD_ERRNO;
  }
  return "EUNKNOWN";
}

/** base:allocation flags. */
export const NBD_STATE_HOLE = 1;
export const NBD_STATE_ZERO = 2;
/** qemu:dirty-bitmap:<name> flag. */
export const NBD_STATE_DIRTY = 1;

export const META_CONTEXT = {
  BASE_ALLOCATION: "base:allocation",
  QEMU_ALLOCATION_DEPTH: "qemu:allocation-depth",
  /** Prefix; a query ending in ":" is resolved with NBD_OPT_LIST_META_CONTEXT. */
  QEMU_DIRTY_BITMAP: "qemu:dirty-bitmap:",
} as const;

/** Request header: magic(4) flags(2) type(2) cookie(8) offset(8) length(4). */
export const REQUEST_HEADER_SIZE = 28;
/** Simple reply header: magic(4) error(4) cookie(8). */
export const SIMPLE_REPLY_HEADER_SIZE = 16;
/** Structured reply chunk header: magic(4) flags(2) type(2) cookie(8) length(4). */
export const STRUCTURED_REPLY_HEADER_SIZE = 20;

/** The largest payload a client may send or ask for when the server states no limit. */
export const DEFAULT_MAX_BLOCK_SIZE = 32 * 1024 * 1024;
/** Ferry never puts more than this into one request, whatever the server allows. */
export const MAX_REQUEST_SIZE = 32 * 1024 * 1024;
/** WRITE_ZEROES carries no payload; qemu caps one request near 2 GiB, so step in 1 GiB. */
export const MAX_ZERO_SIZE = 1024 * 1024 * 1024;
/** BLOCK_STATUS length is 32 bits; smaller steps bound the extents kept per reply. */
export const MAX_BLOCK_STATUS_SIZE = 2 * 1024 * 1024 * 1024;
