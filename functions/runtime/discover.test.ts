import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { discoverFunctions, selectFunctions, UnknownFunctionError } from "./discover.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-discover-"));
  for (const name of ["b-fn", "a-fn", "runtime", ".hidden", "no-main"]) await mkdir(join(dir, name));
  for (const name of ["b-fn", "a-fn", "runtime", ".hidden"]) await writeFile(join(dir, name, "main.ts"), "export default 1;\n");
  await writeFile(join(dir, "stray.ts"), "\n");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("runtime discover", () => {
  it("discoverFunctions - every folder with a main.ts except runtime/ and dot folders, sorted", async () => {
    const found = await discoverFunctions(dir);
    expect(found.map((f) => f.name)).toEqual(["a-fn", "b-fn"]);
    expect(found[0]!.main).toBe(join(dir, "a-fn", "main.ts"));
  });

  it("selectFunctions - 'all' selects every function; names keep their order; unknown names list what exists", async () => {
    const found = await discoverFunctions(dir);
    expect(selectFunctions(found, ["all"]).map((f) => f.name)).toEqual(["a-fn", "b-fn"]);
    expect(selectFunctions(found, ["b-fn", "a-fn"]).map((f) => f.name)).toEqual(["b-fn", "a-fn"]);
    expect(() => selectFunctions(found, ["a-fn", "nope"])).toThrow(/unknown function\(s\): nope; available: a-fn, b-fn/);
    expect(() => selectFunctions(found, [])).toThrow(UnknownFunctionError);
  });
});
