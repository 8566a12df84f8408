/**
 * nats-server nodes for chaos worlds: fixed ports chosen up front, so a node SIGKILLed and
 * started again on the same store is where its clients left it (they reconnect by themselves).
 * One node, or a 3-node JetStream cluster shaped like infra/nats/cluster (routes on loopback).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";

export class NatsStartError extends Error {}

export interface NatsNode {
  readonly name: string;
  readonly url: string;
  readonly monitorUrl: string;
  running(): boolean;
  start(): Promise<void>;
  /** SIGKILL (no lame duck, no flush): what a crashed host looks like. */
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

/** Free TCP ports on 127.0.0.1 (bound and released at once; the race is accepted for a test machine). */
export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    out.push(
      await new Promise<number>((resolve, reject) => {
        const s = createServer();
        s.once("error", reject);
        s.listen(0, "127.0.0.1", () => {
          const port = (s.address() as { port: number }).port;
          s.close(() => resolve(port));
        });
      }),
    );
  }
  return out;
}

function node(name: string, dir: string, conf: string, port: number, http: number): NatsNode {
  let child: ChildProcess | undefined;
  const confPath = join(dir, `${name}.conf`);
  const exited = (c: ChildProcess) => c.exitCode !== null || c.signalCode !== null;
  const waitExit = (c: ChildProcess) => (exited(c) ? Promise.resolve() : new Promise<void>((r) => c.once("exit", () => r())));
  return {
    name,
    url: `nats://127.0.0.1:${port}`,
    monitorUrl: `http://127.0.0.1:${http}`,
    running: () => !!child && !exited(child),
    async start() {
      await mkdir(dir, { recursive: true });
      await writeFile(confPath, conf);
      // setpriv --pdeathsig: the server dies with the runner even when it is killed itself.
      const c = spawn("setpriv", ["--pdeathsig", "SIGKILL", "--", "nats-server", "-c", confPath], { stdio: ["ignore", "ignore", "pipe"] });
      child = c;
      let log = "";
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new NatsStartError(`${name} not ready after 30 s: ${log.slice(-1500)}`)), 30_000);
        c.stderr!.on("data", (b: Buffer) => {
          if (log.length < 20_000) log += b.toString();
          if (log.includes("Server is ready")) {
            clearTimeout(timer);
            resolve();
          }
        });
        c.once("exit", (code) => {
          clearTimeout(timer);
          reject(new NatsStartError(`${name} exited (${code}) before ready: ${log.slice(-1500)}`));
        });
      });
    },
    async kill9() {
      if (!child || exited(child)) return;
      const c = child;
      c.kill("SIGKILL");
      await waitExit(c);
    },
    async stop() {
      if (!child || exited(child)) return;
      const c = child;
      c.kill("SIGTERM");
      const t = setTimeout(() => c.kill("SIGKILL"), 5000);
      await waitExit(c);
      clearTimeout(t);
    },
  };
}

export async function singleNats(dir: string): Promise<NatsNode[]> {
  const [port, http] = await freePorts(2);
  const store = join(dir, "js");
  const conf = [
    "server_name: chaos-nats",
    `listen: 127.0.0.1:${port}`,
    `http: 127.0.0.1:${http}`,
    `jetstream { store_dir: ${JSON.stringify(store)}, max_memory_store: 64MB, max_file_store: 2GB }`,
    "max_payload: 1MB",
  ].join("\n");
  const n = node("nats", dir, conf, port!, http!);
  await n.start();
  return [n];
}

/** Three nodes, cluster "ferry", like infra/nats/cluster/nats-{1,2,3}.conf. */
export async function clusterNats(dir: string): Promise<NatsNode[]> {
  const ports = await freePorts(9);
  const routes = [0, 1, 2].map((i) => `nats-route://127.0.0.1:${ports[6 + i]}`);
  const nodes = [0, 1, 2].map((i) => {
    const conf = [
      `server_name: ferry-nats-${i + 1}`,
      `listen: 127.0.0.1:${ports[i]}`,
      `http: 127.0.0.1:${ports[3 + i]}`,
      `jetstream { store_dir: ${JSON.stringify(join(dir, `n${i + 1}`, "js"))}, max_memory_store: 64MB, max_file_store: 2GB }`,
      `cluster { name: ferry, listen: 127.0.0.1:${ports[6 + i]}, routes: [ ${routes.join(", ")} ] }`,
      "max_payload: 1MB",
    ].join("\n");
    return node(`ferry-nats-${i + 1}`, join(dir, `n${i + 1}`), conf, ports[i]!, ports[3 + i]!);
  });
  await Promise.all(nodes.map((n) => n.start()));
  return nodes;
}
