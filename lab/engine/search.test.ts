import { describe, expect, it } from "vitest";
import { matchesSearch, searchParams } from "./search.ts";

describe("search", () => {
  const f = { name: "web01", status: "up", id: "abc", description: "nightly backup of web01" };
  it("matchesSearch - key=value, wildcards, != and 'and'; sortby/page ignored", () => {
    expect(matchesSearch("name=web01", f)).toBe(true);
    expect(matchesSearch("name=web0", f)).toBe(false);
    expect(matchesSearch("name=web*", f)).toBe(true);
    expect(matchesSearch("name=web* and status=down", f)).toBe(false);
    expect(matchesSearch("name=web* and status=up sortby name asc", f)).toBe(true);
    expect(matchesSearch("status!=down", f)).toBe(true);
    expect(matchesSearch('name="web01" page 2', f)).toBe(true);
    expect(matchesSearch("unknownkey=1", f)).toBe(false);
  });
  it("matchesSearch - free text matches any field; case sensitivity is honoured", () => {
    expect(matchesSearch("nightly", f)).toBe(true);
    expect(matchesSearch("NAME=WEB01", f)).toBe(false);
    expect(matchesSearch("NAME=WEB01", f, { caseSensitive: false })).toBe(true);
    expect(matchesSearch("Nightly", f)).toBe(false);
    expect(matchesSearch("Nightly", f, { caseSensitive: false })).toBe(true);
    expect(matchesSearch(null, f)).toBe(true);
  });
  it("searchParams - reads search, case_sensitive and max", () => {
    expect(searchParams(new URLSearchParams("search=name%3Dx&case_sensitive=false&max=3"))).toEqual({ search: "name=x", caseSensitive: false, max: 3 });
    expect(searchParams(new URLSearchParams(""))).toEqual({ search: null, caseSensitive: true, max: undefined });
  });
});
