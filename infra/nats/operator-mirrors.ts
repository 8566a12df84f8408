/**
 * The read-only copies operators read (account OPERATORS in infra/nats/auth.conf): mirrors of
 * FERRY_COMMANDS and FERRY_EVENTS and of the KV buckets ferry-chains, ferry-runs and ferry-leases,
 * under the same names, so `ferry events`, `ferry status` and `ferry checkpoints --kv` work
 * unchanged with the operator user. A mirror follows its origin within a second; whatever an
 * operator does with a copy stays in OPERATORS.
 *
 * Run once after the functions have provisioned FERRY (and again when Ferry adds a stream or
 * bucket to this list), as ops-admin:
 *
 *   FERRY_NATS_OPS_ADMIN_PASSWORD=... node infra/nats/operator-mirrors.ts [nats://127.0.0.1:4222] [--replicas 3]
 *
 * Idempotent: an existing copy is left as it is.
 */
import { jetstreamManager, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import { bucketDefinitions, buckets, streams, type BucketDefinition, type StreamDefinition } from "../streams/mod.ts";
import { isMissingResource } from "../../adapters/nats/errors.ts";

/** Where OPERATORS reaches FERRY's consumer-create API (the `to` of its imports in auth.conf). */
export const OPERATOR_MIRROR_API = "$JS.ferry.API";
/** The subjects FERRY delivers the mirrored messages to (exported to OPERATORS in auth.conf). */
export const OPERATOR_MIRROR_DELIVER = "ferry.replica";

export const operatorStreams: readonly StreamDefinition[] = [streams.commands, streams.events];
export const operatorBuckets: readonly BucketDefinition[] = [buckets.chains, buckets.runs, buckets.leases].map((name) => {
  const def = bucketDefinitions.find((b) => b.name === name);
  if (!def) throw new Error(`no bucket definition for ${name}`);
  return def;
});

const external = { api: OPERATOR_MIRROR_API, deliver: OPERATOR_MIRROR_DELIVER };

async function exists(jsm: JetStreamManager, name: string): Promise<boolean> {
  try {
    await jsm.streams.info(name);
    return true;
  } catch (err) {
    if (isMissingResource(err)) return false;
    throw err;
  }
}

/** Create the missing copies (as ops-admin, in OPERATORS). */
export async function ensureOperatorMirrors(nc: NatsConnection, o: { replicas?: number } = {}): Promise<Record<string, "created" | "exists">> {
  const replicas = o.replicas ?? 1;
  const jsm = await jetstreamManager(nc);
  const report: Record<string, "created" | "exists"> = {};
  for (const def of operatorStreams) {
    if (await exists(jsm, def.name)) {
      report[def.name] = "exists";
      continue;
    }
    const config: Partial<StreamConfig> & { name: string } = {
      name: def.name,
      description: `Read-only copy of FERRY's ${def.name} for operators.`,
      mirror: { name: def.name, external },
      max_age: nanos(def.maxAgeMs),
      max_bytes: def.maxBytes,
      max_msg_size: def.maxMsgSize,
      num_replicas: replicas,
    };
    await jsm.streams.add(config);
    report[def.name] = "created";
  }
  const kvm = new Kvm(nc);
  for (const def of operatorBuckets) {
    const stream = `KV_${def.name}`;
    if (await exists(jsm, stream)) {
      report[stream] = "exists";
      continue;
    }
    await kvm.create(def.name, {
      description: `Read-only copy of FERRY's ${def.name} for operators.`,
      mirror: { name: def.name, external },
      history: def.history,
      ttl: def.ttlMs,
      maxValueSize: def.maxValueSize,
      replicas,
    });
    report[stream] = "created";
  }
  return report;
}

async function main(argv: string[]): Promise<number> {
  const { connect } = await import("@nats-io/transport-node");
  const replicasAt = argv.indexOf("--replicas");
  const replicas = replicasAt >= 0 ? Number(argv[replicasAt + 1]) : 1;
  const servers = argv.find((a, i) => !a.startsWith("--") && argv[i - 1] !== "--replicas") ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  const pass = process.env.FERRY_NATS_OPS_ADMIN_PASSWORD;
  if (!pass || !Number.isInteger(replicas) || replicas < 1) {
    process.stderr.write("usage: FERRY_NATS_OPS_ADMIN_PASSWORD=... node infra/nats/operator-mirrors.ts [servers] [--replicas N]\n");
    return 2;
  }
  const nc = await connect({ servers: servers.split(","), user: process.env.FERRY_NATS_OPS_ADMIN_USER ?? "ops-admin", pass, name: "ferry-operator-mirrors" });
  try {
    for (const [name, change] of Object.entries(await ensureOperatorMirrors(nc, { replicas }))) process.stdout.write(`${name}: ${change}\n`);
    return 0;
  } finally {
    await nc.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`operator-mirrors: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  });
}
