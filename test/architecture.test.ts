/**
 * The architecture's walls (docs/architecture.md §1 "Rules", pipeline/README.md), checked on the
 * source tree. No servers: it reads files. The checks live in test/harness/walls.ts; the first
 * block runs each over small in-memory fixtures so none of them can pass by matching nothing.
 */
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  checkAdapterWalls,
  checkChaosWalls,
  checkEngineFaultText,
  checkFunctionWalls,
  checkIngressWalls,
  checkConsoleWalls,
  checkPipelineWalls,
  formatViolations,
  importsOf,
  readTree,
  type SourceFile,
  type Violation,
} from "./harness/walls.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

const at = (vs: Violation[]) => vs.map((v) => `${v.file}:${v.line}`);

describe("architecture walls - the checks catch what they should (fixtures)", () => {
  it("importsOf - static, multi-line, type-only, re-export, side-effect, dynamic and require; comments ignored", () => {
    const f: SourceFile = {
      path: "functions/a/x.ts",
      text: [
        'import { one } from "./one.ts";', // 1
        "import {", // 2
        "  two,",
        "  three,",
        '} from "../b/two.ts";', // 5
        'import type { T } from "../runtime/types.ts";', // 6
        'export * from "../c/all.ts";', // 7
        'export { x as y } from "../d/x.ts";', // 8
        'import "../e/side-effect.ts";', // 9
        'const m = await import("../f/lazy.ts");', // 10
        'const r = require("../g/old.cjs");', // 11
        '// import { no } from "../h/commented.ts";', // 12
        "/**", // 13
        ' * import { no } from "../h/doc.ts";',
        " */",
        'import { readFile } from "node:fs/promises";', // 16
        'const s = "taken from \\"../h/string.ts\\"";', // 17: not an import
      ].join("\n"),
    };
    expect(importsOf(f).map((r) => [r.line, r.target ?? r.specifier, r.typeOnly])).toEqual([
      [1, "functions/a/one.ts", false],
      [2, "functions/b/two.ts", false],
      [6, "functions/runtime/types.ts", true],
      [7, "functions/c/all.ts", false],
      [8, "functions/d/x.ts", false],
      [9, "functions/e/side-effect.ts", false],
      [10, "functions/f/lazy.ts", false],
      [11, "functions/g/old.cjs", false],
      [16, "node:fs/promises", false],
    ]);
  });

  it("a. functions-wall - a function importing another function's folder is caught, runtime and shared code are not", () => {
    const files: SourceFile[] = [
      { path: "functions/disk-transferred/handler.ts", text: 'import { record } from "../chain-updated/handler.ts";\nimport { defineFunction } from "../runtime/mod.ts";\nimport { x } from "./local.ts";' },
      { path: "functions/chain-updated/main.ts", text: 'import type { Deps } from "../../pipeline/composition.ts";\nconst h = await import("../backup-requested/handler.ts");' },
      { path: "functions/backup-requested/handler.test.ts", text: 'import {\n  a,\n} from "../../functions/alerts/handler.ts";' },
      { path: "functions/runtime/host.ts", text: 'export { h } from "../alerts/handler.ts";' },
      { path: "pipeline/composition.ts", text: 'import { h } from "../functions/alerts/handler.ts";' }, // rule c, not a
    ];
    const found = checkFunctionWalls(files);
    expect(at(found)).toEqual([
      "functions/disk-transferred/handler.ts:1",
      "functions/chain-updated/main.ts:2",
      "functions/backup-requested/handler.test.ts:1",
      "functions/runtime/host.ts:1",
    ]);
    expect(found[0]!.found).toBe('imports "../chain-updated/handler.ts" (functions/chain-updated/handler.ts)');
    expect(checkFunctionWalls(files.slice(4))).toEqual([]);
  });

  it("b. adapters-wall - adapters importing config, dataplane, functions, pipeline, cli or lab are caught", () => {
    const forbidden = ["config/load.ts", "dataplane/blkhash.ts", "functions/runtime/mod.ts", "pipeline/ports.ts", "cli/ferry.ts", "lab/mod.ts"];
    const files: SourceFile[] = forbidden.map((target, i) => ({ path: `adapters/store/f${i}.ts`, text: `import { x } from "../../${target}";` }));
    files.push({
      path: "adapters/ovirt/client.ts",
      text: 'import { PermanentError } from "../../contracts/errors.ts";\nimport { redactText } from "../secrets.ts";\nimport { decide } from "../../domain/backup/decide.ts";\nimport { fetch } from "undici";',
    });
    files.push({ path: "dataplane/download.ts", text: 'import { x } from "../lab/mod.ts";' }); // not under adapters/
    expect(at(checkAdapterWalls(files))).toEqual(forbidden.map((_, i) => `adapters/store/f${i}.ts:1`));
  });

  it("c. pipeline-wall - pipeline importing a function folder is caught; functions/runtime only as a type", () => {
    const files: SourceFile[] = [
      { path: "pipeline/composition.ts", text: 'import { handler } from "../functions/backup-requested/handler.ts";' },
      { path: "pipeline/ports.ts", text: 'import type { FunctionContext } from "../functions/runtime/types.ts";\nexport type { Logger } from "../functions/runtime/log.ts";' },
      { path: "pipeline/reconcile.ts", text: 'import { defineFunction } from "../functions/runtime/mod.ts";' },
      { path: "pipeline/run-ids.ts", text: 'import { compactTime } from "../domain/time.ts";' },
    ];
    const found = checkPipelineWalls(files);
    expect(at(found)).toEqual(["pipeline/composition.ts:1", "pipeline/reconcile.ts:1"]);
    expect(found[1]!.found).toMatch(/import type` only/);
  });

  it("d. engine-fault-text - regexes over detail/reason/message and any .detail are caught; other regexes are not", () => {
    const lines = [
      "if (status(err) === 400 && /already exists/i.test(String((err as { detail?: string }).detail))) return;", // 1
      "const detail = engineDetail(err);", // 2
      "if (/doesn't exist|is invalid/i.test(detail)) throw new NeedFullError();", // 3
      "return /bitmap|checkpoint/i.test(err instanceof Error ? `${err.message}` : String(err));", // 4
      "if (e.message.match(/locked/)) retry();", // 5
      "const short = reason.replace(/\\s+/g, ' ');", // 6
      "if (", // 7
      "  LOCKED.test(", // 8
      "    faultText(err),", // 9
      "  )", // 10
      ") wait();",
      "const { detail } = err;", // 12
      "const d = err['detail'];", // 13
      "const has = 'detail' in err;", // 14
      // Not violations:
      "const byId = UUID.test(nameOrId) ? get(nameOrId) : undefined;",
      'return iso.replace(/[-:]/g, "").replace(/\\.\\d+/, "");',
      "if (err instanceof VmBusyError) return retryLater();",
      "if (!NAME.test(spec.name)) problems.push(`bad name`);",
      'const out = { detail: "from the event", reason: r };',
      "// an old comment: /x/.test(err.detail)",
    ];
    const files: SourceFile[] = [
      { path: "functions/backup-requested/handler.ts", text: lines.join("\n") },
      { path: "pipeline/engine-port.ts", text: "if (/already/i.test(String(err.detail))) break;" },
      { path: "adapters/ovirt/errors.ts", text: "if (/already/i.test(String(err.detail))) return new AlreadyExists();" }, // adapters decide: allowed
    ];
    const found = checkEngineFaultText(files);
    expect(at(found)).toEqual([
      "functions/backup-requested/handler.ts:1",
      "functions/backup-requested/handler.ts:2",
      "functions/backup-requested/handler.ts:3",
      "functions/backup-requested/handler.ts:4",
      "functions/backup-requested/handler.ts:5",
      "functions/backup-requested/handler.ts:6",
      "functions/backup-requested/handler.ts:8",
      "functions/backup-requested/handler.ts:12",
      "functions/backup-requested/handler.ts:13",
      "functions/backup-requested/handler.ts:14",
      "pipeline/engine-port.ts:1",
    ]);
  });

  it("e. ingress-wall - the hook endpoint importing a function, pipeline, dataplane, cli or lab is caught; contracts, adapters, config, domain are not", () => {
    const forbidden = ["functions/runtime/mod.ts", "pipeline/ports.ts", "dataplane/upload.ts", "cli/command.ts", "lab/mod.ts"];
    const files: SourceFile[] = forbidden.map((target, i) => ({ path: `ingress/hooks/f${i}.ts`, text: `import { x } from "../../${target}";` }));
    files.push({
      path: "ingress/hooks/server.ts",
      text: 'import { TransientError } from "../../contracts/errors.ts";\nimport { redactText } from "../../adapters/secrets.ts";\nimport { ConfigError } from "../../config/load.ts";\nimport { decide } from "../../domain/backup/decide.ts";\nimport { createServer } from "node:http";',
    });
    files.push({ path: "cli/commands/hooks.ts", text: 'import { createPublisher } from "../../functions/runtime/mod.ts";' }); // the command wires it: allowed
    expect(at(checkIngressWalls(files))).toEqual(forbidden.map((_, i) => `ingress/hooks/f${i}.ts:1`));
  });

  it("f. chaos-wall - chaos/ importing a function, or production code importing chaos/, is caught", () => {
    const files: SourceFile[] = [
      { path: "chaos/cases/x.ts", text: 'import { h } from "../../functions/backup-requested/handler.ts";\nimport { startLab } from "../../lab/mod.ts";' },
      { path: "pipeline/x.ts", text: 'import { CASES } from "../chaos/registry.ts";' },
      { path: "test/chaos-subset.test.ts", text: 'import { CASES } from "../chaos/registry.ts";' }, // tests may
    ];
    expect(at(checkChaosWalls(files))).toEqual(["chaos/cases/x.ts:1", "pipeline/x.ts:1"]);
  });

  it("g. console-wall - the console importing a function, the CLI, the lab, the data plane, ingress, chaos or a write-side pipeline module is caught", () => {
    const forbidden = ["functions/runtime/mod.ts", "cli/command.ts", "lab/mod.ts", "dataplane/upload.ts", "ingress/hooks/server.ts", "chaos/registry.ts", "pipeline/close-run.ts", "pipeline/composition.ts"];
    const files: SourceFile[] = forbidden.map((target, i) => ({ path: `console/f${i}.ts`, text: `import { x } from "../${target}";` }));
    files.push({
      path: "console/pages/vm.ts",
      text: 'import { computeStatus } from "../../config/status.ts";\nimport { publishCommand } from "../../adapters/nats/publish-command.ts";\nimport { planRestore } from "../../pipeline/restore-plan.ts";\nimport type { BackupRun } from "../../pipeline/run-journal.ts";\nimport type { Deps } from "../../pipeline/composition.ts";\nimport { backupRequested } from "../../contracts/backup-requested.ts";',
    });
    files.push({ path: "cli/commands/console.ts", text: 'import { createLogger } from "../../functions/runtime/mod.ts";' }); // the command wires it: allowed
    expect(at(checkConsoleWalls(files))).toEqual(forbidden.map((_, i) => `console/f${i}.ts:1`));
  });

  it("formatViolations - one file:line per violation", () => {
    expect(formatViolations([{ rule: "adapters-wall", file: "adapters/x.ts", line: 3, found: 'imports "../lab/mod.ts" (lab/mod.ts)' }])).toBe(
      'adapters/x.ts:3  [adapters-wall] imports "../lab/mod.ts" (lab/mod.ts)',
    );
  });
});

describe("architecture walls - the source tree", () => {
  const tree = readTree(ROOT, ["functions", "pipeline", "adapters", "ingress", "chaos", "dataplane", "domain", "contracts", "config", "cli", "lab", "console"]);

  it("the tree is read (functions, pipeline, adapters and ingress all have files)", () => {
    for (const d of ["functions/runtime/", "functions/backup-requested/", "pipeline/", "adapters/ovirt/", "ingress/hooks/", "console/pages/"]) {
      expect(tree.some((f) => f.path.startsWith(d)), d).toBe(true);
    }
  });

  const rules: Array<[string, (files: SourceFile[]) => Violation[]]> = [
    ["a. no function imports another function's folder (functions/runtime aside)", checkFunctionWalls],
    ["b. adapters/ imports no config/, dataplane/, functions/, pipeline/, cli/ or lab/", checkAdapterWalls],
    ["c. pipeline/ imports no function folder (functions/runtime: types only)", checkPipelineWalls],
    ["e. ingress/ imports no functions/, pipeline/, dataplane/, cli/ or lab/ (the command wires the publisher in)", checkIngressWalls],
    ["f. chaos/ imports no function folder; nothing Ferry runs imports chaos/", checkChaosWalls],
    ["g. console/ imports no functions/, cli/, lab/, dataplane/, ingress/, chaos/, and from pipeline/ only read-side modules", checkConsoleWalls],
    ["d. functions/ and pipeline/ apply no regex to engine fault text and never read .detail (typed errors from adapters/ovirt, instanceof)", checkEngineFaultText],
  ];
  for (const [name, check] of rules) {
    it(name, () => {
      const found = check(tree);
      expect(found, `\n${formatViolations(found)}\n`).toEqual([]);
    });
  }
});
