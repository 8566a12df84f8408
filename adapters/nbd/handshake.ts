import {
  CLIENT_FLAG,
  DEFAULT_MAX_BLOCK_SIZE,
  HANDSHAKE_FLAG,
  INFO,
  MAGIC,
  OPT,
  REP,
  REP_ERR,
  REP_ERR_BIT,
} from "./constants.ts";
import { NbdOptionError, NbdProtocolError } from "./errors.ts";
import type { ExportInfo } from "./types.ts";

/**
 * The fixed newstyle handshake: flags, NBD_OPT_STRUCTURED_REPLY, meta contexts
 * (NBD_OPT_LIST_META_CONTEXT for prefix queries, then NBD_OPT_SET_META_CONTEXT),
 * and NBD_OPT_GO asking for NBD_INFO_BLOCK_SIZE (so we promise to honour it).
 */

export interface HandshakeIo {
  read(n: number): Promise<Buffer>;
  write(buf: Buffer): void;
}

/** Option replies larger than this are a broken or hostile server. */
const MAX_OPTION_REPLY = 16 * 1024 * 1024;

const OPT_NAME: Readonly<Record<number, string>> = {
  [OPT.GO]: "NBD_OPT_GO",
  [OPT.STRUCTURED_REPLY]: "NBD_OPT_STRUCTURED_REPLY",
  [OPT.LIST_META_CONTEXT]: "NBD_OPT_LIST_META_CONTEXT",
  [OPT.SET_META_CONTEXT]: "NBD_OPT_SET_META_CONTEXT",
};

const REP_ERR_NAME: Readonly<Record<number, string>> = {
  [REP_ERR.UNSUP]: "NBD_REP_ERR_UNSUP",
  [REP_ERR.POLICY]: "NBD_REP_ERR_POLICY",
  [REP_ERR.INVALID]: "NBD_REP_ERR_INVALID",
  [REP_ERR.PLATFORM]: "NBD_REP_ERR_PLATFORM",
  [REP_ERR.TLS_REQD]: "NBD_REP_ERR_TLS_REQD",
  [REP_ERR.UNKNOWN]: "NBD_REP_ERR_UNKNOWN",
  [REP_ERR.SHUTDOWN]: "NBD_REP_ERR_SHUTDOWN",
  [REP_ERR.BLOCK_SIZE_REQD]: "NBD_REP_ERR_BLOCK_SIZE_REQD",
  [REP_ERR.TOO_BIG]: "NBD_REP_ERR_TOO_BIG",
};

interface OptionReply {
  type: number;
  data: Buffer;
}

class Negotiator {
  private readonly io: HandshakeIo;
  constructor(io: HandshakeIo) {
    this.io = io;
  }

  sendOption(opt: number, data: Buffer = Buffer.alloc(0)): void {
    const hdr = Buffer.allocUnsafe(16);
    hdr.writeBigUInt64BE(MAGIC.IHAVEOPT, 0);
    hdr.writeUInt32BE(opt, 8);
    hdr.writeUInt32BE(data.length, 12);
    this.io.write(data.length ? Buffer.concat([hdr, data]) : hdr);
  }

  async readReply(opt: number): Promise<OptionReply> {
    const hdr = await this.io.read(20);
    const magic = hdr.readBigUInt64BE(0);
    if (magic !== MAGIC.OPTION_REPLY) throw new NbdProtocolError(`bad option reply magic 0x${magic.toString(16)}`);
    const replyOpt = hdr.readUInt32BE(8);
    if (replyOpt !== opt) throw new NbdProtocolError(`reply for option ${replyOpt} while negotiating ${opt}`);
    const type = hdr.readUInt32BE(12);
    const length = hdr.readUInt32BE(16);
    if (length > MAX_OPTION_REPLY) throw new NbdProtocolError(`option reply of ${length} bytes`);
    const data = length ? await this.io.read(length) : Buffer.alloc(0);
    return { type, data };
  }

  optionError(opt: number, reply: OptionReply, exportName: string): NbdOptionError {
    const name = REP_ERR_NAME[reply.type] ?? `error ${reply.type}`;
    const serverText = reply.data.toString("utf8").trim();
    const what = OPT_NAME[opt] ?? `option ${opt}`;
    if (opt === OPT.GO && reply.type === REP_ERR.UNKNOWN) {
      return new NbdOptionError(
        "NBD_EXPORT_NOT_FOUND",
        `NBD export '${exportName}' not found${serverText ? `: ${serverText}` : ""}`,
        opt,
        reply.type,
      );
    }
    return new NbdOptionError(
      "NBD_OPTION_FAILED",
      `${what} failed with ${name}${serverText ? `: ${serverText}` : ""}`,
      opt,
      reply.type,
    );
  }
}

function nameAndQueries(exportName: string, queries: string[]): Buffer {
  const parts: Buffer[] = [];
  const name = Buffer.from(exportName, "utf8");
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(name.length, 0);
  parts.push(head, name);
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(queries.length, 0);
  parts.push(count);
  for (const q of queries) {
    const qb = Buffer.from(q, "utf8");
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(qb.length, 0);
    parts.push(len, qb);
  }
  return Buffer.concat(parts);
}

async function metaContextReplies(
  n: Negotiator,
  opt: number,
  exportName: string,
): Promise<Array<{ id: number; name: string }> | "unsupported"> {
  const out: Array<{ id: number; name: string }> = [];
  for (;;) {
    const reply = await n.readReply(opt);
    if (reply.type === REP.ACK) return out;
    if (reply.type === REP.META_CONTEXT) {
      if (reply.data.length < 4) throw new NbdProtocolError("short NBD_REP_META_CONTEXT");
      out.push({ id: reply.data.readUInt32BE(0), name: reply.data.toString("utf8", 4) });
      continue;
    }
    if (reply.type === REP_ERR.UNSUP) return "unsupported";
    if (reply.type & REP_ERR_BIT) throw n.optionError(opt, reply, exportName);
    throw new NbdProtocolError(`unexpected reply ${reply.type} to ${OPT_NAME[opt]}`);
  }
}

export async function handshake(io: HandshakeIo, exportName: string, metaContexts: readonly string[]): Promise<ExportInfo> {
  const greeting = await io.read(18);
  if (greeting.readBigUInt64BE(0) !== MAGIC.NBD) throw new NbdProtocolError("not an NBD server (bad magic)");
  if (greeting.readBigUInt64BE(8) !== MAGIC.IHAVEOPT) {
    throw new NbdProtocolError("server does not speak the newstyle protocol");
  }
  const serverFlags = greeting.readUInt16BE(16);
  if (!(serverFlags & HANDSHAKE_FLAG.FIXED_NEWSTYLE)) {
    throw new NbdProtocolError("server does not support fixed newstyle negotiation");
  }
  const clientFlags = Buffer.allocUnsafe(4);
  clientFlags.writeUInt32BE(
    CLIENT_FLAG.C_FIXED_NEWSTYLE | (serverFlags & HANDSHAKE_FLAG.NO_ZEROES ? CLIENT_FLAG.C_NO_ZEROES : 0),
    0,
  );
  io.write(clientFlags);

  const n = new Negotiator(io);

  n.sendOption(OPT.STRUCTURED_REPLY);
  const sr = await n.readReply(OPT.STRUCTURED_REPLY);
  let structuredReplies = false;
  if (sr.type === REP.ACK) structuredReplies = true;
  else if (!(sr.type & REP_ERR_BIT)) throw new NbdProtocolError(`unexpected reply ${sr.type} to NBD_OPT_STRUCTURED_REPLY`);

  const contexts = new Map<string, number>();
  if (structuredReplies && metaContexts.length) {
    // A query ending in ":" (e.g. "qemu:dirty-bitmap:") names a namespace, which SET
    // does not expand (qemu selects nothing); LIST resolves it to the exported names.
    const exact = metaContexts.filter((q) => !q.endsWith(":"));
    const prefixes = metaContexts.filter((q) => q.endsWith(":"));
    const wanted = new Set(exact);
    if (prefixes.length) {
      n.sendOption(OPT.LIST_META_CONTEXT, nameAndQueries(exportName, prefixes));
      const listed = await metaContextReplies(n, OPT.LIST_META_CONTEXT, exportName);
      if (listed !== "unsupported") {
        for (const c of listed) if (prefixes.some((p) => c.name.startsWith(p))) wanted.add(c.name);
      }
    }
    if (wanted.size) {
      n.sendOption(OPT.SET_META_CONTEXT, nameAndQueries(exportName, [...wanted]));
      const set = await metaContextReplies(n, OPT.SET_META_CONTEXT, exportName);
      if (set !== "unsupported") {
        for (const c of set) {
          if (!wanted.has(c.name)) throw new NbdProtocolError(`server selected unrequested context ${c.name}`);
          contexts.set(c.name, c.id);
        }
      }
    }
  }

  const name = Buffer.from(exportName, "utf8");
  const go = Buffer.allocUnsafe(4 + name.length + 2 + 2);
  go.writeUInt32BE(name.length, 0);
  name.copy(go, 4);
  go.writeUInt16BE(1, 4 + name.length);
  go.writeUInt16BE(INFO.BLOCK_SIZE, 6 + name.length);
  n.sendOption(OPT.GO, go);

  let size: number | undefined;
  let transmissionFlags = 0;
  let minBlockSize = 1;
  let preferredBlockSize = 4096;
  let maxBlockSize = DEFAULT_MAX_BLOCK_SIZE;
  for (;;) {
    const reply = await n.readReply(OPT.GO);
    if (reply.type === REP.ACK) break;
    if (reply.type & REP_ERR_BIT) throw n.optionError(OPT.GO, reply, exportName);
    if (reply.type !== REP.INFO) throw new NbdProtocolError(`unexpected reply ${reply.type} to NBD_OPT_GO`);
    if (reply.data.length < 2) throw new NbdProtocolError("short NBD_REP_INFO");
    const info = reply.data.readUInt16BE(0);
    if (info === INFO.EXPORT) {
      if (reply.data.length !== 12) throw new NbdProtocolError("bad NBD_INFO_EXPORT length");
      size = Number(reply.data.readBigUInt64BE(2));
      transmissionFlags = reply.data.readUInt16BE(10);
    } else if (info === INFO.BLOCK_SIZE) {
      if (reply.data.length !== 14) throw new NbdProtocolError("bad NBD_INFO_BLOCK_SIZE length");
      minBlockSize = reply.data.readUInt32BE(2);
      preferredBlockSize = reply.data.readUInt32BE(6);
      maxBlockSize = reply.data.readUInt32BE(10);
      if (minBlockSize < 1 || (minBlockSize & (minBlockSize - 1)) !== 0 || maxBlockSize < minBlockSize) {
        throw new NbdProtocolError(`invalid block sizes min=${minBlockSize} max=${maxBlockSize}`);
      }
    }
    // Other NBD_INFO types (name, description) are not needed.
  }
  if (size === undefined) throw new NbdProtocolError("server did not send NBD_INFO_EXPORT");
  if (!Number.isSafeInteger(size)) throw new NbdProtocolError(`export size ${size} is too large`);
  return { size, transmissionFlags, minBlockSize, preferredBlockSize, maxBlockSize, structuredReplies, contexts };
}
