import { describe, expect, it } from "vitest";
import { CMD, MAGIC, REPLY_FLAG, REPLY_TYPE } from "./constants.ts";
import { NbdProtocolError } from "./errors.ts";
import { ReplyParser, type ReplyTarget } from "./reply-parser.ts";

function target(cookie: number, type: number, offset: number, length: number): ReplyTarget {
  return {
    cookie,
    type,
    offset,
    length,
    buf: type === CMD.READ ? Buffer.alloc(length, 0xee) : undefined,
    covered: 0,
    error: undefined,
    extents: undefined,
  };
}

function simple(cookie: number, error: number, data?: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32BE(MAGIC.SIMPLE_REPLY, 0);
  h.writeUInt32BE(error, 4);
  h.writeBigUInt64BE(BigInt(cookie), 8);
  return data ? Buffer.concat([h, data]) : h;
}

function chunk(cookie: number, type: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(MAGIC.STRUCTURED_REPLY, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(BigInt(cookie), 8);
  h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}

function offsetData(offset: number, data: Buffer): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(offset));
  return Buffer.concat([b, data]);
}

function hole(offset: number, n: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeBigUInt64BE(BigInt(offset));
  b.writeUInt32BE(n, 8);
  return b;
}

function errorPayload(code: number, msg: string, offset?: number): Buffer {
  const m = Buffer.from(msg);
  const b = Buffer.alloc(6 + m.length + (offset === undefined ? 0 : 8));
  b.writeUInt32BE(code, 0);
  b.writeUInt16BE(m.length, 4);
  m.copy(b, 6);
  if (offset !== undefined) b.writeBigUInt64BE(BigInt(offset), 6 + m.length);
  return b;
}

function blockStatus(ctx: number, extents: Array<[number, number]>): Buffer {
  const b = Buffer.alloc(4 + 8 * extents.length);
  b.writeUInt32BE(ctx, 0);
  extents.forEach(([len, flags], i) => {
    b.writeUInt32BE(len, 4 + 8 * i);
    b.writeUInt32BE(flags, 8 + 8 * i);
  });
  return b;
}

/** Feed `stream` cut at every possible single split point, and in 1-byte pieces. */
function feedAllWays(stream: Buffer, make: () => ReplyTarget[], check: (done: ReplyTarget[]) => void): void {
  const cuts: number[][] = [[]];
  for (let i = 1; i < stream.length; i += Math.max(1, Math.floor(stream.length / 40))) cuts.push([i]);
  cuts.push(Array.from({ length: stream.length - 1 }, (_, i) => i + 1));
  for (const cut of cuts) {
    const targets = make();
    const done: ReplyTarget[] = [];
    const p = new ReplyParser(
      { lookup: (c) => targets.find((t) => t.cookie === c && !done.includes(t)), complete: (t) => done.push(t) },
      () => true,
    );
    let prev = 0;
    for (const at of [...cut, stream.length]) {
      p.feed(stream, prev, at);
      prev = at;
    }
    expect(p.idle).toBe(true);
    check(done);
  }
}

describe("ReplyParser", () => {
  it("ReplyParser - simple replies: READ payload, WRITE ack and error", () => {
    const data = Buffer.from("0123456789abcdef");
    const stream = Buffer.concat([simple(1, 0, data), simple(2, 0), simple(3, 5)]);
    feedAllWays(
      stream,
      () => [target(1, CMD.READ, 100, 16), target(2, CMD.WRITE, 0, 10), target(3, CMD.READ, 0, 10)],
      (done) => {
        expect(done.map((t) => t.cookie)).toEqual([1, 2, 3]);
        expect(done[0]!.buf!.equals(data)).toBe(true);
        expect(done[1]!.error).toBeUndefined();
        expect(done[2]!.error).toEqual({ code: 5, message: "" });
      },
    );
  });

  it("ReplyParser - structured READ with data and hole chunks in any order fills the buffer", () => {
    const a = Buffer.alloc(8, 0x61);
    const c = Buffer.alloc(8, 0x63);
    const stream = Buffer.concat([
      chunk(7, REPLY_TYPE.OFFSET_DATA, 0, offsetData(1016, c)),
      chunk(7, REPLY_TYPE.OFFSET_HOLE, 0, hole(1008, 8)),
      chunk(7, REPLY_TYPE.OFFSET_DATA, REPLY_FLAG.DONE, offsetData(1000, a)),
    ]);
    feedAllWays(
      stream,
      () => [target(7, CMD.READ, 1000, 24)],
      (done) => {
        expect(done).toHaveLength(1);
        expect(done[0]!.buf!.toString("hex")).toBe(a.toString("hex") + "00".repeat(8) + c.toString("hex"));
      },
    );
  });

  it("ReplyParser - interleaved replies of different requests complete independently", () => {
    const stream = Buffer.concat([
      chunk(1, REPLY_TYPE.OFFSET_DATA, 0, offsetData(0, Buffer.from("ab"))),
      chunk(2, REPLY_TYPE.BLOCK_STATUS, 0, blockStatus(0, [[4096, 3], [8192, 0]])),
      chunk(2, REPLY_TYPE.BLOCK_STATUS, REPLY_FLAG.DONE, blockStatus(2, [[65536, 1]])),
      chunk(1, REPLY_TYPE.OFFSET_DATA, REPLY_FLAG.DONE, offsetData(2, Buffer.from("cd"))),
    ]);
    feedAllWays(
      stream,
      () => [target(1, CMD.READ, 0, 4), target(2, CMD.BLOCK_STATUS, 4096, 12288)],
      (done) => {
        expect(done.map((t) => t.cookie)).toEqual([2, 1]);
        expect(done[1]!.buf!.toString()).toBe("abcd");
        expect(done[0]!.extents!.get(0)).toEqual([
          { offset: 4096, length: 4096, flags: 3 },
          { offset: 8192, length: 8192, flags: 0 },
        ]);
        expect(done[0]!.extents!.get(2)).toEqual([{ offset: 4096, length: 65536, flags: 1 }]);
      },
    );
  });

  it("ReplyParser - error chunks record errno, message and offset; NONE ends the reply", () => {
    const stream = Buffer.concat([
      chunk(4, REPLY_TYPE.ERROR_OFFSET, 0, errorPayload(5, "bad sector", 4100)),
      chunk(4, REPLY_TYPE.NONE, REPLY_FLAG.DONE, Buffer.alloc(0)),
      chunk(5, REPLY_TYPE.ERROR, REPLY_FLAG.DONE, errorPayload(28, "full")),
    ]);
    feedAllWays(
      stream,
      () => [target(4, CMD.READ, 4096, 8), target(5, CMD.WRITE, 0, 1)],
      (done) => {
        expect(done[0]!.error).toEqual({ code: 5, message: "bad sector", offset: 4100 });
        expect(done[1]!.error).toEqual({ code: 28, message: "full" });
      },
    );
  });

  it("ReplyParser - protocol violations throw NbdProtocolError", () => {
    const cases: Array<[Buffer, ReplyTarget[]]> = [
      [Buffer.from("deadbeefdeadbeef", "hex"), []],
      [simple(9, 0), [target(1, CMD.WRITE, 0, 1)]],
      [chunk(1, REPLY_TYPE.OFFSET_DATA, REPLY_FLAG.DONE, offsetData(10, Buffer.alloc(8))), [target(1, CMD.READ, 0, 8)]],
      [chunk(1, REPLY_TYPE.OFFSET_DATA, REPLY_FLAG.DONE, offsetData(0, Buffer.alloc(4))), [target(1, CMD.READ, 0, 8)]],
      [chunk(1, REPLY_TYPE.NONE, 0, Buffer.alloc(0)), [target(1, CMD.WRITE, 0, 8)]],
      [chunk(1, 77, REPLY_FLAG.DONE, Buffer.alloc(4)), [target(1, CMD.WRITE, 0, 8)]],
      [chunk(1, REPLY_TYPE.BLOCK_STATUS, REPLY_FLAG.DONE, blockStatus(0, [[0, 0]])), [target(1, CMD.BLOCK_STATUS, 0, 8)]],
    ];
    for (const [stream, targets] of cases) {
      const p = new ReplyParser({ lookup: (c) => targets.find((t) => t.cookie === c), complete: () => {} }, () => true);
      expect(() => p.feed(stream)).toThrow(NbdProtocolError);
    }
    const noSr = new ReplyParser({ lookup: () => target(1, CMD.READ, 0, 1), complete: () => {} }, () => false);
    expect(() => noSr.feed(chunk(1, REPLY_TYPE.NONE, 1, Buffer.alloc(0)))).toThrow(/not negotiated/);
  });
});
