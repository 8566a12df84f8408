#!/usr/bin/env -S node --max-semi-space-size=8
// The flag: cli/node-flags.ts (why, and where else it is set).
// The installed `ferry` command. Node 24 runs the TypeScript itself (type stripping: the code is
// erasable-only, tsconfig's erasableSyntaxOnly); tsx's loader is the fallback for a Node without
// it. Measured with a warm tsx cache: `ferry run --help` 135 MiB / 1.4 s natively against
// 153 MiB / 2.5 s through tsx; `ferry status --help` 118 against 124 MiB.
// `ferry events | head`: the reader went away. That is the end of the output, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err) => {
    if (err && err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}
if (!process.features.typescript) (await import("tsx/esm/api")).register();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2));
