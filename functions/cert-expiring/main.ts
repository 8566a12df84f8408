/**
 * cert-expiring process wiring: the config's engines with their trusted CA files, KV
 * ferry-certs, pki-resource and TLS handshakes (adapters/ovirt). The cert.renewed it publishes
 * is what every running process (its own too) reloads its trusted CAs on (pipeline/trust.ts).
 */
import type { LoadedConfig } from "../../config/load.ts";
import { CONFIG_DEFAULTS } from "../../contracts/config.ts";
import { fetchEngineCa } from "../../adapters/ovirt/mod.ts";
import { buckets } from "../../infra/streams/mod.ts";
import { engineCertStatus } from "../../pipeline/cert-status.ts";
import { alertEngineFor, certEnginesOf, readTrustedCa, storeTrustedCa } from "../../pipeline/trust.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { certExpiringFunction } from "./definition.ts";
import type { CertExpiringDeps } from "./handler.ts";

const create: FunctionFactory<LoadedConfig> = async (ctx) => {
  const engines = certEnginesOf(ctx.config);
  const kv = await ctx.kvm.open(buckets.certs);
  const warnDays = ctx.config.certs?.warnDays ?? CONFIG_DEFAULTS.certWarnDays;
  const deps: CertExpiringDeps = {
    engine: (name) => engines[name],
    alertEngine: (name, reachable) => alertEngineFor(engines, name, reachable, CONFIG_DEFAULTS.engine),
    readTrusted: readTrustedCa,
    fetchCa: (url, caPem) => fetchEngineCa(url, { ...(caPem ? { caPem } : {}), timeoutMs: 30_000 }),
    store: (o) => storeTrustedCa({ ...o, kv }),
    status: (name) => engineCertStatus(name, engines[name]!, { warnDays, kv }),
    warnDays,
    clock: () => new Date(),
  };
  return certExpiringFunction(deps);
};
export default create;
