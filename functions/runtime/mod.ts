/** The function host's public surface. See README.md. */
export { defineFunction, type FunctionSpec } from "./define.ts";
export { runFunctions, type RunOptions, type RunResult } from "./run.ts";
export { createLogger, redactDeep, redactPaths, type Logger, type LoggerOptions } from "./log.ts";
export { discoverFunctions, loadFunction, selectFunctions, UnknownFunctionError, type FoundFunction } from "./discover.ts";
export { hostFunctions, type HostOptions } from "./host.ts";
export { createPublisher, checkOutbound, ContractViolationError, PublishFailedError, type Publisher } from "./publisher.ts";
export { backoffFor, errorLine, FunctionRunner, type RunnerStats } from "./runner.ts";
export { Semaphore } from "./semaphore.ts";
export { createRegistry, serveMetrics, vmMetricsSource, parseListen, type MetricsOptions, type MetricsServer, type MetricsSource, type VmMetricsOptions } from "./metrics.ts";
export { SERVICE_NAME } from "./service.ts";
export type {
  Delivery,
  Envelope,
  Failure,
  FailureMapper,
  FunctionContext,
  FunctionDefinition,
  FunctionFactory,
  Handler,
  HandlerContext,
  Outbound,
  Outcome,
  PublishAck,
  Received,
} from "./types.ts";
export { PermanentError, TransientError } from "../../contracts/errors.ts";
