import { execa } from "execa";
import { createBenchContext, benchConfig } from "/work/main/bench/context.ts";
const ctx = await createBenchContext(benchConfig(0.25), (m) => console.error(m));
const variants: Record<string, number | undefined> = { ceiling: undefined, p8: 8 << 20, p4: 4 << 20 };
const res: Record<string, number[]> = {};
try {
  const t = await ctx.ticket(ctx.source, { readOnly: true });
  let n = 0;
  for (let rep = 0; rep < 3; rep++) for (const [name, pieceSize] of Object.entries(variants)) {
    const job = name === "ceiling" ? { kind: "get-ceiling", url: t.url, caPem: ctx.tls.caPem, output: ctx.dir + "/c.raw", connections: 4 }
      : { kind: "download", url: t.url, caPem: ctx.tls.caPem, output: ctx.dir + `/o${n++}.qcow2`, incremental: false, connections: 4, pieceSize };
    const r = await execa(process.execPath, ["--import", "tsx", "/work/main/bench/child.ts"], { input: JSON.stringify(job), reject: false });
    if (r.exitCode) { console.error(r.stderr); continue; }
    const o = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    (res[name] ??= []).push(o.seconds);
    console.error(name, o.seconds.toFixed(2), "rss", (o.vmHwmKiB / 1024).toFixed(0), "cpu", o.cpuSeconds);
  }
  await t.stop();
} finally { await ctx.close(); }
for (const [k, v] of Object.entries(res)) console.log(k, v.map((x) => x.toFixed(2)).join(" "), "median", [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!.toFixed(2));
