/**
 * A hook post → the event Ferry publishes: which route means which subject, the body each route
 * takes, the envelope (id, time, correlationId) and the JetStream msgID. Pure: no HTTP, no NATS.
 *
 * The msgID is the event id: the body's own `id` (commands may carry one), else
 * `hook-<Idempotency-Key>`, else `hook-<hash of route and body>`, so a hook that posts the same
 * thing twice (a retry after a timeout) is stored once within the stream's duplicate window.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { CONFIG_DEFAULTS } from "../../contracts/config.ts";
import { engineName, id, vmRef } from "../../contracts/fields.ts";
import { backupRequested, ovirtEvent, restoreRequested, type Contract, type FieldError } from "../../contracts/mod.ts";
import { ovirtEventKind } from "../../contracts/ovirt-event.ts";
import { compileSchema, readableErrors, reasonOf } from "../../contracts/validation.ts";

export const hookRoutes = {
  "/v1/backup": "backup.requested",
  "/v1/restore": "restore.requested",
  "/v1/event": "ovirt.event",
} as const;
export type HookPath = keyof typeof hookRoutes;
export type HookSubject = (typeof hookRoutes)[HookPath];

export function isHookPath(p: string): p is HookPath {
  return Object.hasOwn(hookRoutes, p);
}

/** What POST /v1/event takes: the hook's view of an ovirt.event (the envelope is the server's). */
export const hookEventBody = z.strictObject({
  engine: engineName.optional().describe(`The engine the VM runs on. Default: '${CONFIG_DEFAULTS.engine}'.`),
  kind: ovirtEventKind,
  vm: z.strictObject({ id: id.optional().describe("VM id (VDSM's vmId)."), name: vmRef.optional().describe("VM name.") }).describe("At least one of id and name."),
  disks: z.array(id).max(256).optional().describe("Disk ids the event is about; absent for the whole VM."),
  description: z.string().min(1).max(2000).describe("What happened, in the hook's words (recorded as the reason of the next full)."),
});
export type HookEventBody = z.infer<typeof hookEventBody>;

const checkEventBody = compileSchema(z.toJSONSchema(hookEventBody, { target: "draft-2020-12", io: "input" }));

/** `Idempotency-Key` / `X-Request-Id`: becomes part of an event id and a msgID. */
const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{1,200}$/;

export type BuiltEvent =
  | { readonly ok: true; readonly subject: HookSubject; readonly event: Record<string, unknown> & { id: string }; readonly msgId: string }
  | { readonly ok: false; readonly errors: readonly FieldError[]; readonly reason: string };

export interface BuildOptions {
  readonly idempotencyKey?: string | undefined;
  readonly now: Date;
}

function refused(errors: FieldError[]): BuiltEvent {
  return { ok: false, errors, reason: reasonOf(errors) };
}

/** JSON with object keys sorted at every level: the same body hashes the same however it was written. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value);
}

function eventId(path: HookPath, body: unknown, key: string | undefined): string {
  if (key !== undefined) return `hook-${key}`;
  return `hook-${createHash("sha256").update(`${path}\n${canonicalJson(body)}`).digest("hex").slice(0, 32)}`;
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false; error: FieldError } {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    // V8 quotes the input after ', "'; keep only the part before it (a reason never echoes the body).
    const msg = err instanceof Error ? err.message : String(err);
    const cut = msg.indexOf(', "');
    return { ok: false, error: { path: "", message: `not valid JSON (${(cut > 0 ? msg.slice(0, cut) : msg).slice(0, 120)})` } };
  }
}

function command(contract: Contract<any, any>, path: HookPath, body: unknown, o: BuildOptions): BuiltEvent {
  const checked = contract.validate(body);
  if (!checked.ok) return refused([...checked.errors]);
  const given = checked.value as Record<string, unknown>;
  const idValue = typeof given.id === "string" ? given.id : eventId(path, body, o.idempotencyKey);
  const event = { ...given, id: idValue, time: given.time ?? o.now.toISOString(), correlationId: given.correlationId ?? idValue };
  return finish(contract, event);
}

function engineEvent(body: unknown, o: BuildOptions): BuiltEvent {
  if (!checkEventBody(body)) return refused(readableErrors(checkEventBody.errors));
  const b = body as HookEventBody;
  if (b.vm.id === undefined && b.vm.name === undefined) return refused([{ path: "vm", message: "needs id or name (or both)" }]);
  const idValue = eventId("/v1/event", body, o.idempotencyKey);
  const time = o.now.toISOString();
  const event = {
    id: idValue,
    time,
    correlationId: idValue,
    engine: b.engine ?? CONFIG_DEFAULTS.engine,
    source: "hook",
    kind: b.kind,
    vm: { ...(b.vm.id !== undefined ? { id: b.vm.id } : {}), ...(b.vm.name !== undefined ? { name: b.vm.name } : {}) },
    ...(b.disks ? { disks: b.disks } : {}),
    engineEvent: { time, description: b.description },
  };
  return finish(ovirtEvent, event);
}

// The event is checked as it will be published (strictly): what fails here would fail there.
function finish(contract: Contract<any, any>, event: Record<string, unknown> & { id: string }): BuiltEvent {
  const out = contract.validateOutbound(event);
  if (!out.ok) return refused([...out.errors]);
  return { ok: true, subject: contract.subject as HookSubject, event, msgId: event.id };
}

/** Check an Idempotency-Key / X-Request-Id value; the problem, or undefined when it is usable. */
export function idempotencyKeyProblem(key: string): string | undefined {
  return IDEMPOTENCY_KEY.test(key) ? undefined : "must be 1-200 characters of A-Z a-z 0-9 . _ : -";
}

/** The event a post to `path` with body `text` becomes, or the readable reasons it cannot. */
export function buildHookEvent(path: HookPath, text: string, o: BuildOptions): BuiltEvent {
  const parsed = parseJson(text);
  if (!parsed.ok) return refused([parsed.error]);
  switch (path) {
    case "/v1/backup":
      return command(backupRequested, path, parsed.value, o);
    case "/v1/restore":
      return command(restoreRequested, path, parsed.value, o);
    case "/v1/event":
      return engineEvent(parsed.value, o);
  }
}
