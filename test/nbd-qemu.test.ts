import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PermanentError, TransientError } from "../contracts/errors.ts";
import {
  NBD_STATE_DIRTY,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  NbdClient,
  NbdDisconnectedError,
  NbdError,
  type BlockExtent,
} from "../adapters/nbd/mod.ts";
import {
  patternBytes,
  qemuImgBitmapAdd,
  qemuImgCreate,
  qemuIoWrite,
  startQemuNbd,
  tempDir,
  type RunningServer,
} from "./nbd-fixtures.ts";

const MiB = 1024 * 1024;
const KiB = 1024;

let tmp: Awaited<ReturnType<typeof tempDir>>;
const servers: RunningServer[] = [];

beforeAll(async () => {
  tmp = await tempDir("nbd-qemu");
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await tmp.cleanup();
});

let counter = 0;
async function serve(o: { size?: number; bitmap?: string; prepare?: (img: string) => Promise<void>; readOnly?: boolean; exportName?: string; allocationDepth?: boolean } = {}) {
  const n = ++counter;
  const image = `${tmp.dir}/img${n}.qcow2`;
  await qemuImgCreate(image, o.size ?? 64 * MiB);
  if (o.prepare) await o.prepare(image);
  const srv = await startQemuNbd({
    image,
    socket: `${tmp.dir}/s${n}.sock`,
    bitmap: o.bitmap,
    readOnly: o.readOnly,
    exportName: o.exportName ?? "disk",
    allocationDepth: o.allocationDepth,
  });
  servers.push(srv);
  return { image, srv };
}

/** nbdinfo (libnbd) as an independent reader of the same export's allocation map. */
async function nbdinfoMap(socket: string, exportName: string, context = "base:allocation"): Promise<BlockExtent[]> {
  const uri = `nbd+unix:///${exportName}?socket=${socket}`;
  const { stdout } = await execa("nbdinfo", [`--map=${context}`, "--json", uri]);
  const rows = JSON.parse(stdout) as Array<{ offset: number; length: number; type: number }>;
  const out: BlockExtent[] = [];
  for (const r of rows) {
    const last = out[out.length - 1];
    if (last && last.flags === r.type) last.length += r.length;
    else out.push({ offset: r.offset, length: r.length, flags: r.type });
  }
  return out;
}

describe("NbdClient against qemu-nbd", () => {
  it("NbdClient - negotiates size, block sizes, flags and meta contexts", async () => {
    const { srv } = await serve({ size: 48 * MiB });
    const c = await NbdClient.connect({ socket: srv.socket, exportName: "disk", metaContexts: ["base:allocation"] });
    try {
      expect(c.size).toBe(48 * MiB);
      expect(c.exportName).toBe("disk");
      expect(c.structuredReplies).toBe(true);
      expect([...c.contexts.keys()]).toEqual(["base:allocation"]);
      expect(c.maxBlockSize).toBe(32 * MiB);
      expect(c.maxRequestSize).toBe(32 * MiB);
      expect(c.minBlockSize).toBeGreaterThanOrEqual(1);
      expect(c.readOnly).toBe(false);
    } finally {
      await c.close();
    }
  });

  it("NbdClient - writes and reads back 40 MiB, split above the 32 MiB request ceiling, durable across connections", async () => {
    const { srv } = await serve();
    const data = patternBytes(40 * MiB, 1);
    const c = await NbdClient.connect({ socket: srv.socket, exportName: "disk" });
    await c.write(3 * MiB, data);
    await c.flush();
    expect((await c.read(3 * MiB, data.length)).equals(data)).toBe(true);
    await c.close();

    const c2 = await NbdClient.connect({ socket: srv.socket, exportName: "disk" });
    try {
      const back = await c2.read(3 * MiB - 10, data.length + 20);
      expect(back.subarray(0, 10).every((b) => b === 0)).toBe(true);
      expect(back.subarray(10, 10 + data.length).equals(data)).toBe(true);
      expect(back.subarray(10 + data.length).every((b) => b === 0)).toBe(true);
    } finally {
      await c2.close();
    }
  });

  it("NbdClient - pipelines many concurrent reads and writes on one connection", async () => {
    const { srv } = await serve();
    const c = await NbdClient.connect({ socket: srv.socket, exportName: "disk" });
    try {
      const pieces = Array.from({ length: 64 }, (_, i) => patternBytes(256 * KiB, 100 + i));
      const writes = pieces.map((p, i) => c.write(i * 256 * KiB, p));
      expect(c.inFlight).toBeGreaterThan(1);
      await Promise.all(writes);
      const reads = pieces.map((_, i) => c.read(i * 256 * KiB, 256 * KiB));
      expect(c.inFlight).toBeGreaterThan(1);
      const back = await Promise.all(reads);
      back.forEach((b, i) => expect(b.equals(pieces[i]!)).toBe(true));
    } finally {
      await c.close();
    }
  });

  it("NbdClient - reads unallocated (hole) ranges as zeroes next to data", async () => {
    const { srv } = await serve({ prepare: (img) => qemuIoWrite(img, 2 * MiB, 64 * KiB, 0x5a) });
    const c = await NbdClient.connect({ socket: srv.socket, exportName: "disk" });
    try {
      // Several times, so recycled (dirty) allocUnsafe memory would show through a missed hole.
      for (let round = 0; round < 4; round++) {
        const b = await c.read(0, 8 * MiB);
        expect(b.subarray(0, 2 * MiB).every((x) => x === 0)).toBe(true);
        expect(b.subarray(2 * MiB, 2 * MiB + 64 * KiB).every((x) => x === 0x5a)).toBe(true);
        expect(b.subarray(2 * MiB + 64 * KiB).every((x) => x === 0)).toBe(true);
        await c.write(5 * MiB, Buffer.alloc(0)); // zero-length calls are no-ops
      }
    } finally {
      await c.close();
    }
  });

  it("NbdClient - writeZeroes (with and without NO_HOLE) zeroes data; blockStatus matches nbdinfo --map", async () => {
    const { srv } = await serve();
    const c = await NbdClient.connect({ socket: srv.socket, exportName: "disk", metaContexts: ["base:allocation"] });
    try {
      await c.write(0, patternBytes(8 * MiB, 3));
      await c.writeZeroes(1 * MiB, 1 * MiB, { noHole: true });
      await c.writeZeroes(4 * MiB, 2 * MiB);
      await c.flush();
      const b = await c.read(0, 8 * MiB);
      expect(b.subarray(1 * MiB, 2 * MiB).every((x) => x === 0)).toBe(true);
      expect(b.subarray(4 * MiB, 6 * MiB).every((x) => x === 0)).toBe(true);
      expect(b.subarray(0, 1 * MiB).some((x) => x !== 0)).toBe(true);

      const status = await c.blockStatus(0, c.size);
      const alloc = status.get("base:allocation")!;
      // Covers the export exactly, in order, without gaps.
      let pos = 0;
      for (const e of alloc) {
        expect(e.offset).toBe(pos);
        pos += e.length;
      }
      expect(pos).toBe(c.size);
      const flagsAt = (off: number) => alloc.find((e) => off >= e.offset && off < e.offset + e.length)!.flags;
      expect(flagsAt(0) & NBD_STATE_ZERO).toBe(0);
      expect(flagsAt(1 * MiB) & NBD_STATE_ZERO).toBe(NBD_STATE_ZERO);
      expect(flagsAt(4 * MiB) & NBD_STATE_ZERO).toBe(NBD_STATE_ZERO);
      expect(flagsAt(20 * MiB)).toBe(NBD_STATE_ZERO | NBD_STATE_HOLE);
      expect(alloc).toEqual(await nbdinfoMap(srv.socket, "disk"));

      // A sub-range is clipped to exactly what was asked.
      const part = (await c.blockStatus(512 * KiB, 1 * MiB)).get("base:allocation")!;
      expect(part[0]!.offset).toBe(512 * KiB);
      expect(part.reduce((s, e) => s + e.length, 0)).toBe(1 * MiB);
    } finally {
      await c.close();
    }
  });

  it("NbdClient - resolves the qemu:dirty-bitmap: prefix and reports dirty ranges at bitmap granularity", async () => {
    const { srv } = await serve({
      bitmap: "ck1",
      allocationDepth: true,
      prepare: async (img) => {
        await qemuIoWrite(img, 0, 1 * MiB, 0x11); // before the checkpoint: clean
        await qemuImgBitmapAdd(img, "ck1");
        await qemuIoWrite(img, 4 * MiB + 4 * KiB, 8 * KiB, 0x22); // after: dirty, inside one 64 KiB granule
      },
    });
    const c = await NbdClient.connect({
      socket: srv.socket,
      exportName: "disk",
      metaContexts: ["base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:"],
    });
    try {
      expect([...c.contexts.keys()].sort()).toEqual(["base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:ck1"]);
      let dirty = (await c.blockStatus(0, c.size)).get("qemu:dirty-bitmap:ck1")!;
      expect(dirty).toEqual([
        { offset: 0, length: 4 * MiB, flags: 0 },
        { offset: 4 * MiB, length: 64 * KiB, flags: NBD_STATE_DIRTY },
        { offset: 4 * MiB + 64 * KiB, length: c.size - 4 * MiB - 64 * KiB, flags: 0 },
      ]);
      // Writes through qemu-nbd land in the (enabled) bitmap too.
      await c.write(10 * MiB, patternBytes(128 * KiB, 9));
      await c.flush();
      dirty = (await c.blockStatus(0, c.size)).get("qemu:dirty-bitmap:ck1")!;
      expect(dirty.filter((e) => e.flags & NBD_STATE_DIRTY).map((e) => [e.offset, e.length])).toEqual([
        [4 * MiB, 64 * KiB],
        [10 * MiB, 128 * KiB],
      ]);
      expect(dirty).toEqual(await nbdinfoMap(srv.socket, "disk", "qemu:dirty-bitmap:ck1"));
    } finally {
      await c.close();
    }

    // The exact context name works as well.
    const c2 = await NbdClient.connect({ socket: srv.socket, exportName: "disk", metaContexts: ["qemu:dirty-bitmap:ck1"] });
    try {
      expect([...c2.contexts.keys()]).toEqual(["qemu:dirty-bitmap:ck1"]);
    } finally {
      await c2.close();
    }
  });

  it("NbdClient - unknown export and missing socket fail with typed errors", async () => {
    const { srv } = await serve();
    const err = await NbdClient.connect({ socket: srv.socket, exportName: "nope" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as PermanentError).code).toBe("NBD_EXPORT_NOT_FOUND");

    const err2 = await NbdClient.connect({ socket: `${tmp.dir}/missing.sock` }).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(TransientError);
    expect((err2 as TransientError).code).toBe("NBD_CONNECT_FAILED");
  });

  it("NbdClient - connect honours AbortSignal and the handshake timeout when the server is at its connection limit", async () => {
    const n = ++counter;
    const image = `${tmp.dir}/img${n}.qcow2`;
    await qemuImgCreate(image, 4 * MiB);
    const srv = await startQemuNbd({ image, socket: `${tmp.dir}/s${n}.sock`, shared: 1 });
    servers.push(srv);
    const first = await NbdClient.connect({ socket: srv.socket });
    try {
      // qemu-nbd stops answering new clients while --shared=1 is in use.
      const ac = new AbortController();
      const t0 = Date.now();
      // Not a wait for a state: the timer is the caller giving up while the handshake hangs,
      // which is what this test is about.
      setTimeout(() => ac.abort(new Error("stop waiting")), 150);
      const aborted = await NbdClient.connect({ socket: srv.socket, signal: ac.signal }).catch((e: unknown) => e);
      expect((aborted as Error).message).toBe("stop waiting");
      const timedOut = await NbdClient.connect({ socket: srv.socket, timeoutMs: 150 }).catch((e: unknown) => e);
      expect(timedOut).toBeInstanceOf(TransientError);
      expect((timedOut as TransientError).code).toBe("NBD_CONNECT_FAILED");
      expect(Date.now() - t0).toBeLessThan(5000);
      expect((await first.read(0, 4)).length).toBe(4);
    } finally {
      await first.close();
    }
  });

  it("NbdClient - read-only export refuses writes with EPERM; out-of-range requests are refused before sending", async () => {
    const { srv } = await serve({ readOnly: true });
    const c = await NbdClient.connect({ socket: srv.socket, exportName: "disk" });
    try {
      expect(c.readOnly).toBe(true);
      const e = await c.write(0, Buffer.alloc(4096)).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NbdError);
      expect((e as NbdError).errno).toBe("EPERM");
      const r = await c.read(c.size - 10, 20).catch((x: unknown) => x);
      expect((r as PermanentError).code).toBe("NBD_OUT_OF_RANGE");
      expect((await c.read(c.size - 10, 10)).length).toBe(10);
    } finally {
      await c.close();
    }
  });

  it("NbdClient - qemu-nbd killed with requests in flight rejects them all with NBD_DISCONNECTED", async () => {
    const { srv } = await serve({ prepare: (img) => qemuIoWrite(img, 0, 32 * MiB, 0x33) });
    const c = await NbdClient.connect({ socket: srv.socket, exportName: "disk" });
    const reads = Array.from({ length: 200 }, (_, i) => c.read((i % 8) * 4 * MiB, 4 * MiB));
    const settled = Promise.allSettled(reads);
    srv.kill("SIGKILL");
    const results = await settled;
    const rejected = results.filter((r) => r.status === "rejected");
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected) {
      expect(r.reason).toBeInstanceOf(NbdDisconnectedError);
      expect(r.reason).toBeInstanceOf(TransientError);
      expect((r.reason as TransientError).code).toBe("NBD_DISCONNECTED");
    }
    const later = await c.read(0, 4096).catch((x: unknown) => x);
    expect((later as TransientError).code).toBe("NBD_DISCONNECTED");
    await c.close();
  });

  it("NbdClient - close() waits for requests in flight, then refuses new ones", async () => {
    const { srv } = await serve();
    const c = await NbdClient.connect({ socket: srv.socket, exportName: "disk" });
    const data = patternBytes(4 * MiB, 5);
    const w = c.write(0, data);
    const closing = c.close();
    await expect(w).resolves.toBeUndefined();
    await closing;
    const e = await c.read(0, 10).catch((x: unknown) => x);
    expect((e as PermanentError).code).toBe("NBD_CLOSED");
    const c2 = await NbdClient.connect({ socket: srv.socket, exportName: "disk" });
    expect((await c2.read(0, data.length)).equals(data)).toBe(true);
    await c2.close();
  });
});
