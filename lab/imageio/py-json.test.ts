import { describe, expect, it } from "vitest";
import { floatRepr, PyFloat, PyJsonError, pyJsonDumps, pyJsonLoads, pyRepr } from "./py-json.ts";

// Expected strings were produced by CPython's json and repr.
describe("py-json", () => {
  it("pyJsonDumps - matches json.dumps spacing and ASCII escaping", () => {
    expect(pyJsonDumps({ a: [1, 2, { b: null, c: true }], s: 'é\n"\\\u0001' })).toBe(
      '{"a": [1, 2, {"b": null, "c": true}], "s": "\\u00e9\\n\\"\\\\\\u0001"}',
    );
    expect(pyJsonDumps([])).toBe("[]");
    expect(pyJsonDumps({})).toBe("{}");
    expect(pyJsonDumps(new Map([["k", new PyFloat(1)]]))).toBe('{"k": 1.0}');
  });

  it("pyJsonLoads - reports errors with json.loads' messages and positions", () => {
    const cases: Array<[string, string]> = [
      ["", "Expecting value: line 1 column 1 (char 0)"],
      ["{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"],
      ['{"op": }', "Expecting value: line 1 column 8 (char 7)"],
      ["abc", "Expecting value: line 1 column 1 (char 0)"],
      ['{"a":1} x', "Extra data: line 1 column 9 (char 8)"],
      ["[1,]", "Expecting value: line 1 column 4 (char 3)"],
      ['{"a":1,}', "Expecting property name enclosed in double quotes: line 1 column 8 (char 7)"],
      ['{"a" 1}', "Expecting ':' delimiter: line 1 column 6 (char 5)"],
      ['{"a":1 "b":2}', "Expecting ',' delimiter: line 1 column 8 (char 7)"],
      ['"abc', "Unterminated string starting at: line 1 column 1 (char 0)"],
      ['"a\\qb"', "Invalid \\escape: line 1 column 3 (char 2)"],
      ['"\\u12"', "Invalid \\uXXXX escape: line 1 column 3 (char 2)"],
      ['"a\nb"', "Invalid control character at: line 1 column 3 (char 2)"],
      ['  \n  {"x": [1, 2', "Expecting ',' delimiter: line 2 column 14 (char 16)"],
      ["[1 2]", "Expecting ',' delimiter: line 1 column 4 (char 3)"],
      ['{"a": tru}', "Expecting value: line 1 column 7 (char 6)"],
    ];
    for (const [text, message] of cases) {
      let err: unknown;
      try {
        pyJsonLoads(text);
      } catch (e) {
        err = e;
      }
      expect(err, text).toBeInstanceOf(PyJsonError);
      expect((err as Error).message, text).toBe(message);
    }
  });

  it("pyJsonLoads - keeps Python's int/float distinction and key order", () => {
    const v = pyJsonLoads('{"op":"zero","size":1.0,"offset":5,"e":1e3,"flush":false,"n":null}') as Map<string, unknown>;
    expect([...v.keys()]).toEqual(["op", "size", "offset", "e", "flush", "n"]);
    expect(v.get("size")).toBeInstanceOf(PyFloat);
    expect(v.get("offset")).toBe(5);
    expect(v.get("e")).toBeInstanceOf(PyFloat);
    expect(pyRepr(v.get("size") as PyFloat)).toBe("1.0");
    expect(pyRepr(v.get("e") as PyFloat)).toBe("1000.0");
  });

  it("pyRepr - quotes and escapes like repr()", () => {
    expect(pyRepr("it's")).toBe('"it\'s"');
    expect(pyRepr('a"b')).toBe("'a\"b'");
    expect(pyRepr("a'b\"c")).toBe("'a\\'b\"c'");
    expect(pyRepr("tab\there\u0001\u007f")).toBe("'tab\\there\\x01\\x7f'");
    expect(pyRepr("é")).toBe("'é'");
    expect(pyRepr(["flush", "zero"])).toBe("['flush', 'zero']");
    expect(pyRepr(new Map<string, null | boolean>([["a", null], ["b", true]]))).toBe("{'a': None, 'b': True}");
  });

  it("floatRepr - matches float.__repr__", () => {
    const cases: Array<[number, string]> = [
      [1, "1.0"],
      [1e16, "1e+16"],
      [1.5e16, "1.5e+16"],
      [1e-5, "1e-05"],
      [0.0001, "0.0001"],
      [123.456, "123.456"],
      [1e300, "1e+300"],
      [-0, "-0.0"],
      [1e21, "1e+21"],
      [12345678901234567890, "1.2345678901234567e+19"],
    ];
    for (const [v, s] of cases) expect(floatRepr(v)).toBe(s);
  });
});
