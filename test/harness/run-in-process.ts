/**
 * Test helper: run function definitions in this process against a server, with the logs
 * captured as parsed objects. `stop()` aborts and waits for the clean shutdown.
 */
import { Writable } from "node:stream";
import { connect } from "@nats-io/transport-node";
import { createLogger, runFunctions, type FunctionDefinition, type RunOptions, type RunResult } from "../../functions/runtime/mod.ts";

export interface InProcessRun {
  readonly logs: Record<string, unknown>[];
  readonly serviceId: string;
  stop(): Promise<RunResult>;
}

export async function runInProcess(
  url: string,
  defs: FunctionDefinition[],
  o: Partial<Pick<RunOptions, "graceMs" | "pullExpiresMs" | "maxInFlight">> = {},
): Promise<InProcessRun> {
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _e, cb) {
      for (const l of chunk.toString().split("\n")) if (l) logs.push(JSON.parse(l));
      cb();
    },
  });
  const nc = await connect({ servers: url, name: "in-process-functions" });
  const abort = new AbortController();
  let serviceId = "";
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  const running = runFunctions(defs, {
    nc,
    log: createLogger({ destination, level: "debug" }),
    signal: abort.signal,
    graceMs: o.graceMs ?? 2000,
    pullExpiresMs: o.pullExpiresMs ?? 1000,
    ...(o.maxInFlight ? { maxInFlight: o.maxInFlight } : {}),
    onReady: (info) => {
      serviceId = info.serviceId;
      ready();
    },
  });
  await Promise.race([readyP, running.then(() => Promise.reject(new Error("runFunctions ended before ready")))]);
  return {
    logs,
    get serviceId() {
      return serviceId;
    },
    async stop() {
      abort.abort();
      return running;
    },
  };
}
