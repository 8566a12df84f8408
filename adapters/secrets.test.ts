import { describe, expect, it } from "vitest";
import { redactText, redactUrl } from "./secrets.ts";

describe("secrets", () => {
  it("secrets - hides imageio ticket ids", () => {
    const s = redactText("GET https://host:54322/images/1c3f7d1e-aaaa-bbbb-cccc-000000000001/extents failed");
    expect(s).not.toContain("1c3f7d1e");
    expect(s).toContain("/images/***/extents");
  });
  it("secrets - keeps the server-wide OPTIONS path", () => {
    expect(redactText("OPTIONS /images/*")).toBe("OPTIONS /images/*");
  });
  it("secrets - hides tokens and passwords", () => {
    const s = redactText('Authorization: Bearer abc.def-ghi {"password":"hunter2"} password=x&y');
    expect(s).not.toMatch(/abc\.def|hunter2|password=x/);
  });
  it("secrets - redactUrl drops query and ticket", () => {
    expect(redactUrl("https://h:54322/images/abcd-1234?x=1")).toBe("https://h:54322/images/***");
  });
});

describe("secrets - boundaries", () => {
  it("secrets - keeps the character after a redacted value", () => {
    expect(redactText("(token=abc123) done")).toBe("(token=***) done");
  });
  it("secrets - a quoted value is hidden whole: spaces, commas and escaped quotes included", () => {
    expect(redactText('{"vm":"x","password":"hunter 2, \\"really\\""}')).toBe('{"vm":"x","password":"***"}');
    expect(redactText('{"password": "s3cr3t,more","vm":"y"}')).toBe('{"password": "***","vm":"y"}');
    expect(redactText('token: "abc def" ok')).toBe('token: "***" ok');
  });
  it("secrets - a quoted value cut off by truncation is hidden to the end", () => {
    expect(redactText('{"vm":"x","password":"hunter 2 and mo')).toBe('{"vm":"x","password":"***');
  });
});
