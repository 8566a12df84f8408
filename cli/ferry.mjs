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
// `ferry run` returns once every function has stopped (in-flight work finished or handed back) and
// NATS is drained. A background pass still waiting on an engine (reconciler, scrub, event poller)
// is re-run by the next process and must not keep a stopped service alive (CI saw > 120 s).
if (process.argv[2] === "run") {
  setTimeout(() => {
    process.stderr.write("ferry run: stopped; background work still pending after 5 s was abandoned\n");
    process.exit();
  }, 5000).unref();
}
