#!/usr/bin/env node
// The installed `ferry` command: runs the TypeScript CLI through tsx's loader.
import { register } from "tsx/esm/api";
// `ferry events | head`: the reader went away. That is the end of the output, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err) => {
    if (err && err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}
register();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2));
