/**
 * `ferry checkpoints`, `ferry verify` and `ferry state` on a real store (and a real nats-server for
 * state): what an operator types and sees.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "../adapters/nats/mod.ts";
import { openStore, type Store } from "../adapters/store/mod.ts";
import checkpoints from "../cli/commands/checkpoints.ts";
import state from "../cli/commands/state.ts";
import verify from "../cli/commands/verify.ts";
import type { Command, CommandIO } from "../cli/command.ts";
import { startNatsServer, type NatsServer } from "./harness/nats-server.ts";
import { rotVisibleByte, SimVm } from "./store-fixtures.ts";

let tmp: string;
let store: Store;
let server: NatsServer;
let nc: NatsConnection;

async function ferry(cmd: Command, args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: CommandIO = {
    stdout: new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }),
    stderr: new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) }),
    env: { BACKUP_DIR: store.root, ...env },
    cwd: tmp,
    signal: new AbortController().signal,
  };
  return { code: await cmd.run(args, io), out, err };
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "ferry-cli-"));
  store = openStore({ root: join(tmp, "store") });
  await store.init();
  const vm = new SimVm(store, tmp, { id: "vm-cli-1", name: "web01" }, 21);
  await vm.addDisk("d1", 1024 * 1024);
  for (let i = 0; i < 4; i++) {
    if (i === 2) await vm.addDisk("d2", 512 * 1024);
    await vm.backup(new Date(Date.UTC(2025, 0, 10 + i, 2)), i === 3 ? { full: true, reason: "max chain length" } : {});
  }
  server = await startNatsServer();
  nc = await connectNats({ servers: server.url, name: "store-cli-test" });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe("store cli", () => {
  it("checkpoints - numbers, kinds, chains and reasons from the store, without the bus", async () => {
    const r = await ferry(checkpoints, ["web01"]);
    expect(r.code).toBe(0);
    const lines = r.out.split("\n");
    expect(lines[0]).toBe(`VM web01 (id vm-cli-1): 4 restore points — from the store ${store.root} (read directly, works without the bus)`);
    expect(lines[2]).toMatch(/^#\s+time \(UTC\)\s+kind\s+chain\s+size\s+verified\s+boot-tested\s+reason$/);
    expect(lines[3]).toMatch(/^1\s+2025-01-10 02:00:00\s+full\s+self-contained\s+\S+ \S+\s+-\s+-\s+first backup$/);
    expect(lines[4]).toMatch(/^2\s+2025-01-11 02:00:00\s+incremental\s+on #1, 2 layers/);
    expect(lines[5]).toMatch(/^3\s+2025-01-12 02:00:00\s+incremental \(some disks full\)\s+on #2, 3 layers/);
    expect(lines[6]).toMatch(/^4\s+2025-01-13 02:00:00\s+full\s+self-contained.*max chain length$/);
    const json = JSON.parse((await ferry(checkpoints, ["web01", "--json"])).out);
    expect(json.points.map((p: { number: number; kind: string; parent?: number }) => [p.number, p.kind, p.parent])).toEqual([[1, "full", undefined], [2, "incremental", 1], [3, "incremental", 2], [4, "full", undefined]]);
    expect(json.source).toBe("store");
    expect((await ferry(checkpoints, ["db99"])).code).toBe(1);
    expect((await ferry(checkpoints, ["../etc"])).code).toBe(4);
  });

  it("verify - every point ok and recorded; a rotted layer fails with exit 1 and names the point", async () => {
    const ok = await ferry(verify, ["web01"]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/all verified \(4 restore points, read from the store directly\)/);
    expect((await ferry(checkpoints, ["web01"])).out).toMatch(/^4\s.*\sok \d{4}-\d\d-\d\d \d\d:\d\d/m);
    // Rot a byte of the first full layer that point 2 still reads.
    const record = (await store.readManifest("web01"))!;
    const base = record.restorePoints[0]!.disks[0]!;
    await rotVisibleByte(store.absolute(record.restorePoints[1]!.disks[0]!.layer), store.absolute(base.layer), 2);
    const bad = await ferry(verify, ["web01", "--checkpoint", "2", "--json"]);
    expect(bad.code).toBe(1);
    const doc = JSON.parse(bad.out);
    expect(doc.ok).toBe(false);
    expect(doc.results[0].point.number).toBe(2);
    expect(doc.results[0].disks[0].badBlockCount).toBeGreaterThan(0);
    expect((await ferry(verify, ["web01", "--checkpoint", "latest"])).code).toBe(0);
  });

  it("state - rebuild into an empty bus, export, import into another bucket", async () => {
    const env = { NATS_URL: server.url };
    const rebuilt = await ferry(state, ["rebuild"], env);
    expect(rebuilt.err).toBe("");
    expect(rebuilt.code).toBe(0);
    expect(rebuilt.out).toMatch(/web01 \(vm-cli-1\): created/);
    expect((await ferry(state, ["rebuild"], env)).out).toMatch(/web01 \(vm-cli-1\): unchanged/);
    const exported = await ferry(state, ["export"], env);
    expect(JSON.parse(exported.out.trim())).toMatchObject({ vmId: "vm-cli-1", record: { vm: { name: "web01" } } });
    // Import into a bus that lost its data.
    await (await new Kvm(nc).open("ferry-chains")).destroy();
    const file = join(tmp, "chains.jsonl");
    await writeFile(file, exported.out);
    const imported = await ferry(state, ["import", file, "--json"], env);
    expect(imported.code).toBe(0);
    expect(JSON.parse(imported.out).counts).toMatchObject({ created: 1 });
    await writeFile(file, "not json\n");
    const bad = await ferry(state, ["import", file], env);
    expect(bad.code).toBe(4);
    expect(bad.err).toMatch(/line 1 is not JSON; nothing was imported/);
    expect((await ferry(state, ["frobnicate"], env)).code).toBe(2);
  });
});
