import { describe, expect, it } from "vitest";
import { allContracts, backupRequested, contractFor, contracts, rejected, restoreRequested, subjects } from "./mod.ts";
import { staleSchemas } from "./generate.ts";

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
    }
    for (const [i, example] of c.examples.invalid.entries()) {
      it(`${c.subject} - invalid example ${i} is rejected with a readable reason`, () => {
        const r = c.validate(example);
        expect(r.ok).toBe(false);
        if (r.ok) return;
        expect(r.reason.length).toBeGreaterThan(3);
        expect(r.reason).not.toMatch(/must match \^|#\//); // no raw regex or schema pointers
        expect(r.errors.length).toBeGreaterThan(0);
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
});
