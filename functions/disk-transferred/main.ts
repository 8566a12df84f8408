/** disk-transferred process wiring: the chain KV and the store's manifest writer. */
import type { LoadedConfig } from "../../config/load.ts";
import { buckets } from "../../infra/streams/mod.ts";
import type { FunctionFactory } from "../runtime/mod.ts";
import { createStorePort } from "../reconciler/store-port.ts";
import { createChainStore } from "../reconciler/chain-kv.ts";
import { diskTransferredFunction } from "./definition.ts";

const create: FunctionFactory<LoadedConfig> = async ({ config, kvm }) =>
  diskTransferredFunction({
    chains: createChainStore(await kvm.open(buckets.chains)),
    store: createStorePort(config.store.path),
    clock: () => new Date(),
  });
export default create;
