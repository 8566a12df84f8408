import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { TransientError } from "../../contracts/errors.ts";
import { createLogger } from "./log.ts";

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line));
      cb();
    },
  });
  return { lines, destination };
}

describe("runtime log", () => {
  it("createLogger - redacts secret keys, ticket URLs, bearer tokens and error messages", async () => {
    const { lines, destination } = capture();
    const log = createLogger({ destination, base: { fn: "t" } });
    const child = log.child({ seq: 3 });
    child.info(
      { engine: { url: "https://e", password: "hunter2" }, headers: { authorization: "Bearer abc" }, url: "https://h:54322/images/6b7a1c0e-secret-ticket" },
      "downloading from https://h:54322/images/6b7a1c0e-secret-ticket with Bearer tok123",
    );
    child.error({ err: new TransientError("IMAGEIO_HTTP", "GET https://h/images/abcdef12345 failed, password=pw1", { url: "https://h/images/abcdef12345" }) }, "failed");
    await new Promise((r) => setImmediate(r));
    const text = JSON.stringify(lines);
    for (const secret of ["hunter2", "6b7a1c0e-secret-ticket", "tok123", "abcdef12345", "pw1", "Bearer abc"]) expect(text).not.toContain(secret);
    expect(lines[0]).toMatchObject({ fn: "t", seq: 3, level: "info", engine: { url: "https://e", password: "***" } });
    expect(lines[1]).toMatchObject({ level: "error", err: { type: "TransientError", code: "IMAGEIO_HTTP" } });
    expect(String((lines[1]!.err as { message: string }).message)).toContain("/images/***");
  });
});
