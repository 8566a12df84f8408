export { connectNats, NatsUnavailableError, type NatsConnectOptions } from "./connect.ts";
export { ensureBucket, ensureConsumer, ensureStream, provisionInfra, type Change, type ProvisionOptions, type ProvisionReport } from "./provision.ts";
export { DEFAULT_NATS_URL, natsSettings, type NatsSettingsSource } from "./settings.ts";
export { followBus, subjectsIntersect, type BusEvent, type FollowOptions } from "./follow.ts";
export { openSession, resolveConfig, type Session, type SessionOptions } from "./session.ts";
