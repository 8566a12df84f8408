import {
  CMD,
  CMD_NAME,
  MAGIC,
  REPLY_FLAG,
  REPLY_TYPE,
  SIMPLE_REPLY_HEADER_SIZE,
  STRUCTURED_REPLY_HEADER_SIZE,
} from "./constants.ts";
import { NbdProtocolError } from "./errors.ts";
import type { BlockExtent } from "./types.ts";

/**
 * Incremental parser of the transmission phase: simple replies and structured reply
 * chunks, fed with whatever the socket delivers. Read payloads are copied straight
 * into the request's destination buffer as they arrive, so a 32 MiB read never sits in
 * an intermediate buffer. Protocol violations throw NbdProtocolError; the caller then
 * drops the connection.
 */

/** What the parser needs to know about one in-flight request, and what it fills in. */
export interface ReplyTarget {
  readonly cookie: number;
  readonly type: number;
  readonly offset: number;
  readonly length: number;
  /** READ destination, exactly `length` bytes. */
  readonly buf: Buffer | undefined;
  /** Bytes of the READ range covered by data or hole chunks so far. */
  covered: number;
  /** First error reported for this request. */
  error: { code: number; message: string; offset?: number } | undefined;
  /** BLOCK_STATUS results by context id, absolute offsets. */
  extents: Map<number, BlockExtent[]> | undefined;
}

export interface ReplySink {
  lookup(cookie: number): ReplyTarget | undefined;
  /** Called exactly once per request: a simple reply, or the chunk with NBD_REPLY_FLAG_DONE. */
  complete(target: ReplyTarget): void;
}

const S_HEADER = 0;
const S_DATA = 1;
const S_PAYLOAD = 2;

/** Largest non-data chunk payload accepted (block status of a fragmented 2 GiB range fits easily). */
const MAX_CHUNK_PAYLOAD = 64 * 1024 * 1024;
/** Cookies are issued below 2^53; anything the server echoes above that is not ours. */
const COOKIE_HI_LIMIT = 2 ** 21;

export class ReplyParser {
  private state = S_HEADER;
  private readonly hdr = Buffer.alloc(STRUCTURED_REPLY_HEADER_SIZE);
  private hdrLen = 0;
  private need = 4;

  private target: ReplyTarget | undefined;
  private chunkFlags = 0;
  private chunkType = 0;
  private chunkLength = 0;
  /** S_DATA: where the next byte goes in target.buf, and how many are left. */
  private dataPos = 0;
  private dataLeft = 0;
  /** S_PAYLOAD: collected bytes of a small chunk payload. */
  private payload: Buffer = Buffer.alloc(0);
  private payloadLen = 0;
  private collected = 0;
  /** S_PAYLOAD is collecting the 8-byte offset that precedes OFFSET_DATA bytes. */
  private dataPrefix = false;
  /** The current simple or structured reply is the last one for the target. */
  private finishAfter = false;

  private readonly sink: ReplySink;
  private readonly structured: () => boolean;
  constructor(
    sink: ReplySink,
    structured: () => boolean,
  ) {
    this.sink = sink;
    this.structured = structured;
  }

  /** True when no reply is half-parsed (used to tell a clean EOF from a cut reply). */
  get idle(): boolean {
    return this.state === S_HEADER && this.hdrLen === 0;
  }

  feed(chunk: Buffer, start = 0, end = chunk.length): void {
    let i = start;
    while (i < end) {
      if (this.state === S_HEADER) {
        const take = Math.min(this.need - this.hdrLen, end - i);
        chunk.copy(this.hdr, this.hdrLen, i, i + take);
        this.hdrLen += take;
        i += take;
        if (this.hdrLen < this.need) return;
        if (this.need === 4) {
          const magic = this.hdr.readUInt32BE(0);
          if (magic === MAGIC.SIMPLE_REPLY) this.need = SIMPLE_REPLY_HEADER_SIZE;
          else if (magic === MAGIC.STRUCTURED_REPLY) {
            if (!this.structured()) throw new NbdProtocolError("structured reply received but not negotiated");
            this.need = STRUCTURED_REPLY_HEADER_SIZE;
          } else {
            throw new NbdProtocolError(`unexpected reply magic 0x${magic.toString(16)}`, { magic });
          }
          continue;
        }
        this.onHeader();
      } else if (this.state === S_DATA) {
        const take = Math.min(this.dataLeft, end - i);
        const buf = this.target!.buf!;
        chunk.copy(buf, this.dataPos, i, i + take);
        this.dataPos += take;
        this.dataLeft -= take;
        i += take;
        if (this.dataLeft === 0) this.endChunk();
      } else {
        const take = Math.min(this.payloadLen - this.collected, end - i);
        chunk.copy(this.payload, this.collected, i, i + take);
        this.collected += take;
        i += take;
        if (this.collected === this.payloadLen) this.onPayload();
      }
    }
  }

  private readCookie(at: number): number {
    const hi = this.hdr.readUInt32BE(at);
    const lo = this.hdr.readUInt32BE(at + 4);
    if (hi >= COOKIE_HI_LIMIT) throw new NbdProtocolError("reply for an unknown cookie", { hi, lo });
    return hi * 0x1_0000_0000 + lo;
  }

  private findTarget(cookie: number): ReplyTarget {
    const t = this.sink.lookup(cookie);
    if (!t) throw new NbdProtocolError(`reply for an unknown cookie ${cookie}`, { cookie });
    return t;
  }

  private onHeader(): void {
    const magic = this.hdr.readUInt32BE(0);
    if (magic === MAGIC.SIMPLE_REPLY) {
      const error = this.hdr.readUInt32BE(4);
      const target = this.findTarget(this.readCookie(8));
      this.target = target;
      this.finishAfter = true;
      if (error !== 0) {
        target.error ??= { code: error, message: "" };
        this.endChunk();
        return;
      }
      if (target.type === CMD.READ) {
        if (target.covered !== 0) throw new NbdProtocolError("simple reply after structured chunks");
        target.covered = target.length;
        this.startData(0, target.length);
        return;
      }
      if (target.type === CMD.BLOCK_STATUS) throw new NbdProtocolError("simple reply to BLOCK_STATUS");
      this.endChunk();
      return;
    }

    this.chunkFlags = this.hdr.readUInt16BE(4);
    this.chunkType = this.hdr.readUInt16BE(6);
    const target = this.findTarget(this.readCookie(8));
    this.chunkLength = this.hdr.readUInt32BE(16);
    this.target = target;
    this.finishAfter = (this.chunkFlags & REPLY_FLAG.DONE) !== 0;
    const len = this.chunkLength;

    switch (this.chunkType) {
      case REPLY_TYPE.NONE:
        if (len !== 0) throw new NbdProtocolError(`NONE chunk with length ${len}`);
        if (!this.finishAfter) throw new NbdProtocolError("NONE chunk without the DONE flag");
        this.endChunk();
        return;
      case REPLY_TYPE.OFFSET_DATA:
        if (target.type !== CMD.READ) throw new NbdProtocolError(`OFFSET_DATA chunk for ${CMD_NAME[target.type]}`);
        if (len <= 8) throw new NbdProtocolError(`OFFSET_DATA chunk with length ${len}`);
        this.dataPrefix = true;
        this.startPayload(8);
        return;
      case REPLY_TYPE.OFFSET_HOLE:
        if (target.type !== CMD.READ) throw new NbdProtocolError(`OFFSET_HOLE chunk for ${CMD_NAME[target.type]}`);
        if (len !== 12) throw new NbdProtocolError(`OFFSET_HOLE chunk with length ${len}`);
        this.startPayload(12);
        return;
      case REPLY_TYPE.BLOCK_STATUS:
        if (target.type !== CMD.BLOCK_STATUS) throw new NbdProtocolError(`BLOCK_STATUS chunk for ${CMD_NAME[target.type]}`);
        if (len < 12 || (len - 4) % 8 !== 0) throw new NbdProtocolError(`BLOCK_STATUS chunk with length ${len}`);
        if (len > MAX_CHUNK_PAYLOAD) throw new NbdProtocolError(`BLOCK_STATUS chunk too large (${len} bytes)`);
        this.startPayload(len);
        return;
      default:
        if ((this.chunkType & 0x8000) === 0) throw new NbdProtocolError(`unknown structured reply type ${this.chunkType}`);
        if (len < 6 || len > 65536 + 14) throw new NbdProtocolError(`error chunk with length ${len}`);
        this.startPayload(len);
    }
  }

  private startData(pos: number, n: number): void {
    this.dataPos = pos;
    this.dataLeft = n;
    this.state = S_DATA;
    if (n === 0) this.endChunk();
  }

  private startPayload(n: number): void {
    if (this.payload.length < n) this.payload = Buffer.allocUnsafe(Math.max(n, 64));
    this.payloadLen = n;
    this.collected = 0;
    this.state = S_PAYLOAD;
  }

  private onPayload(): void {
    const target = this.target!;
    const p = this.payload;
    if (this.dataPrefix) {
      this.dataPrefix = false;
      const off = Number(p.readBigUInt64BE(0));
      const n = this.chunkLength - 8;
      const rel = off - target.offset;
      if (rel < 0 || rel + n > target.length) {
        throw new NbdProtocolError(`OFFSET_DATA chunk ${off}+${n} outside request ${target.offset}+${target.length}`);
      }
      target.covered += n;
      this.startData(rel, n);
      return;
    }
    switch (this.chunkType) {
      case REPLY_TYPE.OFFSET_HOLE: {
        const off = Number(p.readBigUInt64BE(0));
        const n = p.readUInt32BE(8);
        const rel = off - target.offset;
        if (n === 0 || rel < 0 || rel + n > target.length) {
          throw new NbdProtocolError(`OFFSET_HOLE chunk ${off}+${n} outside request ${target.offset}+${target.length}`);
        }
        target.buf!.fill(0, rel, rel + n);
        target.covered += n;
        break;
      }
      case REPLY_TYPE.BLOCK_STATUS: {
        const ctx = p.readUInt32BE(0);
        target.extents ??= new Map();
        if (target.extents.has(ctx)) throw new NbdProtocolError(`two BLOCK_STATUS chunks for context ${ctx}`);
        const list: BlockExtent[] = [];
        let pos = target.offset;
        for (let at = 4; at < this.payloadLen; at += 8) {
          const length = p.readUInt32BE(at);
          const flags = p.readUInt32BE(at + 4);
          if (length === 0) throw new NbdProtocolError("BLOCK_STATUS extent of length 0");
          list.push({ offset: pos, length, flags });
          pos += length;
        }
        target.extents.set(ctx, list);
        break;
      }
      default: {
        // Error chunks: errno(4) message length(2) message [offset(8) for ERROR_OFFSET].
        const code = p.readUInt32BE(0);
        const msgLen = p.readUInt16BE(4);
        const extra = this.chunkType === REPLY_TYPE.ERROR_OFFSET ? 8 : 0;
        if (6 + msgLen + extra > this.payloadLen) throw new NbdProtocolError("error chunk message overruns the chunk");
        const message = p.toString("utf8", 6, 6 + msgLen);
        const e: { code: number; message: string; offset?: number } = { code: code === 0 ? 5 : code, message };
        if (extra) e.offset = Number(p.readBigUInt64BE(6 + msgLen));
        target.error ??= e;
      }
    }
    this.endChunk();
  }

  private endChunk(): void {
    this.state = S_HEADER;
    this.hdrLen = 0;
    this.need = 4;
    const target = this.target!;
    this.target = undefined;
    if (!this.finishAfter) return;
    if (!target.error && target.type === CMD.READ && target.covered !== target.length) {
      throw new NbdProtocolError(`READ reply covered ${target.covered} of ${target.length} bytes`);
    }
    this.sink.complete(target);
  }
}
