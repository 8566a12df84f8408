import { describe, expect, it } from "vitest";
import { backupRequested, ovirtEvent, restoreRequested } from "../../contracts/mod.ts";
import { buildHookEvent, idempotencyKeyProblem } from "./requests.ts";

const now = new Date("2026-01-31T02:00:00.000Z");

describe("hook posts → events", () => {
  it("backup - {vm} becomes a backup.requested with the envelope filled; the id is a hash of route and body", () => {
    const built = buildHookEvent("/v1/backup", '{"vm":"web01","mode":"full"}', { now });
    expect(built.ok).toBe(true);
    if (!built.ok) return;
    expect(built.subject).toBe("backup.requested");
    expect(built.event).toMatchObject({ vm: "web01", mode: "full", time: "2026-01-31T02:00:00.000Z" });
    expect(built.event.id).toMatch(/^hook-[0-9a-f]{32}$/);
    expect(built.event.correlationId).toBe(built.event.id);
    expect(built.msgId).toBe(built.event.id);
    expect(backupRequested.validateOutbound(built.event).ok).toBe(true);
  });

  it("backup - the same body written differently has the same id; another body or route does not", () => {
    const id = (path: "/v1/backup" | "/v1/restore", text: string) => {
      const b = buildHookEvent(path, text, { now });
      return b.ok ? b.event.id : b.reason;
    };
    expect(id("/v1/backup", '{"vm":"web01","mode":"full"}')).toBe(id("/v1/backup", '{ "mode": "full",\n "vm": "web01" }'));
    expect(id("/v1/backup", '{"vm":"web01"}')).not.toBe(id("/v1/backup", '{"vm":"web02"}'));
    expect(id("/v1/backup", '{"vm":"web01"}')).not.toBe(id("/v1/restore", '{"vm":"web01"}'));
  });

  it("ids - an Idempotency-Key wins over the hash; a body's own id wins over both", () => {
    const keyed = buildHookEvent("/v1/backup", '{"vm":"web01"}', { now, idempotencyKey: "vdsm:h1:42" });
    expect(keyed.ok && keyed.event.id).toBe("hook-vdsm:h1:42");
    const own = buildHookEvent("/v1/backup", '{"vm":"web01","id":"mine-1","correlationId":"c-9"}', { now, idempotencyKey: "k" });
    expect(own.ok && [own.event.id, own.msgId, own.event.correlationId]).toEqual(["mine-1", "mine-1", "c-9"]);
    expect(idempotencyKeyProblem("ok-key_1.2:3")).toBeUndefined();
    expect(idempotencyKeyProblem("has space")).toMatch(/characters of/);
    expect(idempotencyKeyProblem("x".repeat(201))).toMatch(/1-200/);
  });

  it("restore - a restore.requested body is taken as the contract says", () => {
    const built = buildHookEvent("/v1/restore", '{"vm":"web01","checkpoint":3}', { now });
    expect(built.ok && built.subject).toBe("restore.requested");
    expect(built.ok && restoreRequested.validateOutbound(built.event).ok).toBe(true);
  });

  it("event - becomes an ovirt.event from the hook, engine defaulting to prd, description as the engine event's words", () => {
    const built = buildHookEvent("/v1/event", JSON.stringify({ kind: "vm-migrating", vm: { id: "5ad2b4f1-9c31-4a4e-8c57-7d1d4c0b9e01", name: "web01" }, description: "before_vm_migrate_source on h1" }), { now });
    expect(built.ok).toBe(true);
    if (!built.ok) return;
    expect(built.subject).toBe("ovirt.event");
    expect(built.event).toMatchObject({
      engine: "prd",
      source: "hook",
      kind: "vm-migrating",
      vm: { id: "5ad2b4f1-9c31-4a4e-8c57-7d1d4c0b9e01", name: "web01" },
      engineEvent: { description: "before_vm_migrate_source on h1", time: "2026-01-31T02:00:00.000Z" },
    });
    expect(ovirtEvent.validateOutbound(built.event).ok).toBe(true);
  });

  it("refusals - readable reasons: bad JSON, missing vm, unknown field, unknown kind, a VM with neither id nor name", () => {
    const reason = (path: "/v1/backup" | "/v1/event", text: string) => {
      const b = buildHookEvent(path, text, { now });
      return b.ok ? "accepted" : b.reason;
    };
    expect(reason("/v1/backup", "{not json")).toMatch(/^not valid JSON/);
    expect(reason("/v1/backup", "{not json")).not.toContain("{not json");
    expect(reason("/v1/backup", "{}")).toBe("vm: required");
    expect(reason("/v1/backup", '{"vm":"web01","mdoe":"full"}')).toBe("mdoe: unknown field");
    expect(reason("/v1/backup", '{"vm":"../etc"}')).toMatch(/^vm: /);
    expect(reason("/v1/backup", "[]")).toMatch(/must be an object/);
    expect(reason("/v1/event", '{"kind":"reboot","vm":{"name":"web01"},"description":"x"}')).toMatch(/^kind: must be one of: "snapshot-restored"/);
    expect(reason("/v1/event", '{"kind":"vm-stopped","description":"x"}')).toBe("vm: required");
    expect(reason("/v1/event", '{"kind":"vm-stopped","vm":{},"description":"x"}')).toBe("vm: needs id or name (or both)");
    expect(reason("/v1/event", '{"kind":"vm-stopped","vm":{"name":"w"},"description":"x","source":"poller"}')).toBe("source: unknown field");
  });
});
