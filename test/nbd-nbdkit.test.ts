import { readFile, writeFile, rm } from "node:fs/promises";
import net from "node:net";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PermanentError, TransientError } from "../contracts/errors.ts";
import {
  NBD_STATE_ZERO,
  NbdClient,
  NbdDisconnectedError,
  NbdError,
  NbdTransientError,
  isNbdReplyError,
} from "../adapters/nbd/mod.ts";
import { patternBytes, startNbdkit, tempDir, type RunningServer } from "./nbd-fixtures.ts";
import { waitFor } from "./harness/wait-for.ts";

const MiB = 1024 * 1024;
const KiB = 1024;

let tmp: Awaited<ReturnType<typeof tempDir>>;
const servers: RunningServer[] = [];
let counter = 0;

beforeAll(async () => {
  tmp = await tempDir("nbd-nbdkit");
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await tmp.cleanup();
});

async function nbdkit(plugin: string, args: string[], filters: string[] = []): Promise<RunningServer> {
  const srv = await startNbdkit({ socket: `${tmp.dir}/k${++counter}.sock`, plugin, args, filters });
  servers.push(srv);
  return srv;
}

describe("NbdClient against nbdkit", () => {
  it("NbdClient - memory plugin: write, read, zero, flush and base:allocation", async () => {
    const srv = await nbdkit("memory", ["16M"]);
    const c = await NbdClient.connect({ socket: srv.socket, metaContexts: ["base:allocation", "qemu:dirty-bitmap:"] });
    try {
      expect(c.size).toBe(16 * MiB);
      expect([...c.contexts.keys()]).toEqual(["base:allocation"]); // nbdkit offers no qemu: contexts
      const data = patternBytes(3 * MiB, 11);
      await c.write(1 * MiB, data);
      await c.writeZeroes(2 * MiB, 64 * KiB, { noHole: true });
      await c.flush();
      const back = await c.read(1 * MiB, 3 * MiB);
      expect(back.subarray(0, 1 * MiB).equals(data.subarray(0, 1 * MiB))).toBe(true);
      expect(back.subarray(1 * MiB, 1 * MiB + 64 * KiB).every((b) => b === 0)).toBe(true);
      expect(back.subarray(1 * MiB + 64 * KiB).equals(data.subarray(1 * MiB + 64 * KiB))).toBe(true);
      const alloc = (await c.blockStatus(0, c.size)).get("base:allocation")!;
      expect(alloc[0]).toEqual({ offset: 0, length: 1 * MiB, flags: 3 });
      expect(alloc.at(-1)!.flags & NBD_STATE_ZERO).toBe(NBD_STATE_ZERO);
      expect(alloc.reduce((s, e) => s + e.length, 0)).toBe(c.size);
    } finally {
      await c.close();
    }
  });

  it("NbdClient - error filter: EIO read is transient and the connection stays usable", async () => {
    const trigger = `${tmp.dir}/eio-trigger`;
    const srv = await nbdkit("memory", ["8M", "error-pread=EIO", "error-pread-rate=100%", `error-pread-file=${trigger}`], ["error"]);
    const c = await NbdClient.connect({ socket: srv.socket });
    try {
      await c.write(0, patternBytes(64 * KiB, 1));
      await writeFile(trigger, "");
      const e = await c.read(0, 64 * KiB).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(NbdTransientError);
      expect(e).toBeInstanceOf(TransientError);
      expect(isNbdReplyError(e)).toBe(true);
      expect((e as NbdTransientError).errno).toBe("EIO");
      expect((e as NbdTransientError).code).toBe("NBD_EIO");
      expect((e as NbdTransientError).command).toBe("READ");
      await rm(trigger);
      expect((await c.read(0, 64 * KiB)).equals(patternBytes(64 * KiB, 1))).toBe(true);
    } finally {
      await c.close();
    }
  });

  it("NbdClient - error filter: ENOSPC write, EPERM zero and EINVAL extents are permanent NbdErrors", async () => {
    const srv = await nbdkit(
      "memory",
      ["8M", "error-pwrite=ENOSPC", "error-pwrite-rate=100%", "error-zero=EPERM", "error-zero-rate=100%", "error-extents=EINVAL", "error-extents-rate=100%"],
      ["error"],
    );
    const c = await NbdClient.connect({ socket: srv.socket, metaContexts: ["base:allocation"] });
    try {
      const w = await c.write(0, Buffer.alloc(4096, 1)).catch((x: unknown) => x);
      expect(w).toBeInstanceOf(NbdError);
      expect(w).toBeInstanceOf(PermanentError);
      expect((w as NbdError).errno).toBe("ENOSPC");
      const z = await c.writeZeroes(0, 4096).catch((x: unknown) => x);
      expect((z as NbdError).errno).toBe("EPERM");
      expect((z as NbdError).command).toBe("WRITE_ZEROES");
      const b = await c.blockStatus(0, c.size).catch((x: unknown) => x);
      expect((b as NbdError).errno).toBe("EINVAL");
      // Many failing requests in flight each get their own error; reads are unaffected.
      const many = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => c.write(i * 4096, Buffer.alloc(4096))));
      expect(many.every((r) => r.status === "rejected" && (r.reason as NbdError).errno === "ENOSPC")).toBe(true);
      expect((await c.read(0, 4096)).every((x) => x === 0)).toBe(true);
    } finally {
      await c.close();
    }
  });

  it("NbdClient - server killed while reads are delayed: all pending reject NBD_DISCONNECTED, nothing hangs", async () => {
    // The log filter (outside the delay) writes "Read id=N ... ..." when a read arrives, so the
    // log shows when the server holds all six reads.
    const log = `${tmp.dir}/delayed-reads.log`;
    const srv = await nbdkit("memory", ["8M", "delay-read=3", `logfile=${log}`], ["log", "delay"]);
    const c = await NbdClient.connect({ socket: srv.socket });
    const reads = Array.from({ length: 6 }, (_, i) => c.read(i * MiB, MiB));
    const settled = Promise.allSettled(reads);
    let arrived = 0;
    await waitFor(
      async () => {
        const text = await readFile(log, "utf8").catch(() => "");
        arrived = text.split("\n").filter((l) => / Read id=\d+ .*\.\.\.$/.test(l)).length;
        return arrived >= 6;
      },
      { what: () => `nbdkit to receive the 6 reads (${arrived} logged in ${log})` },
    );
    expect(c.inFlight).toBe(6);
    const t0 = Date.now();
    srv.kill("SIGKILL");
    const results = await settled;
    expect(Date.now() - t0).toBeLessThan(2000);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      const reason = (r as PromiseRejectedResult).reason as NbdDisconnectedError;
      expect(reason).toBeInstanceOf(NbdDisconnectedError);
      expect(reason.code).toBe("NBD_DISCONNECTED");
      expect(reason.message).toMatch(/disconnected with 6 request\(s\) in flight/);
    }
    await c.close();
  });

  it("NbdClient - honours the server's block size constraints (split, widen, refuse unaligned writes)", async () => {
    const srv = await nbdkit(
      "memory",
      ["8M", "blocksize-minimum=512", "blocksize-preferred=4096", "blocksize-maximum=1M", "blocksize-error-policy=error"],
      ["blocksize-policy"],
    );
    const c = await NbdClient.connect({ socket: srv.socket });
    try {
      expect([c.minBlockSize, c.preferredBlockSize, c.maxBlockSize, c.maxRequestSize]).toEqual([512, 4096, MiB, MiB]);
      const data = patternBytes(5 * MiB, 21);
      await c.write(512, data); // five requests of at most 1 MiB each
      expect((await c.read(512, data.length)).equals(data)).toBe(true);
      expect((await c.read(700, 100)).equals(data.subarray(188, 288))).toBe(true); // widened to 512-byte blocks
      const e = await c.write(700, Buffer.alloc(100)).catch((x: unknown) => x);
      expect((e as PermanentError).code).toBe("NBD_UNALIGNED");
    } finally {
      await c.close();
    }
  });

  it("NbdClient - works without structured replies (simple READ replies) and over TCP", async () => {
    // --no-sr is a server option, so this one is started by hand.
    const sock = `${tmp.dir}/nosr.sock`;
    const proc = execa("nbdkit", ["--no-sr", "--unix", sock, "--foreground", "--exit-with-parent", "pattern", "4M"], { reject: false });
    try {
      // The socket file appears at bind(), before listen(): retry until a connect is accepted.
      const c = await waitFor(() => NbdClient.connect({ socket: sock, metaContexts: ["base:allocation"] }), {
        what: `nbdkit --no-sr to accept a connection on ${sock}`,
      });
      expect(c.structuredReplies).toBe(false);
      expect(c.contexts.size).toBe(0);
      // The pattern plugin stores each 8-byte offset big-endian at that offset.
      const b = await c.read(8 * 1000, 16);
      expect(b.readBigUInt64BE(0)).toBe(8000n);
      expect(b.readBigUInt64BE(8)).toBe(8008n);
      const e = await c.blockStatus(0, 4096).catch((x: unknown) => x);
      expect((e as PermanentError).code).toBe("NBD_NO_META_CONTEXT");
      await c.close();
    } finally {
      proc.kill("SIGTERM");
      await proc;
    }

    const port = await freePort();
    const tcp = execa("nbdkit", ["-i", "127.0.0.1", "-p", String(port), "--foreground", "--exit-with-parent", "memory", "2M"], { reject: false });
    try {
      const c = await waitFor(() => NbdClient.connect({ host: "127.0.0.1", port }), {
        what: `nbdkit to accept a connection on 127.0.0.1:${port}`,
      });
      expect(c).toBeDefined();
      await c.write(4096, Buffer.from("over tcp"));
      expect((await c.read(4096, 8)).toString()).toBe("over tcp");
      await c.close();
    } finally {
      tcp.kill("SIGTERM");
      await tcp;
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
