import { execa } from "execa";
import { createBenchContext, benchConfig } from "/work/main/bench/context.ts";
const ctx = await createBenchContext(benchConfig(0.25), (m) => console.error(m));
try {
  const t = await ctx.ticket(ctx.source, { readOnly: true });
  const job = { kind: "download", url: t.url, caPem: ctx.tls.caPem, output: ctx.dir + `/o.qcow2`, incremental: false, connections: 4 };
  const r = await execa(process.execPath, ["--cpu-prof", "--cpu-prof-dir=/tmp/prof", "--import", "tsx", "/work/main/bench/child.ts"], { input: JSON.stringify(job), reject: false });
  console.log(r.stdout, r.stderr.slice(-500));
  await t.stop();
} finally { await ctx.close(); }
