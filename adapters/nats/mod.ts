export { connectNats, NatsUnavailableError, type NatsConnectOptions } from "./connect.ts";
export { ensureBucket, ensureConsumer, ensureStream, provisionInfra, type Change, type ProvisionOptions, type ProvisionReport } from "./provision.ts";
export {
  DEFAULT_NATS_URL,
  DEPRECATED_NATS_URL_ENV,
  NATS_URL_ENV,
  natsSettings,
  natsUrlFromEnv,
  serverList,
  serversText,
  type NatsSettings,
  type NatsSettingsSource,
} from "./settings.ts";
export { followBus, subjectsIntersect, type BusEvent, type FollowOptions } from "./follow.ts";
