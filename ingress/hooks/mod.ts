/** The hook endpoint (`ferry hooks serve`): see README.md. */
export { BusUnavailableError, createHooksServer, type HookLog, type HookPublisher, type HooksServer, type HooksServerOptions } from "./server.ts";
export { buildHookEvent, hookEventBody, hookRoutes, idempotencyKeyProblem, type BuiltEvent, type HookEventBody, type HookPath, type HookSubject } from "./requests.ts";
export { bearerChecker, HOOKS_TOKEN_ENV, HooksTokenError, HooksTokenInvalidError, HooksTokenMissingError, MIN_TOKEN_LENGTH, resolveHooksToken, type ResolvedToken } from "./token.ts";
