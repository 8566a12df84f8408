import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import {
  allContracts,
  backupCompleted,
  backupFailed,
  backupRequested,
  chainUpdated,
  contractFor,
  contracts,
  diskTransferred,
  rejected,
  restoreFailed,
  restoreRequested,
  subjects,
} from "./mod.ts";
import { schemasDir, staleSchemas } from "./generate.ts";
import { strictSchema } from "./define.ts";

describe("contracts", () => {
  for (const c of allContracts) {
    for (const [i, example] of c.examples.valid.entries()) {
      it(`${c.subject} - valid example ${i} is accepted`, () => {
        const r = c.validate(example);
        expect(r.ok ? "" : r.reason).toBe("");
        // Wire JSON and parsed value are the same thing: no transforms.
        const again = c.validateText(JSON.stringify(example));
        expect(again.ok && again.value).toEqual(JSON.parse(JSON.stringify(example)));
      });
      it(`${c.subject} - valid example ${i} passes the strict outbound schema (it declares every field it uses)`, () => {
        const r = c.validateOutbound(JSON.parse(JSON.stringify(example)));
        expect(r.ok ? "" : r.reason).toBe("");
      });
    }
    for (const [i, example] of c.examples.invalid.entries()) {
      it(`${c.subject} - invalid example ${i} is rejected with a readable reason`, () => {
        const r = c.validate(example);
        expect(r.ok).toBe(false);
        if (r.ok) return;
        expect(r.reason.length).toBeGreaterThan(3);
        expect(r.reason).not.toMatch(/must match \^|#\//); // no raw regex or schema pointers
        expect(r.errors.length).toBeGreaterThan(0);
        expect(c.validateOutbound(example).ok).toBe(false);
      });
    }
    it(`${c.subject} - has examples of both kinds and a JSON Schema with $id and title`, () => {
      expect(c.examples.valid.length).toBeGreaterThan(0);
      expect(c.examples.invalid.length).toBeGreaterThan(0);
      expect(c.jsonSchema.$id).toMatch(/^https:\/\/ferry\.dev\/schemas\/.+\.json$/);
      expect(c.jsonSchema.title).toBe(c.subject);
      expect(Object.isFrozen(c)).toBe(true);
    });
  }

  it("backup.requested - rejected reasons for the issue's examples are readable", () => {
    const reason = (text: string) => {
      const r = backupRequested.validateText(text);
      return r.ok ? "accepted" : r.reason;
    };
    expect(reason("not json")).toBe("not valid JSON (Unexpected token 'o')");
    expect(reason("{}")).toBe("vm: required");
    expect(reason('{"vm":""}')).toBe("vm: must not be empty");
    expect(reason('{"vm":"../etc"}')).toBe(
      "vm: may contain only letters, digits, '.', '_' and '-' (no '/', spaces or other characters)",
    );
    expect(reason('{"vm":".."}')).toBe("vm: must not be '.' or '..'");
    expect(reason('{"vm":"web01","mdoe":"full"}')).toBe("mdoe: unknown field");
    expect(reason('{"vm":"web01","mode":"diff"}')).toBe('mode: must be one of: "auto", "full", "incremental"');
    expect(reason('{"vm":"web01","time":"yesterday"}')).toBe("time: must be an ISO-8601 date-time like 2025-01-31T02:00:00Z");
    expect(reason("[]")).toBe("must be an object");
    expect(reason('{"vm":"web01"}')).toBe("accepted");
  });

  it("backup.requested - {vm} is complete and withDefaults fills the documented defaults", () => {
    const r = backupRequested.validateText('{"vm":"web01"}');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(backupRequested.withDefaults(r.value)).toEqual({ vm: "web01", mode: "auto", engine: "prd" });
    expect(backupRequested.withDefaults({ vm: "a", mode: "full" })).toEqual({ vm: "a", mode: "full", engine: "prd" });
  });

  it("restore.requested - checkpoint accepts a number or 'latest' and says so when wrong", () => {
    expect(restoreRequested.withDefaults({ vm: "web01" })).toEqual({ vm: "web01", checkpoint: "latest", target: "dr", mode: "restore" });
    const r = restoreRequested.validate({ vm: "web01", checkpoint: "first" });
    expect(r.ok || r.reason).toBe('checkpoint: must be an integer or "latest"');
  });

  it("contracts - every documented default appears in the field's description", () => {
    for (const c of allContracts) {
      const props = (c.jsonSchema.properties ?? {}) as Record<string, { description?: string }>;
      for (const [key, value] of Object.entries(c.defaults)) {
        expect(props[key]?.description ?? "", `${c.subject}.${key}`).toContain(`Default: '${String(value)}'`);
      }
    }
  });

  it("contracts - reports several fields at once, one message per field", () => {
    const r = restoreRequested.validate({ vm: "", mode: "x", extra: 1 });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.path).sort()).toEqual(["extra", "mode", "vm"]);
  });

  it("contracts - contractFor finds concrete subjects and any <subject>.rejected", () => {
    for (const s of Object.values(subjects)) expect(contractFor(s)).toBe(contracts[s]);
    expect(contractFor("backup.requested.rejected")).toBe(rejected);
    expect(contractFor("nope")).toBeUndefined();
  });

  it("contracts - committed JSON Schema files are in sync with the sources (npx tsx contracts/generate.ts)", async () => {
    expect(await staleSchemas()).toEqual([]);
  });

  it("contracts - the outbound schema closes every object level, and only that differs from the published schema", () => {
    for (const c of allContracts) {
      const objects = objectSchemas(c.outboundJsonSchema);
      expect(objects.length, c.subject).toBeGreaterThan(0);
      for (const [path, o] of objects) {
        // A map (`additionalProperties: {schema}`, no named properties) declares its values: it stays.
        const isMap = !o.properties && typeof o.additionalProperties === "object" && o.additionalProperties !== null;
        if (!isMap) expect(o.additionalProperties, `${c.subject} ${path}`).toBe(false);
      }
      const { $id: _outId, ...outbound } = c.outboundJsonSchema;
      const { $id: _id, ...published } = strictSchema(c.jsonSchema);
      expect(outbound).toEqual(published);
      expect(c.outboundJsonSchema.$id).toBe(String(c.jsonSchema.$id).replace("/schemas/", "/schemas/outbound/"));
    }
  });

  it("contracts - strictSchema keeps a map's own rule for its extra fields and does not touch non-object schemas", () => {
    const s = strictSchema({
      type: "object",
      properties: { tags: { type: "object", additionalProperties: { type: "string" } }, list: { type: "array", items: { type: "object", properties: { a: {} } } } },
      anyOf: [{ type: "string" }, { type: "object", properties: {} }],
    });
    expect(s.additionalProperties).toBe(false);
    const props = s.properties as Record<string, Record<string, unknown>>;
    expect(props.tags!.additionalProperties).toEqual({ type: "string" });
    expect((props.list!.items as Record<string, unknown>).additionalProperties).toBe(false);
    expect(props.list!.additionalProperties).toBeUndefined();
    expect(s.anyOf).toEqual([{ type: "string" }, { type: "object", properties: {}, additionalProperties: false }]);
  });

  it("events - an undeclared field passes a consumer (validate) but not an outbound check, at any level, with a readable reason", () => {
    const [ev] = chainUpdated.examples.valid as Record<string, any>[];
    expect(chainUpdated.validate({ ...ev, mdoe: "full" }).ok).toBe(true);
    const top = chainUpdated.validateOutbound({ ...ev, mdoe: "full" });
    expect(top.ok || top.reason).toBe("mdoe: unknown field");
    const nested = chainUpdated.validateOutbound({ ...ev, restorePoint: { ...ev!.restorePoint, extra: 1 } });
    expect(nested.ok || nested.reason).toBe("restorePoint.extra: unknown field");
    const inArray = chainUpdated.validateOutbound({
      ...ev,
      vm: { ...ev!.vm, uuid: "x" },
      restorePoint: { ...ev!.restorePoint, disks: [{ ...ev!.restorePoint.disks[0], layer: { ...ev!.restorePoint.disks[0].layer, sha: "x" } }] },
    });
    expect(inArray.ok || inArray.errors.map((e) => `${e.path}: ${e.message}`).sort()).toEqual([
      "restorePoint.disks.0.layer.sha: unknown field",
      "vm.uuid: unknown field",
    ]);
    const [done] = backupCompleted.examples.valid as Record<string, unknown>[];
    expect(backupCompleted.validateOutbound({ ...done, handledBy: 1 }).ok).toBe(false);
    // Commands refuse unknown fields inbound already; the outbound check agrees.
    expect(backupRequested.validate({ vm: "web01", mdoe: "full" }).ok).toBe(false);
    expect(backupRequested.validateOutbound({ vm: "web01", mdoe: "full" }).ok).toBe(false);
    expect(backupRequested.validateOutbound({ vm: "web01", mode: "full" }).ok).toBe(true);
  });

  it("disk.transferred - every field the pipeline sends is declared, with its shape", () => {
    const [ev] = diskTransferred.examples.valid as Record<string, unknown>[];
    const refused = (patch: Record<string, unknown>) => {
      const r = diskTransferred.validateOutbound({ ...ev, ...patch });
      return r.ok ? "accepted" : r.reason;
    };
    expect(refused({})).toBe("accepted");
    expect(refused({ skippedDisks: [{ id: "d-2", alias: "cd", reason: "content type iso is not VM data" }] })).toBe("accepted");
    expect(refused({ skippedDisks: [{ id: "d-2", alias: "cd", reason: "x", size: 1 }] })).toBe("skippedDisks.0.size: unknown field");
    expect(refused({ skippedDisks: [{ id: "d-2", reason: "x" }] })).toBe("skippedDisks.0.alias: required");
    expect(refused({ transfer: { bytes: 1, seconds: 0.25, zeroBytes: 0 } })).toBe("transfer.zeroBytes: unknown field");
    expect(refused({ transfer: { bytes: 1 } })).toBe("transfer.seconds: required");
    expect(refused({ digestsFile: undefined })).toBe("digestsFile: required");
    expect(refused({ takenAt: undefined })).toBe("takenAt: required");
    expect(refused({ checkpointId: undefined, fromCheckpointId: undefined })).toBe("accepted");
    expect(refused({ checkpointId: "" })).toBe("checkpointId: must not be empty");
  });

  it("backup.failed, restore.failed - say where the alert goes (engine, vmId), both optional", () => {
    for (const c of [backupFailed, restoreFailed]) {
      const [ev] = c.examples.valid as Record<string, unknown>[];
      expect(c.validateOutbound({ ...ev, engine: "prd", vmId: "6c7a3e52-9a5e-4b0e-8e49-0e0a4b1f2c11" }).ok).toBe(true);
      expect(c.validateOutbound(ev).ok).toBe(true);
      const bad = c.validateOutbound({ ...ev, engine: "../prd", vmId: "" });
      expect(bad.ok || bad.errors.map((e) => e.path).sort()).toEqual(["engine", "vmId"]);
      const props = c.jsonSchema.properties as Record<string, { description?: string }>;
      for (const f of ["engine", "vmId"]) expect(props[f]?.description, `${c.subject}.${f}`).toMatch(/^Where the alert for this failure goes/);
      expect(c.jsonSchema.required).not.toContain("engine");
      expect(c.jsonSchema.required).not.toContain("vmId");
    }
  });

  it("contracts - the committed JSON Schemas of disk.transferred and chain.updated list the fields the pipeline sends", async () => {
    const committed = async (file: string) => JSON.parse(await readFile(`${schemasDir}${file}`, "utf8")) as Schema;
    const dt = await committed("disk.transferred.json");
    const dtProps = dt.properties!;
    for (const f of ["checkpointId", "fromCheckpointId", "digestsFile", "takenAt", "transfer", "skippedDisks", "engine"]) {
      expect(dtProps[f], `disk.transferred.${f}`).toBeDefined();
      expect(dtProps[f]!.description, `disk.transferred.${f} has a description`).toMatch(/\w{3,}/);
    }
    expect(dt.required).toEqual(expect.arrayContaining(["digestsFile", "takenAt", "transfer"]));
    expect(dt.required).not.toContain("checkpointId");
    expect(dt.required).not.toContain("fromCheckpointId");
    expect(dt.required).not.toContain("skippedDisks");
    expect(Object.keys(dtProps.transfer!.properties!).sort()).toEqual(["bytes", "seconds"]);
    expect(dtProps.transfer!.required).toEqual(["bytes", "seconds"]);
    const skipped = dtProps.skippedDisks!.items as Schema;
    expect(Object.keys(skipped.properties!).sort()).toEqual(["alias", "id", "reason"]);
    expect(skipped.required).toEqual(["id", "alias", "reason"]);

    const cu = await committed("chain.updated.json");
    const rp = cu.properties!.restorePoint!;
    expect(rp.properties!.checkpointId?.description).toMatch(/checkpoint/);
    expect(rp.required).not.toContain("checkpointId");
    for (const f of ["reason", "engine", "runId"]) expect(cu.properties![f]?.description, `chain.updated.${f}`).toMatch(/\w{3,}/);
    expect(cu.properties!.reason!.maxLength).toBe(1000);
    expect(cu.required).not.toContain("reason");
  });
});

interface Schema {
  type?: unknown;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: unknown;
  additionalProperties?: unknown;
  description?: string;
  maxLength?: number;
  [k: string]: unknown;
}

/** Every object schema inside a JSON Schema, with a path for messages. */
function objectSchemas(schema: unknown, path = "#"): [string, Schema][] {
  if (!schema || typeof schema !== "object") return [];
  if (Array.isArray(schema)) return schema.flatMap((s, i) => objectSchemas(s, `${path}/${i}`));
  const s = schema as Schema;
  const here: [string, Schema][] = s.type === "object" || s.properties ? [[path, s]] : [];
  const nested = Object.entries(s)
    .filter(([k]) => ["properties", "items", "anyOf", "oneOf", "allOf", "prefixItems", "$defs"].includes(k))
    .flatMap(([k, v]) => (k === "properties" || k === "$defs" ? Object.entries(v as object).flatMap(([n, p]) => objectSchemas(p, `${path}/${k}/${n}`)) : objectSchemas(v, `${path}/${k}`)));
  return [...here, ...nested];
}
