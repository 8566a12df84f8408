import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { LAB_FILE, LabNotRunningError, readLabFile, writeLabFile, type LabFile } from "./control-client.ts";

const dirs: string[] = [];
async function dir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "ferry-labfile-"));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const engine = { name: "prd", url: "https://127.0.0.1:1", plainUrl: "http://127.0.0.1:2", apiUrl: "https://127.0.0.1:1/ovirt-engine/api", controlUrl: "https://127.0.0.1:1/ferry-lab", imageioUrl: "https://127.0.0.1:3", user: "admin@internal", password: "pw", caFile: "/x/ca.pem" };

describe("lab file", () => {
  it("readLabFile - reads back what writeLabFile wrote for a live pid", async () => {
    const d = await dir();
    const lab: LabFile = { pid: process.pid, startedAt: new Date().toISOString(), dataDir: d, engines: { prd: engine } };
    await writeLabFile(d, lab);
    expect(await readLabFile(d)).toEqual(lab);
  });

  it("readLabFile - a missing, half-written or foreign lab.json is LabNotRunningError, not a crash", async () => {
    const d = await dir();
    await expect(readLabFile(d)).rejects.toBeInstanceOf(LabNotRunningError);
    await writeFile(join(d, LAB_FILE), '{"pid": 12');
    await expect(readLabFile(d)).rejects.toBeInstanceOf(LabNotRunningError);
    await writeFile(join(d, LAB_FILE), '{"pid": "12", "engines": {}}');
    await expect(readLabFile(d)).rejects.toThrow(/not a lab file/);
  });
});
